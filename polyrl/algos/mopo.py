"""Model-based Offline Policy Optimization (Yu et al. 2020, arXiv:2005.13239).

MOPO is SAC (:mod:`polyrl.algos.sac`, unchanged update) on a dataset ``D``
plus short rollouts of a dynamics ensemble fitted to ``D`` once, before the
first update (:class:`~polyrl.train.model_source.ModelSource`):

* uncertainty-penalised model MDP (eq. 5, Algorithm 2):
  ``r~(s, a) = r^(s, a) - lambda u(s, a)`` with
  ``u(s, a) = max_i ||Sigma_i(s, a)||_F`` over the ensemble's elites;
* every ``rollout_freq`` updates, ``rollout_batch_size`` states ``s ~ D`` are
  rolled out for ``h`` steps (``rollout_length``) with the current policy,
  one elite sampled per state and step, into ``D_model``;
* SAC updates on batches of ``real_ratio`` (5%) dataset and 95% model
  transitions. Typical: ``h = 5, lambda = 1`` (Hopper), ``0.5..1`` elsewhere.

The fitted ensemble is part of the agent's state (saved with it), so a
resumed or reloaded run continues without refitting. Online
(``Agent.start_online``) MOPO continues as SAC on replay mixed with the
dataset, like the other offline algorithms (:class:`FinetuneConfig`).

Deviations from the paper: ``||Sigma_i||_F`` is computed on ``Sigma_i^(1/2)``
(the norm of member ``i``'s standard deviations), as in the authors' code;
CPU-sized defaults (10k start states per round instead of 50k). The config
has no replay section: offline MOPO makes one update per dataset/model batch
and the online phase reads the ``online_*`` fields (configs of earlier
releases, which listed SAC's unused replay fields, still load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm
from polyrl.config import FinetuneConfig, ModelRolloutConfig
from polyrl.families import (
    ModelSACState,
    SACParams,
    build_model_sac_state,
    sac_act,
    sac_step,
    sac_target_entropy,
)
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class MOPORollouts(ModelRolloutConfig):
    """MOPO's model: fitted once to the dataset; fixed-length rollouts with uncertainty-penalised rewards."""

    SHORT = (*ModelRolloutConfig.SHORT, "rollout_length")

    rollout_length: int = 5
    """Model rollout horizon h."""
    penalty_coef: float = 1.0
    """The uncertainty penalty lambda: model rewards become r - lambda * max_i ||Sigma_i(s, a)||_F."""
    rollout_freq: int = 1000
    """Gradient updates between rounds of model rollouts."""
    retain_rounds: int = 5
    """Rollout rounds kept in the model buffer's sampling window."""


@dataclass(frozen=True)
class MOPOConfig(SACParams, FinetuneConfig):
    RETIRED = {"buffer_size": 1_000_000, "learning_starts": 5000, "train_freq": 1, "gradient_steps": 1, "n_step": 1}
    RETIRED_WHY = ("MOPO had SAC's replay fields but never read them: offline it makes one update per dataset/model "
                   "batch (data_batch_size), and online it reads the online_* fields")

    normalize_obs: bool = False
    """Standardise observations with the dataset's statistics. Off, unlike the other offline algorithms: the default
    MOPO has had since its first release (its dynamics ensemble standardises its own inputs either way)."""
    model: MOPORollouts = MOPORollouts()
    """The dynamics ensemble fitted to the dataset, and its rollouts."""


class MOPO(Algorithm):
    """SAC on a dataset plus uncertainty-penalised model rollouts (regime ``offline``); see the module docstring."""

    name = "mopo"
    Config = MOPOConfig
    action_kinds = ("box",)
    regime = "offline"
    online_regime = "off_policy"
    cfg: MOPOConfig
    state: ModelSACState

    def build(self) -> ModelSACState:
        self.model_metrics: dict[str, float] = {}  # the model source's latest fit and rollout statistics
        self.target_entropy = sac_target_entropy(self.cfg, self.spec)
        return build_model_sac_state(self.cfg, self.spec, self.device)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return sac_act(self.state.actor, obs, deterministic=deterministic)

    @property
    def max_rollout_horizon(self) -> int:
        """Rollout horizon h (sizes the model buffer)."""
        return self.cfg.model.rollout_length

    def rollout_horizon(self, step: int) -> int:
        """Model rollout horizon: the fixed ``h``."""
        return self.cfg.model.rollout_length

    def start_online(self) -> None:
        """Continue as SAC on replay mixed with the dataset; the model statistics stop being reported."""
        super().start_online()
        self.model_metrics = {}

    def update(self, batch: TransitionBatch) -> dict[str, Any]:
        """SAC's update on a mixed dataset/model batch; adds the model fit and rollout statistics."""
        c = self.cfg
        metrics = sac_step(self.state, batch, target_entropy=self.target_entropy, tau=c.tau, auto_alpha=c.auto_alpha)
        self.n_updates += 1
        return metrics | self.model_metrics
