"""The training loop of every regime: collect from a data source, update, log, evaluate, checkpoint.

Online, progress is counted in environment steps; offline (a dataset
source, no training environment) in gradient updates. Evaluation always runs
in a separate environment and never feeds the learner.

Checkpoints are episode boundaries: after writing one, the training envs
are reset with a seed derived from ``(seed, step)`` and the newest stored
transition is marked truncated (so it bootstraps, like a time limit). A run
resumed from that checkpoint therefore continues bit-identically on CPU for
any environment, without having to serialise simulator state.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from polyrl import seeding
from polyrl.algos.base import Algorithm, OfflineSelection, RoundHook, RunFileWriter
from polyrl.clock import Clock
from polyrl.data.scores import reference
from polyrl.envs import VecEnv
from polyrl.errors import DivergenceError
from polyrl.train.evaluate import EvalResult
from polyrl.train.logger import Logger, to_float
from polyrl.train.progress import TrainProgress
from polyrl.train.sources import DataSource


@dataclass(frozen=True)
class TrainSettings:
    """How a run is driven (not part of the algorithm's config)."""

    eval_every: int = 10_000
    """Steps (env steps online, gradient updates offline) between deterministic evaluations in a separate env (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    checkpoint_every: int = 0
    """Steps (env steps online, gradient updates offline) between checkpoints (0: only at the end)."""
    log_every: int = 2_000
    """Steps (env steps online, gradient updates offline) between training-metric rows."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (oldest removed first)."""
    progress: bool = True
    """Show a progress bar."""
    tensorboard: bool = True
    """Write TensorBoard event files."""

    SAFE_ON_RESUME: ClassVar[tuple[str, ...]] = ("log_every", "keep_checkpoints", "progress", "tensorboard")
    """Settings a resumed run may change without changing its result. The others do: checkpoints end the training
    episodes (``checkpoint_every``), and an evaluation of an algorithm that samples its evaluation actions draws from
    the training RNG stream (``eval_every``, ``eval_episodes``)."""

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainSettings:
        """The settings a run recorded (fields this release does not know are ignored; missing ones take defaults)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def changes_on_resume(self, new: TrainSettings) -> list[str]:
        """One warning line per setting ``new`` changes that makes a resumed run differ from the uninterrupted one."""
        return [f"resuming with {f.name}={getattr(new, f.name)!r} instead of the run's {getattr(self, f.name)!r}: the result "
                "will differ from the uninterrupted run's (checkpoints end episodes; sampled evaluations draw from the "
                "training RNG)" for f in dataclasses.fields(self)
                if f.name not in self.SAFE_ON_RESUME and getattr(new, f.name) != getattr(self, f.name)]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seeded_rng_state(seed: int) -> dict[str, Any]:
    """The RNG state ``torch.manual_seed(seed)`` would give, without touching the global state."""
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        return rng_state()


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero inside the block, restoring the previous mode after."""
    was_on = torch.tensor([1e-40], dtype=torch.float32).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


@contextmanager
def rng_scope(state: dict[str, Any]) -> Iterator[None]:
    """Run the block on the RNG stream ``state`` (updated in place), then restore the caller's stream.

    Each trainer owns its stream, so two agents trained in one process do not
    perturb each other and the user's global RNG is left as it was.
    """
    saved = rng_state()
    set_rng_state(state)
    try:
        yield
    finally:
        state.update(rng_state())
        set_rng_state(saved)


@dataclass(frozen=True)
class Evaluator:
    """How a run evaluates, always in a separate env that never feeds the learner."""

    report: Callable[[int], EvalResult]
    """``episodes -> EvalResult`` of the deployed policy: the evaluations logged as ``eval/...``."""
    for_algo: Callable[..., EvalResult]
    """``(policy, episodes, gamma=1.0) -> EvalResult`` on a seed of their own: evaluations an algorithm asks for while
    it learns (C-MORL's archive, Uni-O4's selection), apart from the reported ones."""
    env_id: str
    """The evaluation env (names the published reference returns of a normalised score)."""


@dataclass(frozen=True)
class Checkpointer:
    """Where a run's directory and checkpoints are."""

    run_dir: Callable[[], Path]
    """Creates the run directory (and its ``run.json``) on first use; returns it."""
    write: Callable[[int, int], Path]
    """``(step, keep) -> path``: write ``checkpoints/step_<step>`` atomically, point ``LATEST`` at it, keep ``keep``."""
    latest: Callable[[], Path | None]
    """The newest checkpoint, if any."""


@dataclass
class RunParts:
    """Everything a run is made of, composed in one visible place (:func:`polyrl.agent.build_run`)."""

    algo: Algorithm
    """The learner; its ``clock`` is the run's."""
    source: DataSource
    """Where its batches come from (the regime)."""
    env: VecEnv | None
    """The training envs (online), stepped by the source; ``None`` offline."""
    evaluator: Evaluator
    checkpointer: Checkpointer
    seed: int
    """The run seed (env resets after checkpoints, the trainer's RNG stream)."""
    title: str
    """What the progress display names the run."""


class Trainer:
    """Drives ``run.algo`` with batches from ``run.source``: one instance lives across ``learn`` calls.

    ``run`` holds the parts (:class:`RunParts`, from :func:`polyrl.agent.build_run`), or is anything that composes
    them (``run.run_parts()``: an :class:`~polyrl.agent.Agent`). The trainer owns the run's clock while it runs
    (``clock.budget``), its logger and its RNG stream.
    """

    def __init__(self, run: Any, settings: TrainSettings) -> None:
        parts: RunParts = run if isinstance(run, RunParts) else run.run_parts()
        self.parts = parts
        self.algo, self.source, self.env = parts.algo, parts.source, parts.env
        self.evaluator, self.checkpointer, self.settings = parts.evaluator, parts.checkpointer, settings
        self.clock: Clock = parts.algo.clock
        self.seed, self.title = parts.seed, parts.title
        self.online = self.algo.online
        # the opt-in hooks, detected once (a runtime Protocol check per env step would cost more than the call)
        self.round_hook: RoundHook | None = self.algo if isinstance(self.algo, RoundHook) else None
        self.phase = "online" if self.online else "offline"
        self.obs: np.ndarray | None = self.env.reset(seeding.stream(self.seed, "train_envs")) if self.env is not None else None
        self.rng = seeded_rng_state(seeding.stream(self.seed, "trainer"))
        self._running = False
        self.target = 0
        self.elapsed = 0.0  # wall-clock seconds spent in run(), across resumes
        self._t0 = time.perf_counter()
        self.recent: collections.deque[float] = collections.deque(maxlen=20)
        self.recent_length: collections.deque[int] = collections.deque(maxlen=20)
        self.logger: Logger | None = None
        self.last_metrics: dict[str, Any] = {}
        self.last_eval: float | None = None

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"source": self.source.state_dict(), "obs": self.obs, "target": self.target, "elapsed": self.elapsed + self._since(),
                "recent": list(self.recent), "recent_length": list(self.recent_length), "rng": rng_state() if self._running else dict(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state["source"])
        if self.env is not None:
            # The checkpoint reset the envs with this seed; doing the same puts them in the identical state.
            self.obs = self.env.reset(seeding.checkpoint_reset(self.seed, self.clock.env_steps))
        if self.env is not None and not np.array_equal(self.obs, np.asarray(state["obs"])):
            warnings.warn(f"{self.env.env_id} does not reproduce its checkpointed reset under the same seed; "
                          "the resumed run continues correctly but not bit-identically", stacklevel=2)
        self.target = int(state["target"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.recent.extend(state["recent"])
        self.recent_length.extend(state["recent_length"])
        self.rng = dict(state["rng"])

    # -- loop --------------------------------------------------------------------------------
    def run(self, target: int) -> None:
        """Train until :meth:`progress` (env steps online, gradient updates offline) reaches ``target``, on this trainer's own RNG stream.

        Denormal floats are flushed to zero (``torch.set_flush_denormal``) from
        here on: as gradients and Adam moments shrink they turn denormal, and
        on x86 CPUs every operation touching one is 10-50x slower (a DQN
        update measured 19 vs 880 per second). They carry no information at
        RL scales. The caller's setting is restored afterwards.
        """
        with flush_denormals(), rng_scope(self.rng):
            self._running = True
            try:
                self._run(target)
            except DivergenceError as e:
                raise DivergenceError(f"{e}; {self._last_good()}") from None
            finally:
                self.elapsed += self._since()
                self._running = False

    def _last_good(self) -> str:
        last = self.checkpointer.latest()
        return f"the last good checkpoint is {last}" if last else "no checkpoint was written"

    def progress(self) -> int:
        """Steps towards the target: env steps online, gradient updates offline."""
        return self.clock.progress(self.online)

    def _since(self) -> float:
        return time.perf_counter() - self._t0 if self._running else 0.0

    def _run(self, target: int) -> None:
        algo, s = self.algo, self.settings
        self._t0 = time.perf_counter()
        self.target = target
        self.clock.budget = target
        self.logger = self.logger or Logger(self.checkpointer.run_dir(), tensorboard=s.tensorboard)
        t0, step0 = time.perf_counter(), self.progress()
        unit = "steps" if self.online else "updates"
        with TrainProgress(self.title, target, step0, unit=unit, enabled=s.progress) as bar:
            while self.progress() < target:
                prev = self.progress()
                _, self.obs = self.source.collect(self.obs)
                for batch in self.source.batches():
                    self.last_metrics = algo.update(batch)
                if self.env is not None:
                    if self.round_hook is not None:
                        self.last_metrics.update(self.round_hook.end_round(self.evaluator.for_algo))
                    for ret, length in self.env.drain_episodes():
                        self.recent.append(float(np.mean(ret)))  # a vector return counts with equal weights
                        self.recent_length.append(length)
                step = self.progress()
                sps = (step - step0) / max(time.perf_counter() - t0, 1e-9)
                if _crossed(prev, step, s.log_every):
                    self._log_train(step, sps)
                if s.eval_every and _crossed(prev, step, s.eval_every) and step < target:
                    self._log_eval(step)
                if s.checkpoint_every and _crossed(prev, step, s.checkpoint_every) and step < target:
                    self.checkpoint()
                bar.update(step, sps, self.recent[-1] if self.recent else self.last_eval)
        if step0 < target:  # something was trained in this call
            end = self.progress()
            self._log_train(end, (end - step0) / max(time.perf_counter() - t0, 1e-9))
            if not self.online and isinstance(algo, OfflineSelection):  # e.g. Uni-O4 selects the member to deploy
                chosen = algo.end_offline(self.evaluator.for_algo)  # its own seed, apart from the reported evaluations
                if chosen:
                    self.logger.log(end, chosen, self.phase)
            self._log_eval(end)
            self.checkpoint()
        self.logger.flush()

    def _log_train(self, step: int, sps: float) -> None:
        assert self.logger is not None
        metrics = dict(self.last_metrics)
        bad = [k for k, v in metrics.items() if not math.isfinite(to_float(v))]
        if bad:
            raise DivergenceError(f"training diverged by step {step} ({', '.join(bad)} not finite; "
                                  "lower the learning rate or enable observation normalisation)")
        if self.recent:
            metrics["train/episode_return"] = float(np.mean(self.recent))
            metrics["train/episode_length"] = float(np.mean(self.recent_length))
        metrics["time/steps_per_s" if self.online else "time/updates_per_s"] = sps
        metrics["time/elapsed_s"] = self.elapsed + self._since()
        metrics["train/updates"] = self.clock.updates
        self.logger.log(step, metrics, self.phase)

    def _log_eval(self, step: int) -> None:
        assert self.logger is not None
        if not self.settings.eval_episodes:
            return
        res = self.evaluator.report(self.settings.eval_episodes)
        self.last_eval = res.mean_return
        row = {"time/elapsed_s": self.elapsed + self._since(), "eval/return": res.mean_return,
               "eval/return_std": res.std_return, "eval/length": float(np.mean(res.lengths))}
        if res.mean_vector is not None:  # per objective, for the policy served with equal weights
            row.update({f"eval/return_{j}": float(v) for j, v in enumerate(res.mean_vector)})
        ref = reference(self.evaluator.env_id)
        if ref is not None:  # D4RL-normalised score for the tasks that have published references
            row["eval/normalized_score"] = ref.score(res.mean_return)
        self.logger.log(step, row, self.phase)

    def checkpoint(self) -> None:
        """Write a checkpoint under ``run_dir/checkpoints``, then cut the episodes (see module docstring)."""
        for name, w in self.algo.weights().items():
            if w.is_floating_point() and not torch.isfinite(w).all():
                raise DivergenceError(f"{name} has non-finite weights at step {self.progress()}; not saving it")
        self.source.on_checkpoint()
        step = self.progress()
        if self.env is not None:
            self.obs = self.env.reset(seeding.checkpoint_reset(self.seed, step))
            self.env.drain_episodes()
        self.checkpointer.write(step, self.settings.keep_checkpoints)
        if isinstance(self.algo, RunFileWriter):
            self.algo.write_run_files(self.checkpointer.run_dir())

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
        if self.logger is not None:
            self.logger.close()


def _crossed(prev: int, now: int, every: int) -> bool:
    return every > 0 and now // every > prev // every
