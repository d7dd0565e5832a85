"""Deterministic evaluation in a separate environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from polyrl.envs import VecEnv


@dataclass(frozen=True)
class EvalResult:
    """Returns and lengths of evaluation episodes."""

    returns: tuple[float, ...]
    lengths: tuple[int, ...]

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def to_json(self) -> dict[str, object]:
        return {"mean_return": self.mean_return, "std_return": self.std_return, "episodes": len(self.returns),
                "mean_length": float(np.mean(self.lengths)), "returns": list(self.returns)}


def run_episodes(env: VecEnv, policy: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> EvalResult:
    """Run exactly ``episodes`` episodes, split evenly over ``env``'s copies (no bias to short episodes).

    ``policy`` maps a batch of raw observations to normalised actions.
    """
    n = env.num_envs
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    done_count = np.zeros(n, dtype=np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    ep_ret, ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    obs = env.reset(seed)
    env.drain_episodes()
    while (done_count < quota).any():
        res = env.step(policy(obs))
        ep_ret += res.reward
        ep_len += 1
        for i in np.flatnonzero(res.terminated | res.truncated):
            if done_count[i] < quota[i]:
                returns.append(float(ep_ret[i]))
                lengths.append(int(ep_len[i]))
                done_count[i] += 1
            ep_ret[i], ep_len[i] = 0.0, 0
        obs = res.obs
    env.drain_episodes()
    return EvalResult(tuple(returns), tuple(lengths))
