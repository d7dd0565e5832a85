"""``polyrl sweep``: seeds x a hyperparameter grid (or an Optuna search), every trial an ordinary polyrl run.

>>> run_sweep("ppo", env="CartPole-v1", seeds=range(5), grid={"learning_rate": [3e-4, 1e-3]},
...           steps=50_000, run_dir="runs/sweep-ppo")                       # doctest: +SKIP

A sweep directory holds:

* ``sweep.json``: what the sweep trains (algorithm, env, dataset, steps, fixed
  config, grid, seeds); rerunning with different training options in the
  same directory is refused, extending the grid or the seeds is not;
* ``trials/<label>,seed=<s>/``: one run directory per trial (``polyrl eval``
  and ``polyrl report`` work on it) with ``trial.json`` (the trial's spec),
  ``trial.log`` (its output) and, once it ends, ``result.json`` (written last
  and atomically: ``status`` ``"finished"`` or ``"failed"``, the error and
  traceback of a failed one). A trial with a finished ``result.json`` is
  skipped when the sweep is run again; any other trial runs again, from its
  run directory's latest checkpoint when it has one;
* ``summary.csv``, ``summary.json`` and ``summary.png``: per configuration the
  mean, standard deviation, interquartile mean and a bootstrap confidence
  interval of the final metric across seeds (:func:`summarize`);
* ``.ray/``: Ray Tune's own experiment state (Ray backend only).

Trials run on Ray Tune (the ``ray`` extra: a local Ray instance sized to the
machine, or an existing cluster given by ``address``), one CPU and one torch
thread each, or, without Ray, one after another in local subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np

from polyrl import algos
from polyrl.errors import ConfigError, PolyrlError
from polyrl.io import write_json_atomic, write_text_atomic

TRIALS = "trials"
RESULT = "result.json"
SPEC = "trial.json"
LOG = "trial.log"
# What a sweep trains: rerunning a sweep directory with other values would mix incomparable trials.
IDENTITY = ("algo", "env", "dataset", "steps", "config")


# -- parsing and expansion --------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-9"`` (inclusive range), ``"0,3,5"`` or a mix (``"0-2,7"``), in order, without repeats."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise ConfigError(f"bad seed list {text!r}; write a range 0-9, a list 0,3,5 or both (0-2,7)")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise ConfigError(f"bad seed range {part!r} in {text!r}; write the smaller seed first (e.g. {hi}-{lo})")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def parse_assignment(item: str, option: str) -> tuple[str, str]:
    """Split ``"field=value"`` (a ``-`` in the field name reads as ``_``)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"{option} expects FIELD=VALUE, got {item!r}")
    return key.strip().replace("-", "_"), value.strip()


def parse_grid(items: Iterable[str], algo: str) -> dict[str, list[Any]]:
    """Grid options ``"field=v1,v2"`` as typed value lists, checked against the algorithm's ``Config``.

    Values are separated by commas; for a tuple-valued field (e.g. ``hidden``)
    by semicolons, since each value is itself a comma list: ``hidden=64,64;256,256``.
    """
    config_cls = algos.get(algo).Config
    hints = get_type_hints(config_cls)
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, raw = parse_assignment(item, "--grid")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one option ({key}=v1,v2)")
        sep = ";" if getattr(hints.get(key), "__origin__", None) is tuple else ","
        grid[key] = [v.strip() for v in raw.split(sep) if v.strip()]
    return typed_grid(algo, grid)


