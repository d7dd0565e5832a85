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
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import numpy as np
import torch

from polyrl import seeding
from polyrl.algos.base import Algorithm, OnPolicyLearner, require
from polyrl.config import DataConfig, ModelRolloutConfig, OnlineReplayConfig, ReplayConfig, RolloutConfig
from polyrl.data import Dataset, ReplayBuffer, Rollout, RolloutBuffer
from polyrl.envs import EnvSpec, RunningNorm, StepResult, VecEnv
from polyrl.errors import ConfigError, DivergenceError
from polyrl.types import TransitionBatch


class DataSource(Protocol):
    """What the trainer needs of a data source: one round of collection, then the batches for one round of updates.

    Every source also keeps what an exact resume needs (``state_dict``) and cuts its episodes at a checkpoint.
    """

    def collect(self, obs: Any) -> tuple[int, Any]:
        """Step the environment (if any) from ``obs``; return the env steps taken and the next observation."""
        ...

    def batches(self) -> Iterator[Any]:
        """The typed batches for the next round of updates (none before learning starts)."""
        ...

    def on_checkpoint(self) -> None:
        """The trainer cuts every episode here (checkpoints are episode boundaries)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


def section(algo: Algorithm, name: str, kind: type, what: str) -> Any:
    """The typed source section ``algo.cfg.<name>`` (a ``kind``), or a one-line error saying the config lacks it."""
    value = getattr(algo.cfg, name, None)
    if not isinstance(value, kind):
        raise ConfigError(f"{algo.name} cannot be fed {what}: its config has no {name!r} section ({kind.__name__}); "
                          f"declare `{name}: {kind.__name__}` in {type(algo.cfg).__name__}")
    return value


def _check_action(action: np.ndarray, step: int) -> np.ndarray:
    if action.dtype.kind == "f" and not np.isfinite(action).all():
        raise DivergenceError(f"the policy produced non-finite actions at step {step} (training diverged)")
    return action


def random_actions(rng: np.random.Generator, spec: EnvSpec, n: int) -> np.ndarray:
    """``n`` uniformly random actions in the agent's action space (indices, or the ``[-1, 1]`` box)."""
    if spec.action_kind == "discrete":
        return rng.integers(spec.action_dim, size=n)
    return rng.uniform(-1.0, 1.0, size=(n, spec.action_dim)).astype(np.float32)


def _check_finite(res: StepResult, env: VecEnv) -> None:
    if not np.isfinite(res.reward).all():
        raise DivergenceError(f"{env.env_id} returned a non-finite reward {res.reward.tolist()}; check the environment (polyrl stops rather than learn from it)")
    if not np.isfinite(res.next_obs).all():
        raise DivergenceError(f"{env.env_id} returned a non-finite observation; check the environment (polyrl stops rather than learn from it)")


class RolloutSource:
    """On-policy: each round is one rollout of ``n_steps`` steps from every env with the current policy."""

    online = True

    def __init__(self, algo: Algorithm, norm: RunningNorm, env: VecEnv) -> None:
        require(algo, OnPolicyLearner, "on-policy rollouts")
        # an on-policy algorithm's ``rollout``; an offline algorithm's online phase (Uni-O4): its ``online`` section
        rollout: RolloutConfig = section(algo, "online" if algo.regime == "offline" else "rollout", RolloutConfig, "on-policy rollouts")
        self.algo, self.norm, self.env, self.clock = algo, norm, env, algo.clock
        self.learner: OnPolicyLearner = algo  # type: ignore[assignment]
        spec = algo.spec
        discrete = spec.action_kind == "discrete"
        self.buffer = RolloutBuffer(rollout.n_steps, env.num_envs, spec.obs_shape, () if discrete else (spec.action_dim,),
                                    discrete=discrete, value_shape=spec.reward_shape, device=algo.device)
        self._rollout: Rollout | None = None

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return self.norm(torch.as_tensor(obs, device=self.algo.device))

    def collect(self, obs: np.ndarray) -> tuple[int, np.ndarray]:
        learner, env, dev = self.learner, self.env, self.algo.device
        for _ in range(self.buffer.n_steps):
            self.norm.update(obs)
            x = self._tensor(obs)
            action, log_prob, value = learner.policy_step(x)
            res = env.step(_check_action(action.cpu().numpy(), self.clock.env_steps))
            _check_finite(res, env)
            final_value = torch.zeros_like(value)
            if res.truncated.any():  # V(final obs) of every copy (a member of a population values its own copies)
                idx = torch.as_tensor(np.flatnonzero(res.truncated), device=dev)
                final_value[idx] = learner.value(self._tensor(res.next_obs))[idx]
            self.buffer.add(x, action, log_prob, value, torch.as_tensor(res.reward, device=dev),
                            torch.as_tensor(res.terminated, dtype=torch.float32, device=dev),
                            torch.as_tensor(res.terminated | res.truncated, dtype=torch.float32, device=dev), final_value)
            obs = res.obs
            self.clock.env_steps += env.num_envs
        self._rollout = self.buffer.finish(learner.value(self._tensor(obs)))
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


