"""Measuring an env's reference returns (a random policy and an expert run) for normalised scores.

A job: it loads an agent and runs episodes, so it lives above the storage and score tables
(:mod:`polyrl.data.scores` keeps the tables and the score formula).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import polyrl
from polyrl import seeding
from polyrl.data.scores import Reference
from polyrl.errors import ConfigError
from polyrl.jobs.recipes import random_returns


def measure_reference(env_id: str, expert_run: str | Path, *, episodes: int = 100, seed: int = 0,
                      device: str = "cpu") -> Reference:
    """Measure ``env_id``'s references: the mean return of ``episodes`` episodes of a uniformly random policy, and of
    the same number of deterministic episodes of the agent saved at ``expert_run`` (a run or checkpoint directory)."""
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    agent = polyrl.load(expert_run, device=device, resume=False)
    if agent.env_id != env_id:
        raise ConfigError(f"{expert_run} was trained on {agent.env_id}, not {env_id}; pass an expert run of {env_id}")
    expert = agent.evaluate(episodes, seed=seeding.stream(seed, "final_eval"))
    agent.close()
    rand = [r for r, _ in random_returns(env_id, seed, episodes)]
    return Reference(float(np.mean(rand)), expert.mean_return, "polyrl", {
        "random_policy": "uniform actions", "random_std": float(np.std(rand)),
        "expert_policy": f"{agent.algo_cls.name} after {agent.algo.env_steps} env steps ({Path(expert_run).as_posix()})",
        "expert_std": expert.std_return, "episodes": episodes, "seed": seed, "polyrl_version": polyrl.__version__})
