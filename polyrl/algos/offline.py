"""Config fields shared by every algorithm trained from a fixed dataset."""

from __future__ import annotations

from dataclasses import dataclass

from polyrl.algos.base import AlgoConfig


@dataclass(frozen=True)
class OfflineConfig(AlgoConfig):
    batch_size: int = 256
    """Transitions per gradient update."""
    normalize_obs: bool = True
    """Standardise observations with the dataset's mean and std (frozen, saved with the agent)."""
