"""Storage shared by every regime: a preallocated transition store, an on-policy rollout, and offline datasets."""

from polyrl.data.dataset import Dataset
from polyrl.data.replay import ReplayBuffer
from polyrl.data.rollout import Rollout, RolloutBuffer

__all__ = ["Dataset", "ReplayBuffer", "Rollout", "RolloutBuffer"]
