"""Preallocated transition storage with index-based sampling.

The storage is time-major, ``[T, N, ...]`` for ``N`` parallel envs, so the
transition after ``(t, i)`` is ``(t + 1, i)``: n-step windows and sequence
slices are plain index arithmetic. An offline dataset is the same storage
filled once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyrl.returns import nstep_returns
from polyrl.types import TransitionBatch

FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class ReplayBuffer:
    """A ring buffer of ``capacity`` transitions from ``n_envs`` envs (``capacity // n_envs`` steps each).

    Args:
        capacity: total transitions kept (rounded down to a multiple of ``n_envs``).
        obs_shape: shape of one observation.
        action_shape: ``(d,)`` for Box actions (float32) or ``()`` for Discrete (int64).
        n_envs: envs adding one transition each per ``add``.
        reward_shape: ``()`` or ``(K,)`` for vector rewards.
        device: where the tensors live (sampling returns tensors there).
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        *,
        n_envs: int = 1,
        discrete: bool = False,
        reward_shape: tuple[int, ...] = (),
        device: torch.device | str = "cpu",
    ) -> None:
        self.steps = max(1, capacity // n_envs)
        self.n_envs = n_envs
        self.device = torch.device(device)
        t, n = self.steps, n_envs
        f32 = dict(dtype=torch.float32, device=self.device)
        self.obs = torch.zeros((t, n, *obs_shape), **f32)
        self.next_obs = torch.zeros((t, n, *obs_shape), **f32)
        self.action = torch.zeros((t, n, *action_shape), dtype=torch.int64 if discrete else torch.float32, device=self.device)
        self.reward = torch.zeros((t, n, *reward_shape), **f32)
        self.terminated = torch.zeros((t, n), **f32)
        self.truncated = torch.zeros((t, n), **f32)
        self.pos = 0  # next time index to write
        self.full = False

    @classmethod
    def wrap(cls, *, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminated: Tensor,
             truncated: Tensor) -> ReplayBuffer:
        """A full buffer over existing ``[T, ...]`` tensors, without copying (how a dataset is served).

        The newest transition is the last one, so n-step windows never run past the end.
        """
        buf = cls.__new__(cls)
        buf.steps, buf.n_envs, buf.device = int(obs.shape[0]), 1, obs.device
        for name, value in zip(FIELDS, (obs, action, reward, next_obs, terminated, truncated)):
            setattr(buf, name, value.unsqueeze(1))
        buf.pos, buf.full = 0, True
        return buf

    def __len__(self) -> int:
        return (self.steps if self.full else self.pos) * self.n_envs

    def add(self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any, truncated: Any) -> None:
        """Add one step from every env (each argument has a leading ``N`` axis)."""
        p = self.pos
        for name, value in zip(FIELDS, (obs, action, reward, next_obs, terminated, truncated)):
            getattr(self, name)[p] = torch.as_tensor(np.asarray(value), device=self.device)
        self.pos = (p + 1) % self.steps
        self.full = self.full or self.pos == 0

    def mark_truncated(self) -> None:
        """Flag the newest step of every env as truncated (the trainer cuts episodes at checkpoints)."""
        if len(self):
            self.truncated[(self.pos - 1) % self.steps] = 1.0

    def sample_index(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Uniform ``(time, env)`` indices of stored transitions."""
        size = self.steps if self.full else self.pos
        if size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        t = torch.randint(size, (batch_size,), generator=generator, device=self.device)
        e = torch.randint(self.n_envs, (batch_size,), generator=generator, device=self.device)
        return t, e

    def sample(self, batch_size: int, generator: torch.Generator, *, gamma: float, n_step: int = 1) -> TransitionBatch:
        """Sample uniformly; with ``n_step > 1``, rewards are discounted sums up to the episode end.

        n-step windows stop at the newest stored step (treated as a cut, which
        bootstraps like a truncation) so no window reads unwritten or
        overwritten data.
        """
        t, e = self.sample_index(batch_size, generator)
        if n_step == 1:
            index = t * self.n_envs + e

            def take(x: Tensor) -> Tensor:  # index_select on a [T * N, ...] view: the rows [t, e], in half the time
                return x.flatten(0, 1).index_select(0, index)

            return TransitionBatch(obs=take(self.obs), action=take(self.action), reward=take(self.reward),
                                   next_obs=take(self.next_obs), terminated=take(self.terminated),
                                   discount=torch.full((batch_size,), gamma, device=self.device), index=index)
        offsets = torch.arange(n_step, device=self.device)
        window = (t.unsqueeze(1) + offsets) % self.steps  # [B, n]
        ee = e.unsqueeze(1).expand_as(window)
        done = torch.maximum(self.terminated[window, ee], self.truncated[window, ee])
        newest = (self.pos - 1) % self.steps
        done = torch.where(window == newest, torch.ones_like(done), done)
        g, discount, last, term = nstep_returns(self.reward[window, ee], self.terminated[window, ee], done, gamma=gamma)
        t_last = window.gather(1, last.unsqueeze(1)).squeeze(1)
        return TransitionBatch(
            obs=self.obs[t, e],
            action=self.action[t, e],
            reward=g,
            next_obs=self.next_obs[t_last, e],
            terminated=term,
            discount=discount,
            index=t * self.n_envs + e,
        )

    def state_dict(self) -> dict[str, Any]:
        """The stored data (only the filled part) and the write position."""
        size = self.steps if self.full else self.pos
        out: dict[str, Any] = {name: getattr(self, name)[:size].clone() for name in FIELDS}
        out["pos"], out["full"] = self.pos, self.full
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in FIELDS:
            data = state[name]
            getattr(self, name)[: data.shape[0]] = data.to(self.device)
        self.pos, self.full = int(state["pos"]), bool(state["full"])
