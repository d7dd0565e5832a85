"""The world-model regime's data source: the env fills a replay buffer; rounds yield windows of sequences.

Like :class:`~polyrl.train.sources.ReplaySource`, with three differences:

* batches are :class:`~polyrl.data.sequence.WorldModelBatch` es: ``[B, T]``
  windows for the world model and ``[B_img, C]`` contexts to imagine from;
* acting carries the policy's recurrent state per env copy
  (``algo.act_recurrent``), cleared where an episode starts;
* optional DreamSmooth (each finished episode's rewards are smoothed into a
  second reward array, the reward model's target) and Drama's DFS
  (per-start draw counts bias which windows are sampled).

Everything needed for an exact resume (buffer, smoothed rewards, draw counts,
RNG states) is in :meth:`SequenceReplaySource.state_dict`; the recurrent
state needs no saving because checkpoints start new episodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from polyrl import seeding
from polyrl.algos.base import Algorithm, RecurrentLearner, require
from polyrl.config import SequenceReplayConfig
from polyrl.data import ReplayBuffer
from polyrl.data.sequence import (
    SequenceBatch,
    WorldModelBatch,
    dfs_imagination_weights,
    dfs_model_weights,
    gather_windows,
    sample_windows,
    valid_starts,
)
from polyrl.envs import RunningNorm, VecEnv
from polyrl.errors import ConfigError
from polyrl.models.smoothing import KINDS as SMOOTHING
from polyrl.models.smoothing import smooth_rewards
from polyrl.train.sources import _check_action, _check_finite, random_actions, section

DEFAULT_SMOOTHING = {"gaussian": 3.0, "uniform": 9.0, "ema": 0.33}
"""DreamSmooth's defaults (Lee et al. 2024): gaussian sigma, uniform window, EMA alpha."""


