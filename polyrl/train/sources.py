"""Where batches come from. The regimes differ here, not in the algorithms.

A source steps the environment in ``collect`` (returning how many env steps
it took) and yields the batches for the next round of updates from
``batches``. ``RolloutSource`` feeds on-policy algorithms one fresh rollout
per round; ``ReplaySource`` feeds off-policy algorithms transitions sampled
from a replay buffer that the environment fills; ``DatasetSource`` feeds
offline algorithms from a fixed dataset on the same storage, and never
steps an environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from polyrl.algos.base import Algorithm
from polyrl.data import Dataset, ReplayBuffer, Rollout, RolloutBuffer
from polyrl.envs import RunningNorm, StepResult, VecEnv
from polyrl.errors import ConfigError, DivergenceError
from polyrl.types import TransitionBatch


def _check_action(action: np.ndarray, step: int) -> np.ndarray:
    if action.dtype.kind == "f" and not np.isfinite(action).all():
        raise DivergenceError(f"the policy produced non-finite actions at step {step} (training diverged)")
    return action


def _check_finite(res: StepResult, env: VecEnv) -> None:
    if not np.isfinite(res.reward).all():
        raise DivergenceError(f"{env.env_id} returned a non-finite reward {res.reward.tolist()}; check the environment (polyrl stops rather than learn from it)")
    if not np.isfinite(res.next_obs).all():
        raise DivergenceError(f"{env.env_id} returned a non-finite observation; check the environment (polyrl stops rather than learn from it)")


class RolloutSource:
    """On-policy: each round is one rollout of ``n_steps`` steps from every env with the current policy."""

    online = True

    def __init__(self, algo: Algorithm, norm: RunningNorm, env: VecEnv) -> None:
        cfg: Any = algo.cfg
        self.algo, self.norm, self.env = algo, norm, env
        spec = algo.spec
        discrete = spec.action_kind == "discrete"
        self.buffer = RolloutBuffer(cfg.n_steps, env.num_envs, spec.obs_shape, () if discrete else (spec.action_dim,),
                                    discrete=discrete, device=algo.device)
        self._rollout: Rollout | None = None

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return self.norm(torch.as_tensor(obs, device=self.algo.device))

    def collect(self, obs: np.ndarray) -> tuple[int, np.ndarray]:
        algo, env, dev = self.algo, self.env, self.algo.device
        for _ in range(self.buffer.n_steps):
            self.norm.update(obs)
            x = self._tensor(obs)
            action, log_prob, value = algo.policy_step(x)  # type: ignore[attr-defined]
            res = env.step(_check_action(action.cpu().numpy(), algo.env_steps))
            _check_finite(res, env)
            final_value = torch.zeros_like(value)
            if res.truncated.any():
                idx = np.flatnonzero(res.truncated)
                final_value[torch.as_tensor(idx, device=dev)] = algo.value(self._tensor(res.next_obs[idx]))  # type: ignore[attr-defined]
            self.buffer.add(x, action, log_prob, value, torch.as_tensor(res.reward, device=dev),
                            torch.as_tensor(res.terminated, dtype=torch.float32, device=dev),
                            torch.as_tensor(res.terminated | res.truncated, dtype=torch.float32, device=dev), final_value)
            obs = res.obs
            algo.env_steps += env.num_envs
        self._rollout = self.buffer.finish(algo.value(self._tensor(obs)))  # type: ignore[attr-defined]
        return self.buffer.n_steps * env.num_envs, obs

    def batches(self) -> Iterator[Rollout]:
        if self._rollout is not None:
            rollout, self._rollout = self._rollout, None
            yield rollout

    def on_checkpoint(self) -> None:
        """Nothing to cut: checkpoints fall between rollouts, whose last step already bootstraps."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class ReplaySource:
    """Off-policy: the env fills a replay buffer; each round samples ``gradient_steps`` batches from it.

    Before ``learning_starts`` env steps, actions are uniformly random (in the
    normalised action space) and no batches are yielded.
    """

    online = True

    def __init__(self, algo: Algorithm, norm: RunningNorm, env: VecEnv, seed: int) -> None:
        cfg: Any = algo.cfg
        self.algo, self.norm, self.env, self.cfg = algo, norm, env, cfg
        spec = algo.spec
        self.discrete = spec.action_kind == "discrete"
        self.buffer = ReplayBuffer(cfg.buffer_size, spec.obs_shape, () if self.discrete else (spec.action_dim,),
                                   n_envs=env.num_envs, discrete=self.discrete, device=algo.device)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=algo.device)
        self.generator.manual_seed(seed)

    def _random_action(self) -> np.ndarray:
        n = self.env.num_envs
        if self.discrete:
            return self.rng.integers(self.algo.spec.action_dim, size=n)
        return self.rng.uniform(-1.0, 1.0, size=(n, self.algo.spec.action_dim)).astype(np.float32)

    def collect(self, obs: np.ndarray) -> tuple[int, np.ndarray]:
        algo, env = self.algo, self.env
        for _ in range(self.cfg.train_freq):
            self.norm.update(obs)
            if algo.env_steps < self.cfg.learning_starts:
                action = self._random_action()
            else:
                action = _check_action(algo.act(self.norm(torch.as_tensor(obs, device=algo.device))).cpu().numpy(), algo.env_steps)
            res = env.step(action)
            _check_finite(res, env)
            self.buffer.add(obs, action, res.reward, res.next_obs, res.terminated, res.truncated)
            obs = res.obs
            algo.env_steps += env.num_envs
        return self.cfg.train_freq * env.num_envs, obs

    def batches(self) -> Iterator[TransitionBatch]:
        if self.algo.env_steps < self.cfg.learning_starts:
            return
        for _ in range(self.cfg.gradient_steps):
            b = self.buffer.sample(self.cfg.batch_size, self.generator, gamma=self.cfg.gamma, n_step=self.cfg.n_step)
            if self.norm.enabled:
                b = TransitionBatch(self.norm(b.obs), b.action, b.reward, self.norm(b.next_obs), b.terminated, b.discount)
            yield b

    def on_checkpoint(self) -> None:
        self.buffer.mark_truncated()

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "rng": self.rng.bit_generator.state,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])


