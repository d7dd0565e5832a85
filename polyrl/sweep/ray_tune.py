"""The Ray Tune backend: trials on a local Ray instance or a cluster, the whole grid or an Optuna search over it.

A grid sweep is one Tune trial per (configuration, seed) (:func:`_ray_trial`);
a search is one Tune trial per configuration the searcher picks, run on every
seed, its objective the mean final metric (:func:`_ray_search_trial`). Tune
pickles both trainables by reference, so they stay module-level functions of
this module. Each trial's output goes to its ``trial.log``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from polyrl.errors import PolyrlError
from polyrl.sweep.grid import format_value
from polyrl.sweep.spec import LOG, Sweep, TrialSpec, prepare_trial, read_result
from polyrl.sweep.summary import Printer
from polyrl.sweep.trial import record_failure, run_trial


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
    prepare_trial(spec)
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

    sweep = Sweep.from_json(Path(config["sweep_dir"]), config["sweep"])
    values = {k: _decode(sweep, k, config[k]) for k in sweep.grid}
    results = []
    for seed in sweep.seeds:
        spec = sweep.spec(values, seed)
        prepare_trial(spec)
        record = read_result(spec.dir)
        if record is None or record.get("status") != "finished":
            with _output_to(Path(spec.dir) / LOG):
                record = run_trial(spec)
        if record["status"] != "finished":
            raise TrialFailed(f"seed {seed}: {record['error']}")
        results.append(record["value"])
    tune.report({"objective": float(np.mean(results)) if None not in results else float("nan")})


def _decode(sweep: Sweep, key: str, choice: str) -> Any:
    return next(v for v in sweep.grid[key] if format_value(v) == choice)


def _ray_init(address: str | None) -> bool:
    """Connect to ``address`` or start a local Ray instance sized to the machine; True if this call started it."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return True


def run_ray(sweep: Sweep, specs: list[TrialSpec], printer: Printer, address: str | None, cpus_per_trial: float,
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
            space = {k: tune.choice([format_value(v) for v in values]) for k, values in sweep.grid.items()}
            searcher = OptunaSearch(metric="objective", mode=sweep.mode, seed=0,
                                    points_to_evaluate=[{k: format_value(v) for k, v in values.items()} for values, _ in done] or None,
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