class SequenceReplaySource:
    """World-model regime: collect with the recurrent policy, sample windows (uniform or DFS)."""

    online = True

    def __init__(self, algo: Algorithm, norm: RunningNorm, env: VecEnv, seed: int) -> None:
        require(algo, RecurrentLearner, "windows of sequences (the world-model regime)")
        cfg: SequenceReplayConfig = section(algo, "sequence", SequenceReplayConfig, "windows of sequences")
        self.algo, self.norm, self.env, self.cfg, self.clock = algo, norm, env, cfg, algo.clock
        self.learner: RecurrentLearner = algo  # type: ignore[assignment]
        if cfg.reward_smoothing not in SMOOTHING:
            raise ConfigError(f"reward_smoothing must be one of {', '.join(SMOOTHING)}, got {cfg.reward_smoothing!r}")
        self.smoothing = cfg.reward_smoothing
        self.amount = DEFAULT_SMOOTHING.get(self.smoothing, 0.0) if cfg.smoothing_amount is None else cfg.smoothing_amount
        spec, n = algo.spec, env.num_envs
        self.discrete = spec.action_kind == "discrete"
        if cfg.buffer_size // n < cfg.seq_len:
            raise ConfigError(f"buffer_size {cfg.buffer_size} holds fewer than seq_len={cfg.seq_len} steps per env; raise buffer_size")
        self.buffer = ReplayBuffer(cfg.buffer_size, spec.obs_shape, () if self.discrete else (spec.action_dim,),
                                   n_envs=n, discrete=self.discrete, device=algo.device)
        steps = self.buffer.steps
        self.smoothed = torch.zeros(steps, n, device=algo.device) if self.smoothing != "none" else None
        self.model_counts = torch.zeros(steps, n, device=algo.device)
        self.imag_counts = torch.zeros(steps, n, device=algo.device)
        self.added = 0  # steps added per env so far
        self.episode_start = np.zeros(n, dtype=np.int64)  # value of ``added`` when each env's episode began
        self.first = np.ones(n, dtype=bool)  # the next observation starts an episode (for the policy's state)
        self.carry: Any = None
        self.rng = np.random.default_rng(seeding.stream(seed, "sampling"))
        self.generator = torch.Generator(device=algo.device)
        self.generator.manual_seed(seeding.stream(seed, "sampling"))

    def collect(self, obs: np.ndarray) -> tuple[int, np.ndarray]:
        algo, env, clock = self.algo, self.env, self.clock
        for _ in range(self.cfg.train_freq):
            self.norm.update(obs)
            if clock.env_steps < self.cfg.learning_starts:
                action, self.carry = random_actions(self.rng, algo.spec, env.num_envs), None
            else:
                x = self.norm(torch.as_tensor(obs, device=algo.device))
                a, self.carry = self.learner.act_recurrent(x, torch.as_tensor(self.first, device=algo.device), self.carry)
                action = _check_action(a.cpu().numpy(), clock.env_steps)
            res = env.step(action)
            _check_finite(res, env)
            self._add(obs, action, res.reward, res.next_obs, res.terminated, res.truncated)
            self.first = res.terminated | res.truncated if self.carry is not None else np.ones_like(self.first)
            obs = res.obs
            clock.env_steps += env.num_envs
        return self.cfg.train_freq * env.num_envs, obs

    def _add(self, obs: Any, action: Any, reward: np.ndarray, next_obs: Any, terminated: np.ndarray, truncated: np.ndarray) -> None:
        p = self.buffer.pos
        self.buffer.add(obs, action, reward, next_obs, terminated, truncated)
        self.model_counts[p] = 0.0
        self.imag_counts[p] = 0.0
        self.added += 1
        if self.smoothed is not None:
            self.smoothed[p] = torch.as_tensor(reward, device=self.smoothed.device)
            for i in np.flatnonzero(terminated | truncated):
                self._smooth_episode(int(i))

    def _smooth_episode(self, i: int) -> None:
        """Replace env ``i``'s just-finished episode's stored rewards by their smoothed version."""
        assert self.smoothed is not None
        steps = self.buffer.steps
        length = min(self.added - int(self.episode_start[i]), steps)
        t = (self.buffer.pos - length + np.arange(length)) % steps
        raw = self.buffer.reward[t, i].cpu().numpy()
        self.smoothed[t, i] = torch.as_tensor(smooth_rewards(raw, self.smoothing, self.amount), device=self.smoothed.device)
        self.episode_start[i] = self.added

    def _windows(self, batch: int, length: int, imagine: bool) -> SequenceBatch:
        weights = None
        if self.cfg.sampling == "dfs":
            starts = valid_starts(self.buffer, length)
            n, m = self.model_counts[starts], self.imag_counts[starts]
            weights = dfs_imagination_weights(n, m) if imagine else dfs_model_weights(n)
        t0, e = sample_windows(self.buffer, batch, length, self.generator, weights)
        counts = self.imag_counts if imagine else self.model_counts
        counts.index_put_((t0, e), torch.ones_like(t0, dtype=counts.dtype), accumulate=True)
        b = gather_windows(self.buffer, t0, e, length, self.smoothed)
        return replace(b, obs=self.norm(b.obs)) if self.norm.enabled else b

    def batches(self) -> Iterator[WorldModelBatch]:
        if self.clock.env_steps < self.cfg.learning_starts or self.added < self.cfg.seq_len:
            return
        for _ in range(self.cfg.gradient_steps):
            yield WorldModelBatch(self._windows(self.cfg.batch_size, self.cfg.seq_len, imagine=False),
                                  self._windows(self.cfg.imag_batch, self.cfg.imag_context, imagine=True))

    def on_checkpoint(self) -> None:
        """The trainer cuts every episode here: mark it, smooth what was stored, start the policy's state afresh."""
        self.buffer.mark_truncated()
        if self.smoothed is not None and self.added:
            for i in range(self.env.num_envs):
                if self.added > self.episode_start[i]:
                    self._smooth_episode(i)
        self.first[:] = True
        self.carry = None

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "smoothed": None if self.smoothed is None else self.smoothed.clone(),
                "model_counts": self.model_counts.clone(), "imag_counts": self.imag_counts.clone(), "added": self.added,
                "episode_start": self.episode_start.copy(), "first": self.first.copy(),
                "rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        if self.smoothed is not None:
            self.smoothed.copy_(state["smoothed"].to(self.smoothed.device))
        self.model_counts.copy_(state["model_counts"].to(self.model_counts.device))
        self.imag_counts.copy_(state["imag_counts"].to(self.imag_counts.device))
        self.added = int(state["added"])
        self.episode_start = np.asarray(state["episode_start"], dtype=np.int64).copy()
        self.first = np.asarray(state["first"], dtype=bool).copy()
        self.carry = None
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