def typed_grid(algo: str, grid: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Each grid field's values converted to the ``Config`` field's type (JSON form), without repeats."""
    config_cls = algos.get(algo).Config
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(f"grid field {key!r} needs a list of values, got {values!r}")
        typed: list[Any] = []
        for v in values:
            try:
                value = config_cls.from_dict({key: v}).to_dict()[key]
            except ConfigError as e:
                raise ConfigError(f"--grid {key}: {e}") from None
            if value not in typed:
                typed.append(value)
        if not typed:
            raise ConfigError(f"--grid {key} has no values; give one or more ({key}=v1,v2)")
        out[key] = typed
    return out


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid, first field varying slowest (one empty configuration for no grid)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_fmt(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def config_label(values: dict[str, Any]) -> str:
    """A configuration's name: ``"field=value,field=value"`` over its grid fields (``"default"`` for none)."""
    return ",".join(f"{k}={_fmt(v)}" for k, v in values.items()) or "default"


def trial_name(values: dict[str, Any], seed: int) -> str:
    """A trial's directory name: its label and seed, safe for file systems (long ones shortened with a hash)."""
    name = re.sub(r"[^A-Za-z0-9._=,+x-]", "_", f"{config_label(values)},seed={seed}")
    if len(name) > 120:
        name = f"{name[:100]}~{hashlib.sha1(name.encode()).hexdigest()[:10]},seed={seed}"
    return name


# -- one trial --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs; written to ``trial.json`` and read back by the process that runs it."""

    dir: str
    """Absolute path of the trial's run directory."""
    algo: str
    env: str | None
    dataset: str | None
    """Absolute path of an offline algorithm's dataset."""
    seed: int
    steps: int
    """Env steps to train (gradient updates offline)."""
    config: dict[str, Any]
    """Config fields: the sweep's fixed ones and this trial's grid values."""
    grid_values: dict[str, Any]
    """This trial's grid values (its configuration's label)."""
    metric: str = "eval/return"
    eval_every: int = 10_000
    eval_episodes: int = 10
    checkpoint_every: int = 10_000
    device: str = "cpu"
    threads: int = 1
    """torch threads inside the trial."""
    tensorboard: bool = True

    @property
    def name(self) -> str:
        return Path(self.dir).name

    @property
    def label(self) -> str:
        return config_label(self.grid_values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrialSpec:
        return cls(**{f.name: obj[f.name] for f in dataclasses.fields(cls) if f.name in obj})


def read_result(trial_dir: str | Path) -> dict[str, Any] | None:
    """A trial's ``result.json`` (``None`` while it has not ended)."""
    path = Path(trial_dir) / RESULT
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_metric(run_dir: str | Path, key: str) -> tuple[float, int] | None:
    """The last logged value of ``key`` in a run's ``metrics.jsonl`` and its step (``None`` if never logged)."""
    path = Path(run_dir) / "metrics.jsonl"
    last = None
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a killed run can leave a truncated last line
            if isinstance(row, dict) and isinstance(row.get(key), (int, float)):
                last = (float(row[key]), int(row.get("step", 0)))
    return last


def _fresh_start(trial_dir: Path) -> None:
    """Remove what an earlier attempt without a checkpoint left (its metrics would be appended to)."""
    for entry in trial_dir.iterdir():
        if entry.name in (SPEC, LOG):
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Train one trial to ``spec.steps`` in its run directory and write its ``result.json``; returns that record.

    Resumes from the run directory's latest checkpoint when there is one. An
    exception becomes a ``"failed"`` record carrying the error; an interrupt
    (``KeyboardInterrupt``) leaves the trial unfinished, to resume next time.
    """
    import torch

    from polyrl.agent import Agent
    from polyrl.envs import check_env_id
    from polyrl.train import TrainSettings

    torch.set_num_threads(spec.threads)
    trial_dir = Path(spec.dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    t0, resumed_from, agent = time.time(), None, None
    record: dict[str, Any] = {"trial": spec.name, "config": spec.grid_values, "label": spec.label, "seed": spec.seed,
                              "metric": spec.metric}
    settings = TrainSettings(eval_every=spec.eval_every, eval_episodes=spec.eval_episodes,
                             checkpoint_every=spec.checkpoint_every, progress=False, tensorboard=spec.tensorboard)
    try:
        latest = trial_dir / "checkpoints" / "LATEST"
        if latest.is_file():
            if spec.env is not None:
                # a checkpoint names the env without its "module:" prefix; importing the module registers the id
                check_env_id(spec.env)
            agent = Agent.load(trial_dir, device=spec.device)
            resumed_from = latest.read_text().strip()
            agent.settings = settings
        else:
            _fresh_start(trial_dir)
            agent = Agent(spec.algo, spec.env, dataset=spec.dataset, seed=spec.seed, device=spec.device,
                          run_dir=trial_dir, settings=settings, **spec.config)
        done = agent.algo.env_steps if agent.algo.online else agent.algo.n_updates
        if done < spec.steps:
            agent.learn(spec.steps - done)
        final = read_metric(trial_dir, spec.metric)
        record |= {"status": "finished", "value": final[0] if final else None, "step": final[1] if final else None,
                   "error": None}
    except Exception as e:  # a crashing trial is recorded, and the sweep goes on
        record |= {"status": "failed", "value": None, "step": None, "error": f"{type(e).__name__}: {e}".strip(),
                   "traceback": traceback.format_exc()}
    finally:
        if agent is not None:
            agent.close()
    record |= {"resumed_from": resumed_from, "elapsed_s": round(time.time() - t0, 3)}
    write_json_atomic(trial_dir / RESULT, record)
    return record


def record_failure(spec: TrialSpec, error: str) -> dict[str, Any]:
    """Write a ``"failed"`` record for a trial whose process died without writing one."""
    record = {"trial": spec.name, "config": spec.grid_values, "label": spec.label, "seed": spec.seed, "metric": spec.metric,
              "status": "failed", "value": None, "step": None, "error": error}
    write_json_atomic(Path(spec.dir) / RESULT, record)
    return record


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("; last output: " + " | ".join(tail)) if tail else ""


def _trial_main(argv: Sequence[str]) -> int:
    """``python -m polyrl.sweep TRIAL_DIR``: run the trial whose ``trial.json`` is in ``TRIAL_DIR``."""
    spec = TrialSpec.from_json(json.loads((Path(argv[0]) / SPEC).read_text()))
    return 0 if run_trial(spec)["status"] == "finished" else 1


# -- statistics -------------------------------------------------------------------------------------
def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of the sorted values, with fractional weights at the edges.

    The lowest and highest ``n/4`` observations are cut; when ``n/4`` is not
    whole, the observation straddling each cut counts with the fraction of it
    that lies inside. For ``n = 4k`` this is the mean of the middle ``2k``
    values (``scipy.stats.trim_mean(x, 0.25)``, rliable's IQM); otherwise it
    is the exact mean of the middle half of the empirical distribution, e.g.
    ``n = 2``: the mean, ``n = 3``: ``(x1/4 + x2 + x3/4) / 1.5``, ``n = 1``:
    the value.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("iqm of no values")
    lo, hi = n / 4, 3 * n / 4
    # observation i covers [i, i+1) of [0, n); its weight is the part of that interval inside [lo, hi]
    i = np.arange(n)
    weights = np.clip(np.minimum(i + 1, hi) - np.maximum(i, lo), 0.0, None)
    return float(np.dot(weights, x) / weights.sum())


def seed_stats(values: Sequence[float], *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Across-seed statistics of one configuration's final metric.

    ``std`` is the sample standard deviation (``ddof=1``; ``None`` for one
    value); ``ci_low``/``ci_high`` is the percentile bootstrap interval of the
    mean (:func:`polyrl.ope.bootstrap_ci`, ``n_boot`` resamples of the seeds);
    with fewer than 4 seeds it is ``[min, max]`` at 95%, so read it as a rough guide.
    """
    from polyrl.ope import bootstrap_ci

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return {"n": 0, "mean": None, "std": None, "iqm": None, "ci_low": None, "ci_high": None, "min": None, "max": None}
    low, high = bootstrap_ci(x, confidence=confidence, n_boot=n_boot, seed=seed)
    return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else None, "iqm": iqm(x),
            "ci_low": low, "ci_high": high, "min": float(x.min()), "max": float(x.max())}


# -- the sweep --------------------------------------------------------------------------------------
@dataclass
class Sweep:
    """A sweep's definition (``sweep.json``) and its trials."""

    dir: Path
    algo: str
    env: str | None
    dataset: str | None
    steps: int
    config: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    metric: str = "eval/return"
    mode: str = "max"
    search: str | None = None
    trials: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """Trial options: eval_every, eval_episodes, checkpoint_every, device, threads."""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "dir"}

    def spec(self, values: dict[str, Any], seed: int) -> TrialSpec:
        return TrialSpec(dir=str(self.dir / TRIALS / trial_name(values, seed)), algo=self.algo, env=self.env,
                         dataset=self.dataset, seed=seed, steps=self.steps, config=self.config | values,
                         grid_values=values, metric=self.metric, **self.settings)

    def grid_specs(self) -> list[TrialSpec]:
        """Every (configuration, seed) trial of a grid sweep, configurations in grid order."""
        return [self.spec(values, seed) for values in expand(self.grid) for seed in self.seeds]

    def existing_specs(self) -> list[TrialSpec]:
        """The trials present in the directory (a search's trials, in the order they were created)."""
        found = []
        for path in (self.dir / TRIALS).glob(f"*/{SPEC}"):
            try:
                found.append((path.stat().st_mtime, TrialSpec.from_json(json.loads(path.read_text()))))
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return [s for _, s in sorted(found, key=lambda p: p[0]) if s.seed in self.seeds]

    def specs(self) -> list[TrialSpec]:
        return self.existing_specs() if self.search else self.grid_specs()


