"""Vectorised Gymnasium environments with the conventions every polyrl trainer relies on.

* Same-step auto-reset: when an episode ends, ``step`` returns the first
  observation of the next episode as ``obs`` and the true last observation
  in ``StepResult.next_obs``, so transitions are stored exactly and truncated
  steps bootstrap from the right state.
* Actions arrive normalised: a bounded ``Box`` takes actions in ``[-1, 1]``
  (clipped, then rescaled affinely to ``[low, high]``), a ``Discrete`` space
  takes integers ``0..n-1`` (its ``start`` is added here).
* Observations are ``float32``; a ``Discrete`` observation space becomes a
  one-hot vector.
* Completed episodes' returns and lengths are collected for logging.

Any environment registered with Gymnasium works; ``"module:EnvId"`` imports
``module`` first (the Gymnasium convention for third-party registrations).

Vector rewards are first-class: an MO-Gymnasium environment (its ids are
found without the ``mo_gymnasium:`` prefix when the package is installed)
gives ``reward`` of shape ``[N, K]`` for ``K`` objectives, and
``EnvSpec.reward_dim == K``; scalar environments keep ``[N]`` and
``reward_dim == 0``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from polyrl.envs.normalize import RunningNorm
from polyrl.errors import UnknownEnvError, UnsupportedSpaceError

__all__ = ["EnvSpec", "RunningNorm", "StepResult", "VecEnv", "check_env_id", "make", "space_kind"]


def check_env_id(env_id: str) -> str:
    """Return the Gymnasium id to make, or raise ``UnknownEnvError`` with close matches."""
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UnknownEnvError(f"cannot import {module!r} for env {env_id!r} ({e}); install the package that registers it") from None
        env_id = name
    if env_id in gym.registry:
        return env_id
    if importlib.util.find_spec("mo_gymnasium") is not None:  # MO-Gymnasium registers its ids on import
        importlib.import_module("mo_gymnasium")
        if env_id in gym.registry:
            return env_id
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `python -c 'import gymnasium; gymnasium.pprint_registry()'` to list ids"
    raise UnknownEnvError(f"unknown environment id {env_id!r}{hint}")


def space_kind(space: spaces.Space) -> str:
    """``"box"`` or ``"discrete"`` for the spaces polyrl handles, else the class name."""
    if isinstance(space, spaces.Box):
        return "box"
    if isinstance(space, spaces.Discrete):
        return "discrete"
    return type(space).__name__


@dataclass(frozen=True)
class EnvSpec:
    """What an algorithm needs to know about an environment, in normalised form.

    Attributes:
        env_id: the Gymnasium id.
        obs_shape: shape of one (float32) observation after one-hot encoding.
        action_kind: ``"box"`` or ``"discrete"``.
        action_dim: action dimension (Box) or number of actions (Discrete).
        action_low, action_high: the env's Box bounds (None for Discrete).
        reward_dim: number of objectives of a vector reward (0: a scalar reward).
    """

    env_id: str
    obs_shape: tuple[int, ...]
    action_kind: str
    action_dim: int
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    reward_dim: int = 0

    @property
    def reward_shape(self) -> tuple[int, ...]:
        """``()`` for a scalar reward, ``(K,)`` for ``K`` objectives."""
        return (self.reward_dim,) if self.reward_dim else ()

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.obs_shape))

    @classmethod
    def from_spaces(cls, env_id: str, obs_space: spaces.Space, act_space: spaces.Space, reward_dim: int = 0) -> EnvSpec:
        if isinstance(obs_space, spaces.Discrete):
            obs_shape: tuple[int, ...] = (int(obs_space.n),)
        elif isinstance(obs_space, spaces.Box):
            obs_shape = tuple(int(d) for d in obs_space.shape)
        else:
            raise UnsupportedSpaceError(
                f"{env_id}: observation space {type(obs_space).__name__} is not supported; "
                "flatten it with gymnasium.wrappers.FlattenObservation and register the wrapped env"
            )
        kind = space_kind(act_space)
        if kind == "box":
            assert isinstance(act_space, spaces.Box)
            if len(act_space.shape) != 1:
                raise UnsupportedSpaceError(f"{env_id}: Box actions of shape {act_space.shape} are not supported; use a flat (1-D) Box")
            return cls(env_id, obs_shape, "box", int(act_space.shape[0]),
                       tuple(float(x) for x in act_space.low), tuple(float(x) for x in act_space.high), reward_dim)
        if kind == "discrete":
            assert isinstance(act_space, spaces.Discrete)
            return cls(env_id, obs_shape, "discrete", int(act_space.n), reward_dim=reward_dim)
        raise UnsupportedSpaceError(f"{env_id}: action space {kind} is not supported; polyrl handles Box and Discrete")

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class StepResult:
    """One vectorised step.

    Attributes:
        obs: ``[N, *O]`` observation to act on next (first obs of a new episode after an end).
        reward: ``[N]`` float32 (``[N, K]`` for ``K`` objectives).
        terminated, truncated: ``[N]`` bool.
        next_obs: ``[N, *O]`` the true ``s_{t+1}`` of this transition (final obs at episode ends).
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray


