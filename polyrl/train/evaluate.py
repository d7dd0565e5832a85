"""Deterministic evaluation in a separate environment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from polyrl.envs import VecEnv


@dataclass(frozen=True)
class EvalResult:
    """Returns and lengths of evaluation episodes.

    With vector rewards, ``vector_returns`` holds each episode's ``[K]`` return
    and ``returns`` its scalarisation ``w . G`` under the evaluation's weights.
    """

    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    vector_returns: tuple[tuple[float, ...], ...] = ()

    @property
    def mean_vector(self) -> np.ndarray | None:
        """Mean ``[K]`` return over the episodes (None for a scalar reward)."""
        return np.mean(np.asarray(self.vector_returns), axis=0) if self.vector_returns else None

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"mean_return": self.mean_return, "std_return": self.std_return, "episodes": len(self.returns),
                                  "mean_length": float(np.mean(self.lengths)), "returns": list(self.returns)}
        if self.vector_returns:
            out["mean_vector_return"] = [float(x) for x in self.mean_vector]  # type: ignore[union-attr]
            out["vector_returns"] = [list(r) for r in self.vector_returns]
        return out


def run_episodes(env: VecEnv, policy: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int, *,
                 gamma: float = 1.0, weights: np.ndarray | None = None) -> EvalResult:
    """Run exactly ``episodes`` episodes, split evenly over ``env``'s copies (no bias to short episodes).

    ``policy`` maps a batch of raw observations to normalised actions. Returns
    are discounted by ``gamma`` (1: the plain sum). With vector rewards each
    episode's ``[K]`` return is kept and scalarised with ``weights`` (default:
    equal weights ``1/K``).
    """
    n, k = env.num_envs, env.spec.reward_dim
    quota = np.full(n, episodes // n) + (np.arange(n) < episodes % n)
    done_count = np.zeros(n, dtype=np.int64)
    vec: list[np.ndarray] = []
    lengths: list[int] = []
    ep_ret, ep_len = np.zeros((n, *env.spec.reward_shape)), np.zeros(n, dtype=np.int64)
    obs = env.reset(seed)
    env.drain_episodes()
    while (done_count < quota).any():
        res = env.step(policy(obs))
        discount = gamma ** ep_len
        ep_ret += (discount[:, None] if k else discount) * res.reward
        ep_len += 1
        for i in np.flatnonzero(res.terminated | res.truncated):
            if done_count[i] < quota[i]:
                vec.append(ep_ret[i].copy())
                lengths.append(int(ep_len[i]))
                done_count[i] += 1
            ep_ret[i], ep_len[i] = 0.0, 0
        obs = res.obs
    env.drain_episodes()
    if not k:
        return EvalResult(tuple(float(r) for r in vec), tuple(lengths))
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    return EvalResult(tuple(float(r @ w) for r in vec), tuple(lengths), tuple(tuple(float(x) for x in r) for r in vec))