def _prepare_trial(spec: TrialSpec) -> None:
    Path(spec.dir).mkdir(parents=True, exist_ok=True)
    if not (Path(spec.dir) / SPEC).is_file():
        write_json_atomic(Path(spec.dir) / SPEC, spec.to_json())


@contextlib.contextmanager
def _lock(sweep_dir: Path) -> Iterator[None]:
    """Refuse a second ``polyrl sweep`` in the same directory while one runs."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        yield
        return
    with open(sweep_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another polyrl sweep is running in {sweep_dir}; wait for it or use another --run-dir") from None
        yield


class _Printer:
    """One line per ended trial."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, 0, quiet

    def __call__(self, record: dict[str, Any]) -> None:
        self.done += 1
        if self.quiet:
            return
        if record["status"] == "finished":
            value = "n/a" if record.get("value") is None else f"{record['value']:.2f}"
            what = f"{record['metric']} {value}"
        else:
            what = f"FAILED: {record.get('error')}"
        print(f"[{self.done}/{self.total}] {record['label']} seed {record['seed']}: {what}", flush=True)


def _run_local(specs: list[TrialSpec], printer: _Printer) -> None:
    """Each trial in its own Python process, one after another; a dying process is recorded as a failed trial."""
    for spec in specs:
        _prepare_trial(spec)
        env = os.environ | {"OMP_NUM_THREADS": str(spec.threads), "MKL_NUM_THREADS": str(spec.threads)}
        log_path = Path(spec.dir) / LOG
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "polyrl.sweep", spec.dir], stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                code = proc.wait()
            except BaseException:  # Ctrl-C reaches the child too (same process group); give it time to stop cleanly
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
        record = read_result(spec.dir)
        if record is None or (code != 0 and record.get("status") == "finished"):
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            record = record_failure(spec, f"trial process {how}{_log_tail(log_path)}")
        printer(record)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors 1 and 2) to ``path`` inside the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


