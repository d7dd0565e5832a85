"""Dyna-style data source: batches that mix real transitions with rollouts of a learned dynamics ensemble.

The model-based regime differs from plain SAC only here, in where batches come
from (MBPO, Janner et al. 2019; MOPO, Yu et al. 2020):

1. real data: the replay buffer the environment fills (MBPO, via a
   :class:`~polyrl.train.sources.ReplaySource`) or a fixed dataset (MOPO);
2. the probabilistic ensemble (:mod:`polyrl.models.dynamics`) is fitted on all
   real data: every ``model_train_freq`` env steps online (warm-started, its
   optimiser carried over), once before training offline; each fit may take
   ``model_min_updates`` gradient steps whatever ``model_max_epochs`` says
   (MBPO's first fit sees a few hundred transitions, one step per epoch: capped
   by epochs alone, that model's next-state error on Pendulum was 10x the later
   fits' while its rollouts filled 95% of the batches);
3. every ``rollout_freq`` steps (env steps online, gradient updates offline),
   ``rollout_batch_size`` states sampled from the real data are rolled out for
   ``k`` steps with the current policy in the model (``k`` from the
   algorithm's ``rollout_horizon``); each model reward is penalised by
   ``penalty_coef * u(s, a)``, ``u`` the ensemble's uncertainty (MOPO; 0 for
   MBPO); transitions go to a model buffer whose sampling window holds the
   latest ``model_retain_rounds`` rounds;
4. each batch holds ``real_ratio`` real transitions, the rest model ones.

The ensemble, its optimiser and a ``model_fitted`` flag live in the
algorithm's state (saved with the agent, so a resumed or reloaded run does not
refit from scratch); the model buffer and the sampler's RNG live in this
source's ``state_dict`` (exact resume).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyrl import seeding
from polyrl.algos.base import Algorithm, ModelBasedLearner, OnlineModelLearner, require
from polyrl.config import DataConfig, ModelRolloutConfig, ReplayConfig, rollout_schedule  # noqa: F401  (rollout_schedule: re-exported)
from polyrl.data import Dataset, ReplayBuffer
from polyrl.envs import RunningNorm, VecEnv
from polyrl.errors import ConfigError
from polyrl.families import ModelSACState
from polyrl.models.dynamics import Termination, termination_rule, train_dynamics
from polyrl.train.sources import ReplaySource, normalized, section
from polyrl.types import TransitionBatch


class ModelSource:
    """See the module docstring. ``algo`` provides ``rollout_horizon(step) -> k``, ``max_rollout_horizon`` and
    (online) ``model_train_freq``; its state is a :class:`ModelSACState` and its config a :class:`ModelRolloutConfig`."""

    def __init__(self, algo: Algorithm, norm: RunningNorm, env: VecEnv | None, seed: int, dataset: Dataset | None = None) -> None:
        self.algo, self.norm, self.clock = algo, norm, algo.clock
        self.online = algo.regime != "offline"
        cfg: ModelRolloutConfig = section(algo, "model", ModelRolloutConfig, "model rollouts")
        self.cfg, self.gamma = cfg, algo.cfg.gamma
        # the batch size of the real data: the replay buffer's online (MBPO), the dataset's offline (MOPO)
        self.batch_size: int = (section(algo, "replay", ReplayConfig, "model rollouts") if self.online
                                else section(algo, "data", DataConfig, "model rollouts")).batch_size
        require(algo, OnlineModelLearner if self.online else ModelBasedLearner, "model rollouts")
        self.learner: OnlineModelLearner = algo  # type: ignore[assignment]
        spec = algo.spec
        if self.online:
            assert env is not None
            self.real: ReplaySource | None = ReplaySource(algo, norm, env, seed)
            self.real_buffer = self.real.buffer
        else:
            if dataset is None:
                raise ConfigError(f"{algo.name} learns from a dataset: pass dataset=PATH (CLI: --dataset PATH)")
            self.real = None
            self.real_buffer = dataset.buffer(spec, algo.device)
        self.generator = torch.Generator(device=algo.device)
        self.generator.manual_seed(seeding.stream(seed, "model_rollout"))
        self.fit_generator = torch.Generator().manual_seed(seeding.stream(seed, "model_fit"))  # CPU: holdout split and bootstraps
        self.round_capacity = cfg.rollout_batch_size * self.learner.max_rollout_horizon
        self.model = ReplayBuffer(cfg.retain_rounds * self.round_capacity, spec.obs_shape, (spec.action_dim,),
                                  device=algo.device)
        self.window = 0
        """Newest model transitions sampled from (the latest ``model_retain_rounds`` rounds at the current horizon)."""
        self.last_fit = self.last_rollout = -1
        """Clock (env steps online, updates offline) of the latest fit and rollout round (-1: none yet)."""
        self.termination: Termination | None = termination_rule(cfg.termination, spec.env_id)  # type: ignore[attr-defined]

    @property
    def state(self) -> ModelSACState:
        return self.algo.state

    # -- steps ---------------------------------------------------------------------------------
    def _clock(self) -> int:
        return self.clock.progress(self.online)

    def collect(self, obs: np.ndarray | None) -> tuple[int, np.ndarray | None]:
        n = 0
        if self.real is not None:
            n, obs = self.real.collect(obs)
        now = self._clock()
        if self.online:  # MBPO: first fit once the random warm-up is collected, then every model_train_freq env steps
            due = now >= self.real.sched.updates_start and (  # type: ignore[union-attr]
                self.last_fit < 0 or now - self.last_fit >= self.learner.model_train_freq)
        else:  # MOPO: once, before the first update
            due = not self.state.model_fitted
        if due:
            self.fit()
            self.last_fit = now
        if self.state.model_fitted and (due or self.last_rollout < 0 or now - self.last_rollout >= self.cfg.rollout_freq):
            self.rollout()
            self.last_rollout = now
        return n, obs

    def _real_data(self) -> tuple[Tensor, ...]:
        b = self.real_buffer
        size = b.steps if b.full else b.pos
        return tuple(getattr(b, name)[:size].flatten(0, 1) for name in ("obs", "action", "reward", "next_obs", "terminated"))

    def fit(self) -> dict[str, float]:
        """Fit the ensemble on every stored real transition (continuing from its current weights)."""
        s = self.state
        s.dynamics.train()
        summary = train_dynamics(s.dynamics, s.dynamics_opt, *self._real_data(), generator=self.fit_generator)
        s.model_fitted.fill_(1.0)
        self.learner.model_metrics.update({f"train/model_{k}": v for k, v in summary.items()})
        return summary

    @torch.no_grad()
    def rollout(self) -> int:
        """One round of ``k``-step policy rollouts in the model from real start states; returns transitions added."""
        algo, cfg, s = self.algo, self.cfg, self.state
        k = self.learner.rollout_horizon(self._clock())
        t, e = self.real_buffer.sample_index(cfg.rollout_batch_size, self.generator)
        obs = self.real_buffer.obs[t, e]
        added, penalty, reward_sum = 0, 0.0, 0.0
        for _ in range(k):
            action = algo.act(self.norm(obs))
            out = s.dynamics.sample(obs, action, self.generator, self.termination)
            ok = torch.isfinite(out.next_obs).all(1) & torch.isfinite(out.reward)
            reward = out.reward - cfg.penalty_coef * out.uncertainty
            rows = ok.nonzero().squeeze(1)
            self._extend(obs[rows], action[rows], reward[rows], out.next_obs[rows], out.terminated[rows].float())
            added += len(rows)
            penalty += float(out.uncertainty[rows].sum())
            reward_sum += float(reward[rows].sum())
            obs = out.next_obs[ok & ~out.terminated]
            if obs.shape[0] == 0:
                break
        self.window = min(cfg.retain_rounds * cfg.rollout_batch_size * k, len(self.model))
        self.learner.model_metrics.update({"train/rollout_length": float(k), "train/model_buffer": float(self.window),
                                   "train/model_uncertainty": penalty / max(added, 1), "train/model_reward": reward_sum / max(added, 1)})
        return added

    def _extend(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminated: Tensor) -> None:
        """Append ``[n]`` transitions to the model ring buffer (one env column)."""
        buf, n = self.model, obs.shape[0]
        if n == 0:
            return
        idx = (buf.pos + torch.arange(n, device=buf.device)) % buf.steps
        for name, value in (("obs", obs), ("action", action), ("reward", reward), ("next_obs", next_obs),
                            ("terminated", terminated), ("truncated", torch.zeros_like(terminated))):
            getattr(buf, name)[idx, 0] = value
        buf.full = buf.full or buf.pos + n >= buf.steps
        buf.pos = (buf.pos + n) % buf.steps

    def _sample_model(self, n: int) -> TransitionBatch:
        """``n`` transitions uniformly from the newest ``window`` model transitions."""
        buf = self.model
        t = (buf.pos - 1 - torch.randint(self.window, (n,), generator=self.generator, device=buf.device)) % buf.steps
        return TransitionBatch(obs=buf.obs[t, 0], action=buf.action[t, 0], reward=buf.reward[t, 0], next_obs=buf.next_obs[t, 0],
                               terminated=buf.terminated[t, 0], discount=torch.full((n,), self.gamma, device=buf.device))

    def _sample(self) -> TransitionBatch:
        cfg = self.cfg
        n_real = self.batch_size if self.window == 0 else round(self.batch_size * cfg.real_ratio)
        parts = []
        if n_real:
            parts.append(self.real_buffer.sample(n_real, self.generator, gamma=self.gamma))
        if self.batch_size - n_real:
            parts.append(self._sample_model(self.batch_size - n_real))
        b = parts[0] if len(parts) == 1 else TransitionBatch(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(TransitionBatch) if f.name != "index"})
        return normalized(b, self.norm)

    def batches(self) -> Iterator[TransitionBatch]:
        if not self.state.model_fitted:
            return
        rounds = self.real.sched.gradient_steps if self.real is not None else 1
        for _ in range(rounds):
            yield self._sample()

    # -- checkpoints ---------------------------------------------------------------------------
    def on_checkpoint(self) -> None:
        if self.real is not None:
            self.real.on_checkpoint()

    def state_dict(self) -> dict[str, Any]:
        return {"real": self.real.state_dict() if self.real is not None else {}, "model": self.model.state_dict(),
                "window": self.window, "last_fit": self.last_fit, "last_rollout": self.last_rollout, "generator": self.generator.get_state(), "fit_generator": self.fit_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.real is not None:
            self.real.load_state_dict(state["real"])
        self.model.load_state_dict(state["model"])
        self.window = int(state["window"])
        self.last_fit, self.last_rollout = int(state["last_fit"]), int(state["last_rollout"])
        self.generator.set_state(state["generator"])
        self.fit_generator.set_state(state["fit_generator"])


__all__ = ["ModelRolloutConfig", "ModelSACState", "ModelSource", "rollout_schedule"]
