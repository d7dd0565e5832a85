"""Typed batch containers passed from data sources to ``Algorithm.update``.

Shapes use ``B`` for the batch, ``O`` for the observation shape, ``A`` for the
action shape (empty for discrete actions, which are ``long``) and an
optional trailing ``K`` on rewards for vector-valued (multi-objective) tasks.
Observations in a batch are already normalised by the agent's normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


class _Batch:
    def to(self, device: torch.device | str):
        """A copy with every tensor moved to ``device``."""
        return type(self)(**{f.name: None if (v := getattr(self, f.name)) is None else v.to(device)  # type: ignore[arg-type]
                             for f in fields(self)})

    def __len__(self) -> int:
        return getattr(self, fields(self)[0].name).shape[0]  # type: ignore[arg-type]


@dataclass(frozen=True)
class TransitionBatch(_Batch):
    """Transitions ``(s, a, r, s')`` for TD learning.

    Attributes:
        obs: ``[B, *O]`` float.
        action: ``[B, *A]`` float in [-1, 1] (Box) or ``[B]`` long (Discrete).
        reward: ``[B]`` or ``[B, K]``; for n-step sampling, the discounted sum.
        next_obs: ``[B, *O]`` the bootstrap state (``s_{t+k}`` for n-step).
        terminated: ``[B]`` 1.0 where ``next_obs`` is terminal (no bootstrap).
        discount: ``[B]`` ``gamma**k`` to apply to the bootstrap value.
        index: ``[B]`` long, where each transition sits in its storage (``t * n_envs + env``),
            so an algorithm can look up per-transition quantities it precomputed from a
            dataset (Uni-O4's Monte-Carlo returns and next actions); ``None`` when the
            batch mixes storages.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    discount: Tensor
    index: Tensor | None = None


@dataclass(frozen=True)
class RolloutBatch(_Batch):
    """On-policy samples with advantages computed by the rollout buffer.

    Attributes:
        obs: ``[B, *O]``.
        action: ``[B, *A]`` or ``[B]`` long.
        log_prob: ``[B]`` log-probability under the behaviour policy.
        value: ``[B]`` (or ``[B, K]``) value estimate at collection time.
        advantage: ``[B]`` (or ``[B, K]``) GAE advantages.
        returns: ``[B]`` (or ``[B, K]``) value targets, ``advantage + value``.
    """

    obs: Tensor
    action: Tensor
    log_prob: Tensor
    value: Tensor
    advantage: Tensor
    returns: Tensor