class TrialFailed(PolyrlError):
    """Raised inside a Ray trial whose training failed, so Ray Tune (and its searcher) sees a failed trial."""


def _ray_trial(config: dict[str, Any]) -> None:
    """Ray Tune trainable of a grid sweep: one (configuration, seed) trial."""
    from ray import tune

    spec = TrialSpec.from_json(config["trial"])
    _prepare_trial(spec)
    with _output_to(Path(spec.dir) / LOG):
        record = run_trial(spec)
    if record["status"] != "finished":
        raise TrialFailed(record["error"])
    tune.report({"objective": record["value"] if record["value"] is not None else float("nan")})


def _ray_search_trial(config: dict[str, Any]) -> None:
    """Ray Tune trainable of a search: one configuration on every seed of the sweep, one after another.

    The objective reported to the searcher is the mean final metric over the seeds.
    """
    from ray import tune

    sweep = _sweep_from_json(Path(config["sweep_dir"]), config["sweep"])
    values = {k: _decode(sweep, k, config[k]) for k in sweep.grid}
    results = []
    for seed in sweep.seeds:
        spec = sweep.spec(values, seed)
        _prepare_trial(spec)
        record = read_result(spec.dir)
        if record is None or record.get("status") != "finished":
            with _output_to(Path(spec.dir) / LOG):
                record = run_trial(spec)
        if record["status"] != "finished":
            raise TrialFailed(f"seed {seed}: {record['error']}")
        results.append(record["value"])
    tune.report({"objective": float(np.mean(results)) if None not in results else float("nan")})


def _decode(sweep: Sweep, key: str, choice: str) -> Any:
    return next(v for v in sweep.grid[key] if _fmt(v) == choice)


def _sweep_from_json(sweep_dir: Path, obj: dict[str, Any]) -> Sweep:
    names = {f.name for f in dataclasses.fields(Sweep)} - {"dir"}
    return Sweep(dir=sweep_dir, **{k: v for k, v in obj.items() if k in names})


