"""Algorithm registry: ``polyrl.algos.get(name)`` and ``polyrl.algos.names()``."""

from __future__ import annotations

import difflib

from polyrl.algos.base import AlgoConfig, Algorithm
from polyrl.algos.dqn import DQN, DQNConfig
from polyrl.algos.ppo import PPO, PPOConfig
from polyrl.algos.sac import SAC, SACConfig
from polyrl.algos.td3 import TD3, TD3Config
from polyrl.errors import UnknownAlgorithmError

REGISTRY: dict[str, type[Algorithm]] = {cls.name: cls for cls in (PPO, SAC, TD3, DQN)}


def get(name: str) -> type[Algorithm]:
    """The algorithm class registered as ``name`` (case-insensitive)."""
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), list(REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}{hint} (available: {', '.join(sorted(REGISTRY))})") from None


def names() -> list[str]:
    return sorted(REGISTRY)


__all__ = ["DQN", "PPO", "SAC", "TD3", "AlgoConfig", "Algorithm", "DQNConfig", "PPOConfig", "SACConfig", "TD3Config",
           "REGISTRY", "get", "names"]
