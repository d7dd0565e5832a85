"""Twin Delayed DDPG (Fujimoto et al. 2018, arXiv:1802.09477).

* critics: ``L_Q = sum_k E[(Q_k(s, a) - y)^2]``,
  ``y = r + gamma (1 - d) min_k Q'_k(s', clip(pi'(s') + clip(eps, -c, c), -1, 1))``,
  ``eps ~ N(0, sigma)`` (target policy smoothing, section 5.3);
* actor, every ``policy_delay`` critic updates: ``L_pi = -E[Q_1(s, pi(s))]``;
* targets (actor and critics) Polyak-averaged when the actor updates;
* exploration: ``a = clip(pi(s) + N(0, exploration_noise), -1, 1)``.

Deviations from the paper: the authors' current code (3e-4 learning rates,
256-256 networks, 25k random start steps) rather than the paper's 1e-3 and
400-300; the critics are one batched ensemble module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm
from polyrl.config import OffPolicyConfig, ReplayConfig
from polyrl.families import TD3Params, TD3State, build_td3_state, explore, td3_update
from polyrl.nets.mlp import frozen
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class TD3Config(TD3Params, OffPolicyConfig):
    replay: ReplayConfig = ReplayConfig(learning_starts=25_000)
    """The replay buffer and how batches are drawn from it (the authors' 25k random start steps)."""


class TD3(Algorithm):
    """TD3 for Box actions."""

    name = "td3"
    Config = TD3Config
    action_kinds = ("box",)
    regime = "off_policy"
    cfg: TD3Config

    def build(self) -> TD3State:
        return build_td3_state(self.cfg, self.spec, self.device)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return explore(self.state.actor, obs, noise=self.cfg.exploration_noise, deterministic=deterministic)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        return td3_update(self, batch, self.actor_objective)

    def actor_objective(self, batch: TransitionBatch) -> tuple[Tensor, dict[str, float | Tensor]]:
        """``L_pi = -E[Q_1(s, pi(s))]``, every ``policy_delay`` critic updates."""
        s = self.state
        with frozen(s.critic):
            return -s.critic(batch.obs, s.actor(batch.obs), members=slice(0, 1)).mean(), {}  # Q_1 only