def _ray_init(address: str | None) -> bool:
    """Connect to ``address`` or start a local Ray instance sized to the machine; True if this call started it."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return True


def _run_ray(sweep: Sweep, specs: list[TrialSpec], printer: _Printer, address: str | None, cpus_per_trial: float,
             max_failures: int) -> None:
    """The trials on Ray Tune, ``cpus_per_trial`` CPUs each; Tune's own state goes to ``sweep_dir/.ray``."""
    import ray
    from ray import tune

    class Report(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._print(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._print(trial)

        def _print(self, trial: Any) -> None:
            if sweep.search:
                values = {k: _decode(sweep, k, trial.config[k]) for k in sweep.grid}
                for seed in sweep.seeds:
                    printer(read_result(sweep.spec(values, seed).dir) or _missing(sweep.spec(values, seed)))
            else:
                spec = TrialSpec.from_json(trial.config["trial"])
                printer(read_result(spec.dir) or _missing(spec))

    started = _ray_init(address)
    try:
        # reuse_actors: a Ray worker runs trial after trial, so torch is imported once per worker, not once per trial
        trainable = tune.with_resources(_ray_search_trial if sweep.search else _ray_trial, {"cpu": cpus_per_trial})
        if sweep.search:
            from ray.tune.search.optuna import OptunaSearch

            done = _finished_configs(sweep)
            space = {k: tune.choice([_fmt(v) for v in values]) for k, values in sweep.grid.items()}
            searcher = OptunaSearch(metric="objective", mode=sweep.mode, seed=0,
                                    points_to_evaluate=[{k: _fmt(v) for k, v in values.items()} for values, _ in done] or None,
                                    evaluated_rewards=[reward for _, reward in done] or None)
            tune_config = tune.TuneConfig(search_alg=searcher, num_samples=max((sweep.trials or 1) - len(done), 0),
                                          reuse_actors=True)
            param_space = space | {"sweep": sweep.to_json(), "sweep_dir": str(sweep.dir)}
        else:
            tune_config = tune.TuneConfig(reuse_actors=True)
            param_space = {"trial": tune.grid_search([s.to_json() for s in specs])}
        if tune_config.num_samples == 0:
            return
        run_config = tune.RunConfig(name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(sweep.dir / ".ray"),
                                    failure_config=tune.FailureConfig(max_failures=max_failures), verbose=0, callbacks=[Report()])
        with _env_var("RAY_AIR_NEW_OUTPUT", "0"):  # Tune's newer console output prints tables even at verbose=0
            results = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config).fit()
        if not sweep.search:  # a worker that died (out of memory, a lost node) wrote no record: write it from Ray's error
            for result in results:
                spec = TrialSpec.from_json(result.config["trial"])
                if result.error is not None and read_result(spec.dir) is None:
                    record_failure(spec, f"{type(result.error).__name__}: {str(result.error).strip().splitlines()[-1]}")
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _env_var(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _missing(spec: TrialSpec) -> dict[str, Any]:
    return {"trial": spec.name, "label": spec.label, "seed": spec.seed, "metric": spec.metric, "status": "failed",
            "value": None, "error": "the trial ended without a result"}


def _finished_configs(sweep: Sweep) -> list[tuple[dict[str, Any], float]]:
    """A search's configurations already finished on every seed, with their objective (the mean over seeds)."""
    out: dict[str, tuple[dict[str, Any], list[float]]] = {}
    for spec in sweep.existing_specs():
        if set(spec.grid_values) == set(sweep.grid) and all(v in sweep.grid[k] for k, v in spec.grid_values.items()):
            record = read_result(spec.dir)
            ok = record is not None and record.get("status") == "finished" and record.get("value") is not None
            values, rewards = out.setdefault(spec.label, (spec.grid_values, []))
            rewards.append(record["value"] if ok else math.nan)  # type: ignore[index]
    return [(values, float(np.mean(r))) for values, r in out.values()
            if len(r) == len(sweep.seeds) and all(math.isfinite(x) for x in r)]


def ray_available() -> bool:
    """Whether Ray Tune can be imported (the ``ray`` extra)."""
    try:
        return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.tune") is not None
    except (ImportError, ValueError):  # a broken or stubbed-out install
        return False


def run_sweep(
    algo: str,
    env: str | None = None,
    *,
    seeds: Iterable[int] | str = (0,),
    grid: dict[str, Sequence[Any]] | None = None,
    config: dict[str, Any] | None = None,
    dataset: str | Path | None = None,
    steps: int = 100_000,
    run_dir: str | Path | None = None,
    metric: str = "eval/return",
    mode: str = "max",
    search: str | None = None,
    trials: int | None = None,
    backend: str = "auto",
    address: str | None = None,
    eval_every: int = 10_000,
    eval_episodes: int = 10,
    checkpoint_every: int = 10_000,
    device: str = "cpu",
    tensorboard: bool = True,
    cpus_per_trial: float = 1,
    max_failures: int = 0,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train every (configuration, seed) trial not finished yet, then write and return the summary.

    Args:
        algo: registered algorithm name.
        env: Gymnasium id (offline: default the dataset's).
        seeds: seeds of every configuration (an iterable or ``"0-9"`` / ``"0,3,5"``).
        grid: config field -> values; the configurations are their Cartesian product.
        config: config fields fixed across the sweep.
        dataset: an offline algorithm's training data.
        steps: env steps per trial (gradient updates offline).
        run_dir: the sweep directory (default ``runs/sweep-<algo>-<env>``); rerun to resume.
        metric: the metrics key summarised (its last logged value in each trial).
        mode: ``"max"`` or ``"min"``: which way is better (the search's direction).
        search: ``None`` (the whole grid) or ``"optuna"``: Ray Tune's Optuna searcher picks ``trials``
            configurations, each grid field a categorical choice, each configuration run on every seed.
        trials: configurations a search tries.
        backend: ``"ray"``, ``"local"`` (one subprocess after another) or ``"auto"`` (Ray when installed).
        address: an existing Ray cluster (``ray://host:10001``, ``auto``); default: a local Ray instance.
        eval_every, eval_episodes, checkpoint_every: the trials' :class:`~polyrl.train.TrainSettings`.
        device: torch device of the trials.
        tensorboard: write TensorBoard event files in the trials.
        cpus_per_trial: CPUs Ray reserves per trial (torch uses as many threads, at least one).
        max_failures: Ray retries of a failed trial (each retry resumes from the trial's checkpoint).
        quiet: print nothing.

    Returns:
        The summary (also written to ``summary.json``, ``summary.csv`` and ``summary.png``).
    """
    sweep = _checked_sweep(algo, env, seeds, grid, config, dataset, steps, run_dir, metric, mode, search, trials)
    if backend not in ("auto", "local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; use auto, local or ray")
    use_ray = backend == "ray" or (backend == "auto" and ray_available())
    if use_ray and not ray_available():
        raise ConfigError("the ray backend needs Ray Tune: pip install 'polyrl[ray]' (or use --backend local)")
    if search and not use_ray:
        raise ConfigError("--search optuna runs on Ray Tune: pip install 'polyrl[ray]' (or drop --search to run the grid)")
    if address and not use_ray:
        raise ConfigError("--address is a Ray cluster, and Ray is not used; pip install 'polyrl[ray]' or drop --address")
    sweep.settings = {"eval_every": eval_every, "eval_episodes": eval_episodes, "checkpoint_every": checkpoint_every,
                      "device": str(device), "threads": max(1, int(cpus_per_trial)), "tensorboard": tensorboard}
    sweep_dir, typed, seed_list = sweep.dir, sweep.grid, sweep.seeds
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with _lock(sweep_dir):
        _check_same_sweep(sweep)
        write_json_atomic(sweep_dir / "sweep.json", sweep.to_json())
        specs = [] if search else sweep.grid_specs()
        pending = [s for s in specs if (read_result(s.dir) or {}).get("status") != "finished"]
        say = (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))
        if search:
            say(f"sweep {sweep_dir}: Optuna picks {trials} of {len(expand(typed))} configurations, each on {len(seed_list)} seeds")
        else:
            say(f"sweep {sweep_dir}: {len(specs)} trials ({len(expand(typed))} configurations x {len(seed_list)} seeds), "
                f"{len(specs) - len(pending)} already finished")
        if use_ray:
            say(f"running on Ray Tune ({'cluster ' + address if address else 'a local Ray instance'}), "
                f"{cpus_per_trial:g} CPU per trial")
            if pending or search:
                total = (trials or 0) * len(seed_list) if search else len(pending)
                _run_ray(sweep, pending, _Printer(total, quiet), address, cpus_per_trial, max_failures)
        else:
            why = "--backend local" if backend == "local" else "Ray is not installed (pip install 'polyrl[ray]')"
            say(f"{why}: running the trials one after another in local processes")
            _run_local(pending, _Printer(len(pending), quiet))
        return summarize(sweep_dir)


def _checked_sweep(algo: str, env: str | None, seeds: Iterable[int] | str, grid: dict[str, Sequence[Any]] | None,
                   config: dict[str, Any] | None, dataset: str | Path | None, steps: int, run_dir: str | Path | None,
                   metric: str, mode: str, search: str | None, trials: int | None) -> Sweep:
    """The sweep :func:`run_sweep` describes, every value checked (each grid combination against the Config)."""
    cls = algos.get(algo)
    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(dict.fromkeys(int(s) for s in seeds))
    if not seed_list:
        raise ConfigError("no seeds given; e.g. --seeds 0-4")
    fixed = cls.Config.from_dict(dict(config or {})).to_dict()
    fixed = {k: fixed[k] for k in (config or {})}
    typed = typed_grid(algo, dict(grid or {}))
    both = sorted(set(typed) & set(fixed))
    if both:
        raise ConfigError(f"{', '.join(both)} is both fixed (--set) and swept (--grid); give it once")
    for values in expand(typed):  # every combination must make a valid Config before any trial starts
        cls.Config.from_dict(fixed | values)
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    if search not in (None, "optuna"):
        raise ConfigError(f"unknown search {search!r}; use --search optuna (or none for the whole grid)")
    if search and not typed:
        raise ConfigError("--search optuna needs --grid fields to choose from")
    if search and (trials is None or trials < 1):
        raise ConfigError("--search optuna needs --trials N (configurations to try), N >= 1")
    if dataset is not None:
        if not Path(dataset).exists():
            raise ConfigError(f"dataset {dataset} does not exist")
        if cls.regime != "offline":
            raise ConfigError(f"{cls.name} learns online and takes no dataset; drop --dataset")
        dataset = str(Path(dataset).resolve())
    elif cls.regime == "offline":
        raise ConfigError(f"{cls.name} learns from a dataset: pass --dataset PATH")
    if env is None and dataset is None:
        raise ConfigError("no environment given; pass --env ID")
    if env is not None:
        from polyrl.envs import check_env_id

        check_env_id(env)
    where = (env or Path(dataset or "data").name).replace("/", "_").replace(":", "_")
    return Sweep(dir=Path(run_dir or f"runs/sweep-{cls.name}-{where}").resolve(), algo=cls.name, env=env, dataset=dataset,
                 steps=int(steps), config=fixed, grid=typed, seeds=seed_list, metric=metric, mode=mode, search=search,
                 trials=trials)


def _check_same_sweep(sweep: Sweep) -> None:
    path = sweep.dir / "sweep.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    new = sweep.to_json()
    changed = [k for k in IDENTITY if old.get(k) != new[k]]
    if changed:
        raise ConfigError(f"{sweep.dir} holds a sweep with other {', '.join(changed)} ({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); "
                          "use another --run-dir, or the same options to resume it")


# -- summary ----------------------------------------------------------------------------------------
def summarize(sweep_dir: str | Path, *, confidence: float = 0.95, n_boot: int = 2000) -> dict[str, Any]:
    """Read the trials' results and write ``summary.json``, ``summary.csv`` and ``summary.png``; returns the summary.

    Per configuration, over the seeds whose trial finished: the final value of
    the sweep's metric (its last logged value) and :func:`seed_stats` of them.
    Failed trials are listed with their errors; unfinished ones are counted.
    """
    sweep_dir = Path(sweep_dir).resolve()
    try:
        sweep = _sweep_from_json(sweep_dir, json.loads((sweep_dir / "sweep.json").read_text()))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{sweep_dir} is not a sweep directory ({e}); give the --run-dir of a polyrl sweep") from None
    configs: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    for spec in sweep.specs():
        row = configs.setdefault(spec.label, {"label": spec.label, "config": spec.grid_values, "seeds": {},
                                              "failed": 0, "unfinished": 0, "trials": []})
        row["trials"].append(spec.name)
        record = read_result(spec.dir)
        if record is None:
            row["unfinished"] += 1
        elif record.get("status") != "finished":
            row["failed"] += 1
            failed.append({"trial": spec.name, "label": spec.label, "seed": spec.seed, "error": record.get("error"),
                           "dir": spec.dir})
        else:
            final = read_metric(spec.dir, sweep.metric)
            if final is not None:
                row["seeds"][str(spec.seed)] = final[0]
    for i, row in enumerate(configs.values()):
        row |= seed_stats(list(row["seeds"].values()), confidence=confidence, n_boot=n_boot, seed=i)
    summary = {"dir": str(sweep_dir), "algo": sweep.algo, "env": sweep.env, "dataset": sweep.dataset, "steps": sweep.steps, "metric": sweep.metric,
               "mode": sweep.mode, "seeds": sweep.seeds, "grid": sweep.grid, "config": sweep.config, "search": sweep.search,
               "confidence": confidence, "configs": list(configs.values()), "failed": failed,
               "n_trials": sum(len(r["trials"]) for r in configs.values()),
               "n_finished": sum(r["n"] for r in configs.values()), "n_failed": len(failed)}
    write_json_atomic(sweep_dir / "summary.json", _json_safe(summary))
    write_text_atomic(sweep_dir / "summary.csv", summary_csv(summary))
    write_text_atomic(sweep_dir / "summary.png", summary_plot(summary))
    return summary


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    return obj


CSV_COLUMNS = ("n", "failed", "unfinished", "mean", "std", "iqm", "ci_low", "ci_high", "min", "max")


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per configuration: its label, grid values and statistics (empty where undefined)."""
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = list(summary["grid"])
    writer.writerow(["config", *fields, *CSV_COLUMNS])
    for row in summary["configs"]:
        cells = ["" if row[c] is None else row[c] for c in CSV_COLUMNS]
        writer.writerow([row["label"], *(_fmt(row["config"].get(f, "")) for f in fields), *cells])
    return out.getvalue()


def summary_plot(summary: dict[str, Any]) -> bytes:
    """A PNG: each configuration's per-seed values (dots), mean with its bootstrap CI (bar) and IQM (diamond)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = summary["configs"]
    fig = Figure(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6), dpi=100)
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        values = list(row["seeds"].values())
        ax.scatter([i] * len(values), values, s=14, color="0.55", zorder=2, label="seeds" if i == 0 else None)
        if row["mean"] is not None:
            err = [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
            ax.errorbar([i], [row["mean"]], yerr=err, fmt="o", color="C0", capsize=4, zorder=3,
                        label=f"mean, {summary['confidence']:.0%} CI" if i == 0 else None)
            ax.scatter([i], [row["iqm"]], marker="D", s=22, color="C1", zorder=4, label="IQM" if i == 0 else None)
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center", fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel(summary["metric"])
    data = Path(summary["dataset"]).name if summary["dataset"] else None
    where = f"{summary['env']} ({data})" if summary["env"] and data else summary["env"] or data
    unit = "updates" if data else "steps"
    ax.set_title(f"{summary['algo']} on {where}: {summary['steps']} {unit}, {len(summary['seeds'])} seeds", fontsize=10)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a text table, failed trials after it."""
    lines = [f"{'configuration':<40} {'seeds':>5} {'mean':>10} {'std':>9} {'IQM':>10}  {summary['confidence']:.0%} CI"]
    for r in summary["configs"]:
        def num(x: Any) -> str:
            return "-" if x is None else f"{x:.2f}"
        extra = "".join(f", {r[k]} {k}" for k in ("failed", "unfinished") if r[k])
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        lines.append(f"{r['label']:<40} {r['n']:>5} {num(r['mean']):>10} {num(r['std']):>9} {num(r['iqm']):>10}  {ci}{extra}")
    for f in summary["failed"]:
        lines.append(f"failed: {f['trial']}: {f['error']}")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------------
USAGE = ("polyrl sweep ALGO --env ID --seeds 0-9 [--grid FIELD=V1,V2 ...] [--set FIELD=V ...] [--steps N] "
         "[--search optuna --trials N] [--metric eval/return] [--address ray://HOST:PORT] [--run-dir DIR]")


def cli_main(argv: Sequence[str]) -> int:
    """``polyrl sweep``: parse the options, run :func:`run_sweep` and print the summary table."""
    p = argparse.ArgumentParser(prog="polyrl sweep", usage=USAGE, description=(
        "Train every configuration of a grid (or an Optuna search over it) on several seeds, each trial an ordinary run "
        "directory, on Ray Tune or in local processes; writes summary.csv, summary.json and summary.png. "
        "Rerun the same command to resume: finished trials are skipped, the others resume from their last checkpoint."))
    p.add_argument("algo", metavar="ALGO")
    p.add_argument("--env", default=None, help="Gymnasium environment id (offline: default the dataset's)")
    p.add_argument("--dataset", default=None, help="training data of an offline algorithm")
    p.add_argument("--seeds", default="0", help="seeds of every configuration: 0-9, 0,3,5 or 0-2,7 (default 0)")
    p.add_argument("--grid", action="extend", nargs="+", default=[], metavar="FIELD=V1,V2",
                   help="a config field and its values (repeatable); tuple fields separate values with ';' (quoted: \"hidden=64,64;256,256\")")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V", help="a config field fixed across the sweep (repeatable)")
    p.add_argument("--steps", type=int, default=100_000, help="env steps per trial, gradient updates offline (default 100000)")
    p.add_argument("--metric", default="eval/return", help="metrics key summarised, its last value per trial (default eval/return)")
    p.add_argument("--mode", choices=["max", "min"], default="max", help="which way the metric is better (default max)")
    p.add_argument("--search", choices=["optuna"], default=None, help="let Optuna (on Ray Tune) choose --trials configurations from the grid")
    p.add_argument("--trials", type=int, default=None, help="configurations the search tries")
    p.add_argument("--backend", choices=["auto", "ray", "local"], default="auto",
                   help="ray: Ray Tune; local: one process after another; auto: Ray when installed (default)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (ray://HOST:10001, or auto); default: start a local one")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs (and torch threads) per trial on Ray (default 1)")
    p.add_argument("--max-failures", type=int, default=0, help="Ray retries of a failed trial, each from its checkpoint (default 0)")
    p.add_argument("--run-dir", default=None, help="sweep directory (default runs/sweep-<algo>-<env>)")
    p.add_argument("--eval-every", type=int, default=10_000, help="steps between evaluations; 0: at the end only (default 10000)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default 10)")
    p.add_argument("--checkpoint-every", type=int, default=10_000, help="steps between checkpoints; 0: at the end only (default 10000)")
    p.add_argument("--device", default="cpu", help="torch device of the trials (default cpu)")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files in the trials")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = p.parse_args(argv)
    fixed = dict(parse_assignment(item, "--set") for item in args.set)
    grid = parse_grid(args.grid, args.algo)
    try:
        summary = run_sweep(args.algo, args.env, seeds=parse_seeds(args.seeds), grid=grid, config=fixed, dataset=args.dataset,
                            steps=args.steps, run_dir=args.run_dir, metric=args.metric, mode=args.mode, search=args.search,
                            trials=args.trials, backend=args.backend, address=args.address, eval_every=args.eval_every,
                            eval_episodes=args.eval_episodes, checkpoint_every=args.checkpoint_every, device=args.device,
                            tensorboard=not args.no_tensorboard,
                            cpus_per_trial=args.cpus_per_trial, max_failures=args.max_failures, quiet=args.json)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume (finished trials are kept)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(_json_safe(summary)))
    else:
        print(format_summary(summary))
        print(f"summary: {summary['dir']}/summary.csv, summary.json, summary.png")
    return 0 if summary["n_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(_trial_main(sys.argv[1:]))
