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


@dataclass(frozen=True)
class FinetuneConfig(OfflineConfig):
    """Offline algorithms that continue online from replay (IQL, TD3+BC, PRDC): the online phase's data source.

    Online, the env fills a fresh replay buffer with the offline-trained policy
    (no random warm-up actions) and each update's batch mixes online and
    dataset transitions; observation normalisation stays frozen to the dataset.
    """

    online_buffer_size: int = 1_000_000
    """Online replay capacity (transitions) in the fine-tuning phase."""
    online_offline_ratio: float = 0.5
    """Share of each fine-tuning batch drawn from the offline dataset (0.5: symmetric sampling; 0: online data only)."""
    online_warmup: int = 1000
    """Fine-tuning env steps collected with the offline policy before updates start."""
    online_updates_per_step: int = 1
    """Gradient updates per fine-tuning env step (update-to-data ratio)."""
