"""Soft Actor-Critic with automatic entropy tuning (Haarnoja et al. 2018, arXiv:1812.05905).

For a batch of transitions:

* critics: ``L_Q = sum_k E[(Q_k(s, a) - y)^2]`` with the soft target
  ``y = r + gamma (1 - d) (min_k Q'_k(s', a') - alpha log pi(a'|s'))``,
  ``a' ~ pi(.|s')`` (eq. 5, with clipped double-Q from Fujimoto et al. 2018);
* actor: ``L_pi = E[alpha log pi(a|s) - min_k Q_k(s, a)]``, ``a ~ pi(.|s)``
  reparameterised through ``tanh`` (eq. 7);
* temperature: ``L_alpha = -E[log alpha (log pi(a|s) + H_target)]`` with
  ``H_target = -dim(A)`` (eq. 18);
* target critics: Polyak averaging with ``tau``.

The ``n_critics`` critics are one batched ensemble module. Deviations from
the paper: none; ``log alpha`` (not ``alpha``) is optimised, as in the
authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm
from polyrl.config import OffPolicyConfig
from polyrl.families import SACParams, SACState, build_sac_state, sac_act, sac_step, sac_target_entropy
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class SACConfig(SACParams, OffPolicyConfig):
    pass


class SAC(Algorithm):
    """SAC for Box actions."""

    name = "sac"
    Config = SACConfig
    action_kinds = ("box",)
    regime = "off_policy"
    cfg: SACConfig

    def build(self) -> SACState:
        self.target_entropy = sac_target_entropy(self.cfg, self.spec)
        return build_sac_state(self.cfg, self.spec, self.device)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return sac_act(self.state.actor, obs, deterministic=deterministic)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        c = self.cfg
        metrics = sac_step(self.state, batch, target_entropy=self.target_entropy, tau=c.tau, auto_alpha=c.auto_alpha)
        self.n_updates += 1
        return metrics