@dataclass(frozen=True)
class ReplaySchedule:
    """How a :class:`ReplaySource` collects and samples, read once from the algorithm's config."""

    buffer_size: int
    batch_size: int
    random_steps: int
    """Env steps of uniformly random actions at the start."""
    updates_start: int
    """Env steps before the first update."""
    train_freq: int
    gradient_steps: int
    n_step: int
    gamma: float
    offline_ratio: float = 0.0
    """Share of each batch drawn from the offline dataset (fine-tuning)."""

    @classmethod
    def of(cls, algo: Algorithm) -> ReplaySchedule:
        """From the algorithm's ``replay`` section, or, for an offline-trained policy that continues online, from its
        ``online`` section (no random warm-up, mixed batches of the offline ``data`` batch size)."""
        gamma = algo.cfg.gamma
        if algo.regime == "offline":
            online: OnlineReplayConfig = section(algo, "online", OnlineReplayConfig, "replay mixed with its dataset")
            data: DataConfig = section(algo, "data", DataConfig, "replay mixed with its dataset")
            if not 0.0 <= online.offline_ratio <= 1.0:
                raise ConfigError(f"online_offline_ratio must lie in [0, 1], got {online.offline_ratio}")
            return cls(online.buffer_size, data.batch_size, 0, max(online.warmup, 1), 1, online.updates_per_step,
                       1, gamma, online.offline_ratio)
        r: ReplayConfig = section(algo, "replay", ReplayConfig, "a replay buffer")
        return cls(r.buffer_size, r.batch_size, r.learning_starts, r.learning_starts, r.train_freq, r.gradient_steps, r.n_step, gamma)


class ReplaySource:
    """Off-policy: the env fills a replay buffer; each round samples ``gradient_steps`` batches from it.

    For the first ``random_steps`` env steps actions are uniformly random (in
    the normalised action space); no batches are yielded before
    ``updates_start``. When fine-tuning an offline-trained algorithm, a share
    ``offline_ratio`` of every batch comes from the offline dataset (the rest
    from the online buffer), so offline-to-online is this source, not a
    second copy of the algorithm.
    """

    online = True

    def __init__(self, algo: Algorithm, norm: RunningNorm, env: VecEnv, seed: int, dataset: Dataset | None = None) -> None:
        self.algo, self.norm, self.env, self.clock = algo, norm, env, algo.clock
        self.sched = ReplaySchedule.of(algo)
        if self.sched.offline_ratio > 0 and dataset is None:
            raise ConfigError(f"{algo.name} fine-tuning mixes in the offline dataset (online_offline_ratio={self.sched.offline_ratio}); "
                              "load the agent with its dataset, or set online_offline_ratio=0")
        spec = algo.spec
        self.discrete = spec.action_kind == "discrete"
        self.buffer = ReplayBuffer(self.sched.buffer_size, spec.obs_shape, () if self.discrete else (spec.action_dim,),
                                   n_envs=env.num_envs, discrete=self.discrete, device=algo.device)
        self.offline = dataset.buffer(spec, algo.device) if dataset is not None and self.sched.offline_ratio > 0 else None
        self.rng = np.random.default_rng(seeding.stream(seed, "sampling"))
        self.generator = torch.Generator(device=algo.device)
        self.generator.manual_seed(seeding.stream(seed, "sampling"))

    def collect(self, obs: np.ndarray) -> tuple[int, np.ndarray]:
        algo, env, clock = self.algo, self.env, self.clock
        for _ in range(self.sched.train_freq):
            self.norm.update(obs)
            if clock.env_steps < self.sched.random_steps:
                action = random_actions(self.rng, algo.spec, env.num_envs)
            else:
                action = _check_action(algo.act(self.norm(torch.as_tensor(obs, device=algo.device))).cpu().numpy(), clock.env_steps)
            res = env.step(action)
            _check_finite(res, env)
            self.buffer.add(obs, action, res.reward, res.next_obs, res.terminated, res.truncated)
            obs = res.obs
            clock.env_steps += env.num_envs
        return self.sched.train_freq * env.num_envs, obs

    def _sample(self) -> TransitionBatch:
        sc = self.sched
        n_off = round(sc.batch_size * sc.offline_ratio) if self.offline is not None else 0
        b = self.buffer.sample(sc.batch_size - n_off, self.generator, gamma=sc.gamma, n_step=sc.n_step)
        if n_off:
            o = self.offline.sample(n_off, self.generator, gamma=sc.gamma)  # type: ignore[union-attr]
            b = TransitionBatch(**{f.name: torch.cat([getattr(o, f.name), getattr(b, f.name)])
                                   for f in fields(TransitionBatch) if f.name != "index"})  # two storages: no index
        return normalized(b, self.norm)

    def batches(self) -> Iterator[TransitionBatch]:
        if self.clock.env_steps < self.sched.updates_start:
            return
        for _ in range(self.sched.gradient_steps):
            yield self._sample()

    def on_checkpoint(self) -> None:
        self.buffer.mark_truncated()

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "rng": self.rng.bit_generator.state,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])


