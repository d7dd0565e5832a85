"""Algorithm registry: ``polyrl.algos.get(name)`` and ``polyrl.algos.names()``."""

from __future__ import annotations

import difflib

from polyrl.algos.base import AlgoConfig, Algorithm
from polyrl.algos.bc import BC, BCConfig
from polyrl.algos.cmorl import CMORL, CMORLConfig
from polyrl.algos.cql import CQL, CQLConfig
from polyrl.algos.dqn import DQN, DQNConfig
from polyrl.algos.dreamer import Dreamer, DreamerConfig
from polyrl.algos.iql import IQL, IQLConfig
from polyrl.algos.mbpo import MBPO, MBPOConfig
from polyrl.algos.mopo import MOPO, MOPOConfig
from polyrl.algos.ppo import PPO, PPOConfig
from polyrl.algos.prdc import PRDC, PRDCConfig
from polyrl.algos.sac import SAC, SACConfig
from polyrl.algos.td3 import TD3, TD3Config
from polyrl.algos.td3bc import TD3BC, TD3BCConfig
from polyrl.algos.unio4 import UniO4, UniO4Config
from polyrl.errors import UnknownAlgorithmError

REGISTRY: dict[str, type[Algorithm]] = {cls.name: cls for cls in (PPO, SAC, TD3, DQN, BC, TD3BC, IQL, CQL, PRDC, UniO4, MBPO, MOPO, CMORL, Dreamer)}


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


__all__ = ["BC", "CQL", "DQN", "IQL", "PPO", "PRDC", "SAC", "TD3", "TD3BC", "AlgoConfig", "Algorithm", "BCConfig",
           "CQLConfig", "DQNConfig", "IQLConfig", "PPOConfig", "PRDCConfig", "SACConfig", "TD3BCConfig", "TD3Config", "UniO4", "UniO4Config",
           "MBPO", "MBPOConfig", "MOPO", "MOPOConfig", "CMORL", "CMORLConfig", "Dreamer", "DreamerConfig",
           "REGISTRY", "get", "names"]
