"""Policy Regularization with Dataset Constraint (Ran et al. 2023, arXiv:2306.06569).

TD3+BC whose behaviour-cloning target is not the dataset action of the same
transition but the action of the dataset point nearest to ``(s, pi(s))``:

* keys ``x = [beta s, a]`` over every dataset transition (states standardised
  as the agent sees them, actions in ``[-1, 1]``), held in a KD-tree built once;
* per actor update, one batched query: ``a_hat = action part of argmin_x ||[beta s, pi(s)] - x||``;
* actor: ``L_pi = -lambda E[Q_1(s, pi(s))] + E[(pi(s) - a_hat)^2]``,
  ``lambda = alpha / mean |Q_1(s, pi(s))|`` (detached);
* critics: exactly TD3's (``polyrl.losses.td3_critic_loss``).

Online fine-tuning keeps the tree over the offline dataset (the constraint
stays anchored to it); see TD3+BC for the mixed batches and ``online_bc_decay``.

The share of update time spent in the nearest-neighbour search is reported
as ``time/search_share``. Deviations from the paper: none in the objective;
the tree is scipy's ``cKDTree`` (exact search), as in the authors' code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
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
class PRDCConfig(TD3Params, BehaviourTermParams, FinetuneConfig):
    beta: float = 2.0
    """Scale of the state part of the search key."""


class PRDC(Algorithm):
    """PRDC for Box actions."""

    name = "prdc"
    Config = PRDCConfig
    action_kinds = ("box",)
    regime = "offline"
    online_regime = "off_policy"
    cfg: PRDCConfig

    def build(self) -> TD3State:
        self.tree: Any = None
        self.search_time = self.update_time = 0.0
        return build_td3_state(self.cfg, self.spec, self.device)

    def prepare(self, dataset: Any, normalize: Callable[[Tensor], Tensor]) -> None:
        """Build the KD-tree over ``[beta * s, a]`` of every dataset transition."""
        from scipy.spatial import cKDTree

        buf = dataset.buffer(self.spec)
        obs = normalize(buf.obs[:, 0].to(self.device)).cpu().numpy()
        self.tree_actions = buf.action[:, 0].to(self.device)
        self.tree = cKDTree(np.concatenate([self.cfg.beta * obs, self.tree_actions.cpu().numpy()], axis=1))

    def nearest_actions(self, obs: Tensor, action: Tensor) -> Tensor:
        """Action part of the dataset key nearest to each ``[beta * obs, action]`` (one batched query)."""
        if self.tree is None:
            raise RuntimeError("prdc needs its dataset: prepare() builds the search tree")
        keys = torch.cat([self.cfg.beta * obs, action], dim=-1).detach().cpu().numpy()
        _, idx = self.tree.query(keys, k=1)
        return self.tree_actions[torch.as_tensor(idx, device=self.device)]

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return explore(self.state.actor, obs, noise=self.cfg.exploration_noise, deterministic=deterministic)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        start = time.perf_counter()
        metrics = td3_update(self, batch, self.actor_objective)
        self.update_time += time.perf_counter() - start
        metrics["time/search_share"] = self.search_time / max(self.update_time, 1e-9)
        return metrics

    def actor_objective(self, batch: TransitionBatch) -> tuple[Tensor, dict[str, float | Tensor]]:
        """``L_pi = -lambda E[Q_1(s, pi(s))] + w E[(pi(s) - a_hat)^2]`` with ``a_hat`` the nearest dataset action."""
        s = self.state
        pi = s.actor(batch.obs)
        t0 = time.perf_counter()
        a_hat = self.nearest_actions(batch.obs, pi)
        self.search_time += time.perf_counter() - t0
        with frozen(s.critic):
            q_pi = s.critic(batch.obs, pi, members=slice(0, 1))
        lam = self.cfg.alpha / q_pi.abs().mean().detach()
        constraint = (pi - a_hat).pow(2).mean()
        weight = behaviour_weight(self)
        return -lam * q_pi.mean() + weight * constraint, {"loss/constraint": constraint.detach(), "train/lambda": lam,
                                                          "train/bc_weight": weight}