def normalized(b: TransitionBatch, norm: RunningNorm) -> TransitionBatch:
    """``b`` with observations passed through the agent's normaliser."""
    return replace(b, obs=norm(b.obs), next_obs=norm(b.next_obs)) if norm.enabled else b


class DatasetSource:
    """Offline: each round is one batch sampled uniformly from a fixed dataset; no environment is stepped."""

    online = False

    def __init__(self, algo: Algorithm, norm: RunningNorm, dataset: Dataset, seed: int) -> None:
        self.algo, self.norm = algo, norm
        self.batch_size: int = section(algo, "data", DataConfig, "a dataset").batch_size
        self.gamma = algo.cfg.gamma
        self.buffer = dataset.buffer(algo.spec, algo.device)
        self.generator = torch.Generator(device=algo.device)
        self.generator.manual_seed(seeding.stream(seed, "sampling"))

    def collect(self, obs: np.ndarray | None) -> tuple[int, np.ndarray | None]:
        return 0, obs

    def batches(self) -> Iterator[TransitionBatch]:
        yield normalized(self.buffer.sample(self.batch_size, self.generator, gamma=self.gamma), self.norm)

    def on_checkpoint(self) -> None:
        """Nothing to cut: no environment is running."""

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def make_source(algo: Algorithm, norm: RunningNorm, env: VecEnv | None, seed: int,
                dataset: Dataset | None = None) -> DataSource:
    """The data source for the algorithm's current regime (an offline algorithm's online phase included)."""
    regime = algo.online_regime if algo.online and algo.regime == "offline" else algo.regime
    from polyrl.train.model_source import ModelSource  # imports this module
    if regime in ("model_based", "offline") and isinstance(getattr(algo.cfg, "model", None), ModelRolloutConfig):  # MBPO, MOPO
        return ModelSource(algo, norm, env, seed, dataset)
    if regime == "offline":
        if dataset is None:
            raise ConfigError(f"{algo.name} learns from a dataset: pass dataset=PATH (CLI: --dataset PATH)")
        return DatasetSource(algo, norm, dataset, seed)
    assert env is not None
    if regime == "on_policy":
        return RolloutSource(algo, norm, env)
    if regime == "off_policy":
        return ReplaySource(algo, norm, env, seed, dataset)
    if regime == "world_model":  # Dreamer: windows of sequences from a replay buffer
        from polyrl.train.sequence_source import SequenceReplaySource  # imports this module

        return SequenceReplaySource(algo, norm, env, seed)
    raise ValueError(f"no data source for regime {regime!r}")