class DatasetSource:
    """Offline: each round is one batch sampled uniformly from a fixed dataset; no environment is stepped."""

    online = False

    def __init__(self, algo: Algorithm, norm: RunningNorm, dataset: Dataset, seed: int) -> None:
        self.algo, self.norm, self.cfg = algo, norm, algo.cfg
        self.buffer = dataset.buffer(algo.spec, algo.device)
        self.generator = torch.Generator(device=algo.device)
        self.generator.manual_seed(seed)

    def collect(self, obs: np.ndarray | None) -> tuple[int, np.ndarray | None]:
        return 0, obs

    def batches(self) -> Iterator[TransitionBatch]:
        cfg: Any = self.cfg
        b = self.buffer.sample(cfg.batch_size, self.generator, gamma=cfg.gamma)
        if self.norm.enabled:
            b = TransitionBatch(self.norm(b.obs), b.action, b.reward, self.norm(b.next_obs), b.terminated, b.discount)
        yield b

    def on_checkpoint(self) -> None:
        """Nothing to cut: no environment is running."""

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def make_source(algo: Algorithm, norm: RunningNorm, env: VecEnv | None, seed: int,
                dataset: Dataset | None = None) -> RolloutSource | ReplaySource | DatasetSource:
    """The data source for the algorithm's regime."""
    if algo.regime == "offline":
        if dataset is None:
            raise ConfigError(f"{algo.name} learns from a dataset: pass dataset=PATH (CLI: --dataset PATH)")
        return DatasetSource(algo, norm, dataset, seed)
    assert env is not None
    if algo.regime == "on_policy":
        return RolloutSource(algo, norm, env)
    if algo.regime == "off_policy":
        return ReplaySource(algo, norm, env, seed)
    raise ValueError(f"no data source for regime {algo.regime!r}")
