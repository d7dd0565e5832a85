"""Storage shared by every regime: a preallocated transition store and an on-policy rollout."""

from polyrl.data.replay import ReplayBuffer
from polyrl.data.rollout import Rollout, RolloutBuffer

__all__ = ["ReplayBuffer", "Rollout", "RolloutBuffer"]