class VecEnv:
    """``n_envs`` copies of one Gymnasium env, stepped together (sync or async)."""

    def __init__(self, env_id: str, n_envs: int = 1, *, seed: int | None = None, vectorization: str = "sync",
                 env_kwargs: dict | None = None) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if vectorization not in ("sync", "async"):
            raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
        self.env_id = check_env_id(env_id)
        kwargs = dict(env_kwargs or {})
        reward_dim = _reward_dim(self.env_id)
        if reward_dim:
            # Gymnasium's vector envs store scalar rewards; vector rewards get polyrl's own serial copies.
            if vectorization != "sync":
                raise ValueError(f"{env_id} has vector rewards; only vectorization='sync' is supported for it")
            # (Gymnasium's passive checker warns on every non-scalar reward: off for these envs.)
            envs = [gym.make(self.env_id, disable_env_checker=True, **kwargs) for _ in range(n_envs)]
            self._env: Any = _SerialVectorEnv(envs, reward_dim)
        else:
            self._env = gym.make_vec(
                self.env_id,
                num_envs=n_envs,
                vectorization_mode=vectorization,
                vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
                **kwargs,
            )
        self.num_envs = n_envs
        self._first_seed = seed
        self.observation_space = self._env.single_observation_space
        self.action_space = self._env.single_action_space
        self.spec = EnvSpec.from_spaces(env_id, self.observation_space, self.action_space, reward_dim)
        self._onehot = self.spec.obs_shape[0] if isinstance(self.observation_space, spaces.Discrete) else 0
        if self.spec.action_kind == "box":
            assert isinstance(self.action_space, spaces.Box)
            low, high = self.action_space.low.astype(np.float64), self.action_space.high.astype(np.float64)
            self._bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
            self._scale, self._shift = (high - low) / 2.0, (high + low) / 2.0
        self._ep_return = np.zeros((n_envs, *self.spec.reward_shape))
        self._ep_length = np.zeros(n_envs, dtype=np.int64)
        self.episodes: list[tuple[Any, int]] = []  # completed (return, length), drained by the trainer

    def _obs(self, obs: Any) -> np.ndarray:
        if self._onehot:
            return np.eye(self._onehot, dtype=np.float32)[np.asarray(obs, dtype=np.int64)]
        return np.asarray(obs, dtype=np.float32)

    def to_env_action(self, action: np.ndarray) -> np.ndarray:
        """Map normalised actions (``[-1, 1]`` Box or ``0..n-1`` Discrete) to the env's action space."""
        if self.spec.action_kind == "discrete":
            assert isinstance(self.action_space, spaces.Discrete)
            return np.asarray(action, dtype=np.int64) + int(self.action_space.start)
        action = np.asarray(action, dtype=np.float64)
        if self._bounded:
            action = np.clip(action, -1.0, 1.0) * self._scale + self._shift
        return action.astype(self.action_space.dtype)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every copy; copy ``i`` is seeded with ``seed + i`` (default: the seed given to ``make``, once)."""
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        seeds = None if seed is None else [seed + i for i in range(self.num_envs)]
        obs, _ = self._env.reset(seed=seeds)
        self._ep_return[:] = 0.0
        self._ep_length[:] = 0
        return self._obs(obs)

    def step(self, action: np.ndarray) -> StepResult:
        """Step every copy with normalised actions; see :class:`StepResult`."""
        obs, reward, terminated, truncated, info = self._env.step(self.to_env_action(action))
        reward = np.asarray(reward, dtype=np.float32)
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        obs = self._obs(obs)
        next_obs = obs
        done = terminated | truncated
        self._ep_return += reward
        self._ep_length += 1
        if done.any():
            next_obs = obs.copy()
            final = info["final_obs"]
            for i in np.flatnonzero(done):
                next_obs[i] = self._obs(final[i])
                ret = self._ep_return[i]
                self.episodes.append((ret.copy() if ret.ndim else float(ret), int(self._ep_length[i])))
            self._ep_return[done] = 0.0
            self._ep_length[done] = 0
        return StepResult(obs, reward, terminated, truncated, next_obs)

    @property
    def episode_start(self) -> np.ndarray:
        """``[N]`` bool: True for copies whose next step is the first of an episode (after ``reset`` or an episode end)."""
        return self._ep_length == 0

    def drain_episodes(self) -> list[tuple[Any, int]]:
        """Completed ``(return, length)`` pairs since the last call (a ``[K]`` array return for vector rewards)."""
        eps, self.episodes = self.episodes, []
        return eps

    def close(self) -> None:
        self._env.close()


def _reward_dim(env_id: str) -> int:
    """Objectives of an MO-Gymnasium env (its ``reward_space``), 0 for any other env."""
    entry = gym.registry[env_id].entry_point
    if not (isinstance(entry, str) and entry.startswith("mo_gymnasium")):
        return 0
    env = gym.make(env_id, disable_env_checker=True)
    try:
        space = getattr(env.unwrapped, "reward_space", None)
        return int(space.shape[0]) if space is not None and len(space.shape) == 1 else 0
    finally:
        env.close()


class _SerialVectorEnv:
    """Copies of a vector-reward env stepped in turn, with same-step auto-reset (the Gymnasium vector API subset VecEnv uses)."""

    def __init__(self, envs: list[gym.Env], reward_dim: int) -> None:
        self.envs, self.reward_dim = envs, reward_dim
        self.single_observation_space = envs[0].observation_space
        self.single_action_space = envs[0].action_space

    def reset(self, seed: list[int] | None = None) -> tuple[np.ndarray, dict]:
        seeds = seed if seed is not None else [None] * len(self.envs)
        return np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds)]), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        n = len(self.envs)
        obs, final = [], [None] * n
        reward = np.zeros((n, self.reward_dim), dtype=np.float32)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            o, reward[i], terminated[i], truncated[i], _ = env.step(action)
            if terminated[i] or truncated[i]:
                final[i], o = o, env.reset()[0]
            obs.append(o)
        return np.stack(obs), reward, terminated, truncated, {"final_obs": final}

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make(
    env_id: str,
    n_envs: int = 1,
    seed: int | None = None,
    *,
    vectorization: str = "sync",
    env_kwargs: dict | None = None,
) -> VecEnv:
    """Make a vectorised env; its first ``reset()`` applies ``seed``.

    Args:
        env_id: any registered Gymnasium id (``"module:Id"`` imports ``module`` first).
        n_envs: number of copies.
        seed: copy ``i`` is seeded with ``seed + i``.
        vectorization: ``"sync"`` (one process) or ``"async"`` (one subprocess per copy).
        env_kwargs: keyword arguments for ``gymnasium.make``.

    Example:
        >>> env = make("CartPole-v1", n_envs=4, seed=0)
        >>> obs = env.reset()                      # seeded with 0, 1, 2, 3
        >>> step = env.step(np.zeros(4, dtype=np.int64))
    """
    return VecEnv(env_id, n_envs, seed=seed, vectorization=vectorization, env_kwargs=env_kwargs)
