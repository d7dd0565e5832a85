"""Policy and value heads over flat observations, shared by the algorithms."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polyrl.nets.distributions import Categorical, Gaussian, TanhGaussian
from polyrl.nets.mlp import EnsembleLinear, EnsembleMLP, activation, mlp


class GaussianPolicy(nn.Module):
    """``pi(a|s)``: a Gaussian (optionally tanh-squashed) over a flat action.

    Args:
        state_dependent_std: the MLP also outputs ``log_std`` (SAC); otherwise
            a learned state-independent vector (PPO, IQL).
        squash: apply ``tanh`` so actions lie in (-1, 1) (SAC).
        tanh_mean: without ``squash``, bound the Gaussian's mean by ``tanh`` (IQL's locomotion actor): the
            distribution stays an unsquashed Gaussian whose mean lies in (-1, 1).
        log_std_bounds: clamp for ``log_std``.
        orthogonal: PPO-style orthogonal init (policy head gain 0.01).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "relu",
        *,
        state_dependent_std: bool = True,
        squash: bool = True,
        tanh_mean: bool = False,
        log_std_bounds: tuple[float, float] = (-20.0, 2.0),
        init_log_std: float = 0.0,
        orthogonal: bool = False,
    ) -> None:
        super().__init__()
        if squash and tanh_mean:
            raise ValueError("tanh_mean bounds an unsquashed Gaussian's mean; with squash=True the samples are squashed already")
        self.act_dim, self.squash, self.tanh_mean, self.log_std_bounds = act_dim, squash, tanh_mean, log_std_bounds
        self.state_dependent_std = state_dependent_std
        out = 2 * act_dim if state_dependent_std else act_dim
        self.net = mlp(obs_dim, out, hidden, act, orthogonal=orthogonal, out_gain=0.01)
        if not state_dependent_std:
            self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs: Tensor) -> Gaussian | TanhGaussian:
        out = self.net(obs.flatten(1))
        if self.state_dependent_std:
            mean, log_std = out.split(self.act_dim, dim=-1)
        else:
            mean, log_std = out, self.log_std
        log_std = log_std.clamp(*self.log_std_bounds)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        return TanhGaussian(mean, log_std) if self.squash else Gaussian(mean, log_std)


class GaussianEnsemblePolicy(nn.Module):
    """``E`` Gaussian policies as one module (stacked weights), as in Uni-O4's BC ensemble.

    Member ``k``: mean ``tanh(f_k(s))``, log-std ``g_k(s)`` mapped smoothly into
    ``log_std_bounds`` by ``lo + (hi - lo) (tanh(g) + 1) / 2`` (one mapping,
    offline and online). ``forward(obs [B, O] or [E, B, O], members)`` gives a
    :class:`Gaussian` over ``[E', B, A]``.
    """

    def __init__(self, n_members: int, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256, 256),
                 act: str = "relu", *, log_std_bounds: tuple[float, float] = (-5.0, 0.0)) -> None:
        super().__init__()
        self.n_members, self.act_dim, self.log_std_bounds = n_members, act_dim, log_std_bounds
        self.net = EnsembleMLP(n_members, obs_dim, 2 * act_dim, hidden, act)

    def forward(self, obs: Tensor, members: slice | None = None) -> Gaussian:
        mean, raw = self.net(obs if obs.dim() == 3 else obs.flatten(1), members).split(self.act_dim, dim=-1)
        lo, hi = self.log_std_bounds
        return Gaussian(torch.tanh(mean), lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1.0))


class DeterministicPolicy(nn.Module):
    """``a = tanh(f(s))`` in (-1, 1) (TD3, TD3+BC)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), act: str = "relu") -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, act)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs.flatten(1)))


class CategoricalPolicy(nn.Module):
    """``pi(a|s)`` over ``n`` discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64), act: str = "tanh", *, orthogonal: bool = False) -> None:
        super().__init__()
        self.net = mlp(obs_dim, n_actions, hidden, act, orthogonal=orthogonal, out_gain=0.01)

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(self.net(obs.flatten(1)))


class ValueNet(nn.Module):
    """``V(s)`` -> ``[B]`` (or ``[B, K]`` with ``n_outputs = K`` for vector values)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256), act: str = "relu", *, n_outputs: int = 1, orthogonal: bool = False) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.net = mlp(obs_dim, n_outputs, hidden, act, orthogonal=orthogonal, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        v = self.net(obs.flatten(1))
        return v.squeeze(-1) if self.n_outputs == 1 else v


class QEnsemble(nn.Module):
    """``E`` critics ``Q_k(s, a)`` computed together (stacked weights) -> ``[E, B]``."""

    def __init__(self, n_critics: int, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), act: str = "relu") -> None:
        super().__init__()
        self.net = EnsembleMLP(n_critics, obs_dim + act_dim, 1, hidden, act)

    def forward(self, obs: Tensor, action: Tensor, members: slice | None = None) -> Tensor:
        """``[E, B]``, or ``[E', B]`` for a subset of ``members``."""
        return self.net(torch.cat([obs.flatten(1), action], dim=-1), members).squeeze(-1)


class DiscreteQ(nn.Module):
    """``Q(s, .)`` over ``n`` discrete actions -> ``[B, n]``."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (256, 256), act: str = "relu") -> None:
        super().__init__()
        self.net = mlp(obs_dim, n_actions, hidden, act)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.flatten(1))


class ActorCritic(nn.Module):
    """A policy and a value function with separate weights, evaluated together.

    The two MLPs share widths, so their hidden layers are one 2-member
    ensemble (member 0: actor, member 1: critic) and each layer is one batched
    matmul for both networks. This is the same function as two separate MLPs
    (no weights are shared) with half the kernel calls, which is what limits
    small-network PPO on a CPU. Initialisation is PPO's orthogonal scheme:
    gain sqrt(2) in hidden layers, 0.01 for the policy head, 1 for the value head.

    ``forward(obs) -> (distribution, value [B])``; the distribution is a
    :class:`Categorical` (``discrete``) or a :class:`Gaussian` with a learned
    state-independent log-std.
    """

    def __init__(self, obs_dim: int, n_outputs: int, hidden: Sequence[int] = (64, 64), act: str = "tanh", *,
                 discrete: bool, init_log_std: float = 0.0) -> None:
        super().__init__()
        self.discrete = discrete
        layers: list[nn.Module] = []
        for a, b in zip([obs_dim, *hidden][:-1], hidden):
            layer = EnsembleLinear(2, a, b)
            for k in range(2):
                nn.init.orthogonal_(layer.weight.data[k], 2.0**0.5)
            nn.init.zeros_(layer.bias)
            layers += [layer, activation(act)()]
        self.trunk = nn.Sequential(*layers)
        width = hidden[-1] if hidden else obs_dim
        self.pi_head, self.v_head = nn.Linear(width, n_outputs), nn.Linear(width, 1)
        for head, gain in ((self.pi_head, 0.01), (self.v_head, 1.0)):
            nn.init.orthogonal_(head.weight, gain)
            nn.init.zeros_(head.bias)
        if not discrete:
            self.log_std = nn.Parameter(torch.full((n_outputs,), float(init_log_std)))

    def forward(self, obs: Tensor) -> tuple[Gaussian | Categorical, Tensor]:
        h = self.trunk(obs.flatten(1).unsqueeze(0).expand(2, -1, -1))
        out = self.pi_head(h[0])
        dist: Gaussian | Categorical = Categorical(out) if self.discrete else Gaussian(out, self.log_std)
        return dist, self.v_head(h[1]).squeeze(-1)
