"""TD3+BC (Fujimoto & Gu 2021, arXiv:2106.06860): TD3 with a behaviour-cloning term in the actor loss.

* critics: exactly TD3's clipped double-Q with target policy smoothing
  (``polyrl.losses.td3_critic_loss``);
* actor, every ``policy_delay`` critic updates:
  ``L_pi = -lambda E[Q_1(s, pi(s))] + E[(pi(s) - a)^2]`` with
  ``lambda = alpha / mean |Q_1(s, pi(s))|`` (detached), ``alpha = 2.5``;
* states standardised with the dataset's statistics.

Online fine-tuning (``Agent.start_online``) keeps the same update on batches
that mix online and dataset transitions (``FinetuneConfig``); with
``online_bc_decay > 0`` the BC term's weight decays linearly to 0 over that
many env steps, turning the update into TD3 (with normalised Q).

Deviations from the paper: states are standardised as ``(s - mu) / sqrt(var + 1e-8)``
instead of ``(s - mu) / (std + 1e-3)``, which differs only for near-constant
dimensions; timeouts bootstrap (as in the spec, they are not terminal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm
from polyrl.config import FinetuneConfig
from polyrl.families import (
    BehaviourTermParams,
    TD3Params,
    TD3State,
    behaviour_weight,
    build_td3_state,
    explore,
    td3_update,
)
from polyrl.nets.mlp import frozen
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class TD3BCConfig(TD3Params, BehaviourTermParams, FinetuneConfig):
    pass


__all__ = ["TD3BC", "TD3BCConfig", "behaviour_weight"]


class TD3BC(Algorithm):
    """TD3+BC for Box actions."""

    name = "td3bc"
    Config = TD3BCConfig
    action_kinds = ("box",)
    regime = "offline"
    online_regime = "off_policy"
    cfg: TD3BCConfig

    def build(self) -> TD3State:
        return build_td3_state(self.cfg, self.spec, self.device)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return explore(self.state.actor, obs, noise=self.cfg.exploration_noise, deterministic=deterministic)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        return td3_update(self, batch, self.actor_objective)

    def actor_objective(self, batch: TransitionBatch) -> tuple[Tensor, dict[str, float | Tensor]]:
        """``L_pi = -lambda E[Q_1(s, pi(s))] + w E[(pi(s) - a)^2]``, ``lambda = alpha / mean |Q_1|`` (detached)."""
        s = self.state
        pi = s.actor(batch.obs)
        with frozen(s.critic):
            q_pi = s.critic(batch.obs, pi, members=slice(0, 1))
        lam = self.cfg.alpha / q_pi.abs().mean().detach()
        bc = (pi - batch.action).pow(2).mean()
        weight = behaviour_weight(self)
        return -lam * q_pi.mean() + weight * bc, {"loss/bc": bc.detach(), "train/lambda": lam, "train/bc_weight": weight}
