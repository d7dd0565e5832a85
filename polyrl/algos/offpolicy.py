"""Config fields shared by every algorithm trained from a replay buffer."""

from __future__ import annotations

from dataclasses import dataclass

from polyrl.algos.base import AlgoConfig


@dataclass(frozen=True)
class OffPolicyConfig(AlgoConfig):
    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    batch_size: int = 256
    """Transitions per gradient update."""
    learning_starts: int = 5000
    """Env steps of uniformly random actions before learning starts."""
    train_freq: int = 1
    """Env steps (per env) between rounds of updates."""
    gradient_steps: int = 1
    """Gradient updates per round."""
    n_step: int = 1
    """Steps summed in the TD target (stopped at episode ends)."""
