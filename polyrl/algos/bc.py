"""Behaviour cloning: supervised imitation of the dataset's actions (Pomerleau 1991).

* ``policy = "deterministic"``: ``L = E[||pi(s) - a||^2]`` with ``pi(s) = tanh(f(s))``;
* ``policy = "gaussian"``: ``L = -E[log pi(a|s)]`` with a tanh-squashed Gaussian
  (dataset actions are clipped to ``+-(1 - 1e-6)`` before ``atanh``); acts with the mode;
* Discrete actions: ``L = -E[log pi(a|s)]`` with a categorical policy.

The policy is trained on dataset states standardised with the dataset's
statistics; actions are the env's, rescaled to ``[-1, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polyrl.algos.base import Algorithm, adam
from polyrl.config import OfflineConfig
from polyrl.errors import ConfigError
from polyrl.nets.heads import CategoricalPolicy, DeterministicPolicy, GaussianPolicy
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class BCConfig(OfflineConfig):
    learning_rate: float = 3e-4
    """Adam step size."""
    policy: str = "deterministic"
    """Continuous actions: "deterministic" (MSE) or "gaussian" (negative log-likelihood)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the policy."""
    activation: str = "relu"
    """Hidden activation."""


@dataclass
class BCState:
    policy: nn.Module
    optimizer: torch.optim.Optimizer


class BC(Algorithm):
    """Behaviour cloning for Box and Discrete actions."""

    name = "bc"
    Config = BCConfig
    action_kinds = ("box", "discrete")
    regime = "offline"
    cfg: BCConfig

    def build(self) -> BCState:
        c, d = self.cfg, self.spec
        if c.policy not in ("deterministic", "gaussian"):
            raise ConfigError(f"bc policy must be 'deterministic' or 'gaussian', got {c.policy!r}")
        if d.action_kind == "discrete":
            policy: nn.Module = CategoricalPolicy(d.obs_dim, d.action_dim, c.hidden, c.activation)
        elif c.policy == "gaussian":
            policy = GaussianPolicy(d.obs_dim, d.action_dim, c.hidden, c.activation, log_std_bounds=(-5.0, 2.0))
        else:
            policy = DeterministicPolicy(d.obs_dim, d.action_dim, c.hidden, c.activation)
        policy = policy.to(self.device)
        return BCState(policy, adam(policy.parameters(), c.learning_rate))

    def _likelihood(self) -> bool:
        return self.spec.action_kind == "discrete" or self.cfg.policy == "gaussian"

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        out = self.state.policy(obs)
        if not self._likelihood():
            return out
        return out.mode() if deterministic else out.sample()

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        s = self.state
        out = s.policy(batch.obs)
        if self._likelihood():
            loss = -out.log_prob(batch.action).mean()
        else:
            loss = (out - batch.action).pow(2).sum(-1).mean()
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        self.n_updates += 1
        return {"loss/bc": loss.detach()}
