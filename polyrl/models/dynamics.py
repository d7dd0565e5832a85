"""A probabilistic ensemble of dynamics models, as one batched module (Chua et al. 2018; Janner et al. 2019).

Each of ``E`` members maps ``(s, a)`` to a diagonal Gaussian over
``(s' - s, r)`` plus a termination logit. Members are trained on bootstrap
resamples of the data with the Gaussian negative log-likelihood, log-variances
softly bounded by learned limits (PETS, appendix A.1); a held-out split stops
training when no member improves by 1% for ``patience`` epochs, and the
``n_elites`` members with the lowest held-out error are used for prediction.
Inputs are standardised with the training data's statistics.

Optional, for MBPO/MOPO (Janner et al. 2019; Yu et al. 2020): per-layer weight
decay (``weight_decays``), warm-started refits of an existing model
(:func:`train_dynamics`), known termination rules per task
(:func:`known_termination`) and the ensemble's uncertainty per prediction
(:meth:`DynamicsEnsemble.sample`).

This is the shared model of model-based OPE, MBPO/MOPO and Uni-O4.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyrl.nets.mlp import EnsembleMLP
from polyrl.optim import adam


@dataclass(frozen=True)
class DynamicsConfig:
    """Hyperparameters of the ensemble (MBPO's defaults, smaller hidden layers)."""

    n_members: int = 7
    n_elites: int = 5
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    activation: str = "silu"
    learning_rate: float = 1e-3
    weight_decay: float = 5e-5
    batch_size: int = 256
    holdout: float = 0.1
    max_holdout: int = 5000
    patience: int = 5
    max_epochs: int = 200
    min_updates: int = 0
    """Raise the epoch cap so that a fit may take at least this many gradient steps: on a small dataset (MBPO's
    first fits, a few hundred transitions) an epoch is one or two steps, and ``max_epochs`` alone would stop the fit
    long before the holdout error does. Early stopping still applies."""
    weight_decays: tuple[float, ...] | None = None
    """Per linear layer L2 coefficients (MBPO: 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4) on the weights only;
    ``None``: ``weight_decay`` on every parameter."""
    standardize_targets: bool = False
    """Train on standardised ``(s' - s, r)`` (statistics saved with the model); the holdout error that picks
    elites and stops training is then measured in standardised units, every output weighted alike."""

    def __post_init__(self) -> None:
        if self.weight_decays is not None and len(self.weight_decays) != len(self.hidden) + 1:
            raise ValueError(f"weight_decays needs one value per linear layer ({len(self.hidden) + 1}), got {len(self.weight_decays)}")


MBPO_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
"""MBPO's per-layer weight decay for its 4 x 200 ensemble (Janner et al. 2019, authors' code)."""


def layer_weight_decays(n_hidden: int) -> tuple[float, ...]:
    """MBPO's per-layer decays for ``n_hidden`` hidden layers: exact for 4, interpolated over depth otherwise."""
    if n_hidden + 1 == len(MBPO_WEIGHT_DECAYS):
        return MBPO_WEIGHT_DECAYS
    pos = np.linspace(0.0, 1.0, n_hidden + 1)
    return tuple(float(v) for v in np.interp(pos, np.linspace(0.0, 1.0, len(MBPO_WEIGHT_DECAYS)), MBPO_WEIGHT_DECAYS))


class ModelStep(NamedTuple):
    """One sampled model transition for ``B`` inputs."""

    next_obs: Tensor
    """``[B, O]``."""
    reward: Tensor
    """``[B]``."""
    terminated: Tensor
    """``[B]`` bool."""
    uncertainty: Tensor
    """``[B]`` MOPO's ``max_i ||Sigma_i(s, a)||_F`` over the elites, with ``Sigma_i^(1/2) = diag(std_i)`` (see :meth:`DynamicsEnsemble.sample`)."""


Termination = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(obs [B, O], action [B, A], next_obs [B, O]) -> terminated [B] bool``, on raw observations."""


def _never(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


def _healthy(z_range: tuple[float, float], angle_range: tuple[float, float], state_bound: float | None) -> Termination:
    """Gymnasium's MuJoCo healthy rule: obs[0] is the torso height, obs[1] its angle, obs[1:] bounded by ``state_bound``."""

    def terminated(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        z, angle = next_obs[:, 0], next_obs[:, 1]
        healthy = torch.isfinite(next_obs).all(1) & (z > z_range[0]) & (z < z_range[1])
        healthy &= (angle > angle_range[0]) & (angle < angle_range[1])
        if state_bound is not None:
            healthy &= (next_obs[:, 1:].abs() < state_bound).all(1)
        return ~healthy

    return terminated


def _inverted_pendulum(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
    return ~(torch.isfinite(next_obs).all(1) & (next_obs[:, 1].abs() <= 0.2))


TERMINATIONS: dict[str, Termination] = {
    # Gymnasium v5 defaults (terminate_when_unhealthy=True); MBPO's static termination functions use the same rules.
    "Hopper": _healthy((0.7, float("inf")), (-0.2, 0.2), 100.0),
    "Walker2d": _healthy((0.8, 2.0), (-1.0, 1.0), None),
    "InvertedPendulum": _inverted_pendulum,
    "HalfCheetah": _never,
    "Swimmer": _never,
    "Reacher": _never,
    "Pendulum": _never,
}


def known_termination(env_id: str) -> Termination | None:
    """The known termination rule of a task (``Hopper-v5`` -> Hopper's healthy-state rule), or ``None`` if it has none.

    Only valid with the task's default keyword arguments (e.g. ``terminate_when_unhealthy=True``).
    """
    base = re.sub(r"-v\d+$", "", env_id.split("/")[-1])
    return TERMINATIONS.get(base)


def termination_rule(mode: str, env_id: str) -> Termination | None:
    """Where model rollouts end: ``mode="auto"`` -> the task's known rule (or ``None`` if it has none);
    ``"learned"`` -> ``None``, i.e. the model's learned termination head."""
    if mode not in ("auto", "learned"):
        raise ValueError(f"termination must be 'auto' or 'learned', got {mode!r}")
    return known_termination(env_id) if mode == "auto" else None


class DynamicsEnsemble(nn.Module):
    """``E`` Gaussian dynamics models with stacked weights; see the module docstring."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: DynamicsConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or DynamicsConfig()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        out = obs_dim + 1  # delta obs, reward
        self.net = EnsembleMLP(cfg.n_members, obs_dim + act_dim, 2 * out + 1, cfg.hidden, cfg.activation)
        self.max_logvar = nn.Parameter(torch.full((out,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out,), -10.0))
        self.register_buffer("in_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("in_std", torch.ones(obs_dim + act_dim))
        self.register_buffer("elites", torch.arange(cfg.n_elites))
        if cfg.standardize_targets:  # only then, so models saved without it keep their keys
            self.register_buffer("out_mean", torch.zeros(out))
            self.register_buffer("out_std", torch.ones(out))

    def _standardized(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The network's outputs, in standardised target units when ``standardize_targets``."""
        x = (torch.cat([obs, action], dim=-1) - self.in_mean) / self.in_std
        out = self.net(x)
        n = self.obs_dim + 1
        mean, logvar, term = out[..., :n], out[..., n:2 * n], out[..., -1]
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar, term

    def _target(self, target: Tensor) -> Tensor:
        return (target - self.out_mean) / self.out_std if self.cfg.standardize_targets else target

    def forward(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean [E, B, O+1], logvar [E, B, O+1], termination logit [E, B])`` for inputs ``[B, .]`` or ``[E, B, .]``."""
        mean, logvar, term = self._standardized(obs, action)
        if self.cfg.standardize_targets:
            mean, logvar = self.out_mean + self.out_std * mean, logvar + 2.0 * self.out_std.log()
        return mean, logvar, term

    def loss(self, obs: Tensor, action: Tensor, target: Tensor, terminated: Tensor) -> Tensor:
        """Summed over members: Gaussian NLL of ``(s' - s, r)`` + termination BCE + log-variance bound penalty."""
        mean, logvar, term = self._standardized(obs, action)
        target = self._target(target)
        nll = (((mean - target) ** 2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2))
        bce = F.binary_cross_entropy_with_logits(term, terminated.expand_as(term), reduction="none").mean(1)
        bound = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        return nll.sum() + bce.sum() + bound

    @torch.no_grad()
    def nll(self, obs: Tensor, action: Tensor, target: Tensor) -> Tensor:
        """Per-member Gaussian negative log-likelihood of ``target = (s' - s, r)`` (without the constant, in
        standardised units when ``standardize_targets``), ``[E]``."""
        mean, logvar, _ = self._standardized(obs, action)
        target = self._target(target)
        return (((mean - target) ** 2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2))

    def make_optimizer(self) -> torch.optim.Adam:
        """Adam with the config's weight decay: per layer on the weights when ``weight_decays`` is set, else on everything.

        It is polyrl's fused Adam (:func:`polyrl.optim.adam`): on CPU, Adam's default is a loop of about ten small
        ops per parameter tensor, which took 16% of a fit step for the 7 x 4 x 200 ensemble (one thread, batch 256);
        fused, a fit of the same epochs takes ~7% less time."""

        c = self.cfg
        if c.weight_decays is None:
            return adam(self.parameters(), c.learning_rate, weight_decay=c.weight_decay)
        layers = [m for m in self.net.modules() if hasattr(m, "n_members") and hasattr(m, "weight")]
        groups = [{"params": [m.weight], "weight_decay": wd} for m, wd in zip(layers, c.weight_decays, strict=True)]
        decayed = {id(m.weight) for m in layers}
        groups.append({"params": [p for p in self.parameters() if id(p) not in decayed], "weight_decay": 0.0})
        return adam(groups, c.learning_rate)

    @torch.no_grad()
    def holdout_error(self, obs: Tensor, action: Tensor, target: Tensor) -> Tensor:
        """Per-member mean squared error of the predicted mean, ``[E]`` (standardised units when ``standardize_targets``)."""
        mean, _, _ = self._standardized(obs, action)
        return ((mean - self._target(target)) ** 2).mean(dim=(1, 2))

    @torch.no_grad()
    def select_elites(self, obs: Tensor, action: Tensor, target: Tensor) -> Tensor:
        """Keep the ``n_elites`` members with the lowest holdout error on ``(obs, action, target)``; returns the ``[E]`` errors."""
        err = self.holdout_error(obs, action, target).cpu()
        self.elites.copy_(torch.argsort(err)[: self.cfg.n_elites].to(self.elites.device))
        return err

    @torch.no_grad()
    def step(self, obs: Tensor, action: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``(next_obs, reward, terminated)`` for ``[B]`` inputs, each row from a random elite."""
        out = self.sample(obs, action, generator)
        return out.next_obs, out.reward, out.terminated

    @torch.no_grad()
    def sample(self, obs: Tensor, action: Tensor, generator: torch.Generator | None = None,
               termination: Termination | None = None) -> ModelStep:
        """Sample one transition per ``[B]`` input from one elite drawn per input (all members in one batched pass).

        ``terminated`` comes from ``termination`` (a known rule, :func:`known_termination`) when given,
        else from the learned termination head. ``uncertainty`` is MOPO's penalty term
        ``max_i ||Sigma_i||_F`` over the elites; as in the authors' code, ``Sigma_i`` enters through its
        square root, i.e. the Euclidean norm of member ``i``'s standard deviations over ``(s' - s, r)``.
        """
        mean, logvar, term = self(obs, action)
        b = obs.shape[0]
        pick = self.elites[torch.randint(len(self.elites), (b,), generator=generator, device=obs.device)]
        rows = torch.arange(b, device=obs.device)
        mu, std = mean[pick, rows], (0.5 * logvar[pick, rows]).exp()
        noise = torch.randn(mu.shape, generator=generator, device=obs.device)
        sample = mu + std * noise
        next_obs = obs + sample[:, :-1]
        done = termination(obs, action, next_obs) if termination is not None else torch.sigmoid(term[pick, rows]) > 0.5
        uncertainty = (0.5 * logvar[self.elites]).exp().norm(dim=-1).amax(0)
        return ModelStep(next_obs, sample[:, -1], done, uncertainty)


def fit_dynamics(obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminated: Tensor, *,
                 cfg: DynamicsConfig | None = None, seed: int = 0) -> tuple[DynamicsEnsemble, dict[str, float]]:
    """Train a new :class:`DynamicsEnsemble` on transitions ``[N, .]`` with holdout early stopping.

    ``seed`` draws the holdout split and the bootstrap resamples; the initial weights come from the global torch
    generator (seeded by the agent in a run; :func:`polyrl.ope.fit_model` seeds it from ``seed``).
    Returns the model and a summary (epochs, holdout MSE of the elites).
    """
    cfg = cfg or DynamicsConfig()
    model = DynamicsEnsemble(obs.shape[1], action.shape[1], cfg).to(obs.device)
    summary = train_dynamics(model, model.make_optimizer(), obs, action, reward, next_obs, terminated,
                             generator=torch.Generator().manual_seed(seed))
    return model, summary


def train_dynamics(model: DynamicsEnsemble, opt: torch.optim.Optimizer, obs: Tensor, action: Tensor, reward: Tensor,
                   next_obs: Tensor, terminated: Tensor, *, generator: torch.Generator) -> dict[str, float]:
    """(Re)fit ``model`` in place on transitions ``[N, .]``: standardise inputs, train until no member's holdout
    error improves by 1% for ``patience`` epochs (at most ``max_epochs``, or more epochs when that many would give fewer
    than ``min_updates`` gradient steps), restore the best weights, pick the elites.

    A model refitted on a growing buffer (MBPO) continues from its current weights and optimiser state.
    ``generator`` (on the CPU) draws the holdout split and the bootstrap resamples.
    Returns a summary: epochs, holdout MSE of the elites and of all members, holdout NLL of the elites.
    """
    cfg = model.cfg
    gen = generator
    n = obs.shape[0]
    device = obs.device
    inputs = torch.cat([obs, action], dim=-1)
    model.in_mean.copy_(inputs.mean(0))
    model.in_std.copy_(inputs.std(0) + 1e-6)
    target = torch.cat([next_obs - obs, reward.unsqueeze(-1)], dim=-1)
    if cfg.standardize_targets:
        model.out_mean.copy_(target.mean(0))
        model.out_std.copy_(target.std(0) + 1e-6)
    perm = torch.randperm(n, generator=gen).to(device)
    n_hold = min(int(cfg.holdout * n), cfg.max_holdout)
    hold, train = perm[:n_hold], perm[n_hold:]
    best = torch.full((cfg.n_members,), float("inf"))
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    stale, epochs = 0, 0
    steps_per_epoch = max(math.ceil(len(train) / cfg.batch_size), 1)
    max_epochs = max(cfg.max_epochs, math.ceil(cfg.min_updates / steps_per_epoch))
    while epochs < max_epochs:
        epochs += 1
        # each member sees its own bootstrap resample of the training split
        boot = train[torch.randint(len(train), (cfg.n_members, len(train)), generator=gen).to(device)]
        for start in range(0, len(train), cfg.batch_size):
            idx = boot[:, start:start + cfg.batch_size]  # [E, b]
            loss = model.loss(obs[idx], action[idx], target[idx], terminated[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        err = model.holdout_error(obs[hold], action[hold], target[hold]).cpu() if n_hold else best * 0
        improved = err < 0.99 * best  # a member improved by more than 1%
        if improved.any():
            best = torch.where(improved, err, best)
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            stale = 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    if n_hold:
        err = model.select_elites(obs[hold], action[hold], target[hold])
    else:
        err = torch.zeros(cfg.n_members)
        model.elites.copy_(torch.arange(cfg.n_elites, device=device))
    nll = model.nll(obs[hold], action[hold], target[hold]).cpu()[model.elites.cpu()].mean() if n_hold else torch.tensor(0.0)
    return {"epochs": float(epochs), "holdout_mse": float(err[model.elites.cpu()].mean()),
            "holdout_mse_all": float(np.mean(err.numpy())), "holdout_nll": float(nll)}
