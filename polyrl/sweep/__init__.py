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

The package, one concern a module: :mod:`~polyrl.sweep.grid` (seed lists and
grids), :mod:`~polyrl.sweep.spec` (the sweep and trial specs, the trials'
``TrainSettings``, the directory layout), :mod:`~polyrl.sweep.trial` (one
trial), :mod:`~polyrl.sweep.stats` (statistics across seeds),
:mod:`~polyrl.sweep.local` and :mod:`~polyrl.sweep.ray_tune` (the backends),
:mod:`~polyrl.sweep.summary` (what is written and printed) and
:mod:`~polyrl.sweep.cli` (``polyrl sweep``). :func:`run_sweep`, here,
composes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from polyrl.errors import ConfigError
from polyrl.io import write_json_atomic
from polyrl.sweep.cli import USAGE, cli_main
from polyrl.sweep.grid import (
    config_label,
    expand,
    format_value,
    parse_assignment,
    parse_grid,
    parse_seeds,
    trial_name,
    typed_grid,
)
from polyrl.sweep.local import run_local
from polyrl.sweep.ray_tune import TrialFailed, ray_available, run_ray
from polyrl.sweep.ray_tune import _ray_init as _ray_init  # tests/test_sweep.py calls polyrl.sweep._ray_init
from polyrl.sweep.spec import (
    IDENTITY,
    LOG,
    RESULT,
    SETTINGS_DEFAULTS,
    SETTINGS_FIXED,
    SPEC,
    TRIALS,
    Sweep,
    TrialSpec,
    check_same_sweep,
    checked_sweep,
    lock,
    read_metric,
    read_result,
    settings_json,
    settings_options,
    train_settings,
)
from polyrl.sweep.stats import iqm, seed_stats
from polyrl.sweep.summary import CSV_COLUMNS, Printer, format_summary, summarize, summary_csv, summary_plot
from polyrl.sweep.trial import record_failure, run_trial

__all__ = [
    "CSV_COLUMNS", "IDENTITY", "LOG", "RESULT", "SETTINGS_DEFAULTS", "SETTINGS_FIXED", "SPEC", "TRIALS", "USAGE",
    "Sweep", "TrialFailed", "TrialSpec", "cli_main", "config_label", "expand", "format_summary", "format_value", "iqm",
    "parse_assignment", "parse_grid", "parse_seeds", "ray_available", "read_metric", "read_result", "record_failure",
    "run_sweep", "run_trial", "seed_stats", "settings_options", "summarize", "summary_csv", "summary_plot", "trial_name",
    "typed_grid",
]


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
    device: str = "cpu",
    cpus_per_trial: float = 1,
    max_failures: int = 0,
    quiet: bool = False,
    **settings: Any,
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
        device: torch device of the trials.
        cpus_per_trial: CPUs Ray reserves per trial (torch uses as many threads, at least one).
        max_failures: Ray retries of a failed trial (each retry resumes from the trial's checkpoint).
        quiet: print nothing.
        **settings: fields of the trials' :class:`~polyrl.train.TrainSettings` (``eval_every``,
            ``eval_episodes``, ``checkpoint_every``, ``tensorboard``, ...), with TrainSettings' defaults
            except ``checkpoint_every=10_000`` (:data:`~polyrl.sweep.spec.SETTINGS_DEFAULTS`); trials
            show no progress bar.

    Returns:
        The summary (also written to ``summary.json``, ``summary.csv`` and ``summary.png``).
    """
    options = [o.name for o in settings_options()]
    unknown = [k for k in settings if k not in options]
    if unknown:
        raise TypeError(f"run_sweep() got an unexpected keyword argument {unknown[0]!r} "
                        f"(the trials' TrainSettings fields it takes: {', '.join(options)})")
    sweep = checked_sweep(algo, env, seeds, grid, config, dataset, steps, run_dir, metric, mode, search, trials)
    if backend not in ("auto", "local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; use auto, local or ray")
    # ray_available is looked up here, in polyrl.sweep, so replacing polyrl.sweep.ray_available (as the tests do) takes effect
    use_ray = backend == "ray" or (backend == "auto" and ray_available())
    if use_ray and not ray_available():
        raise ConfigError("the ray backend needs Ray Tune: pip install 'polyrl[ray]' (or use --backend local)")
    if search and not use_ray:
        raise ConfigError("--search optuna runs on Ray Tune: pip install 'polyrl[ray]' (or drop --search to run the grid)")
    if address and not use_ray:
        raise ConfigError("--address is a Ray cluster, and Ray is not used; pip install 'polyrl[ray]' or drop --address")
    sweep.settings = settings_json(train_settings(settings)) | {"device": str(device), "threads": max(1, int(cpus_per_trial))}
    sweep_dir, typed, seed_list = sweep.dir, sweep.grid, sweep.seeds
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with lock(sweep_dir):
        check_same_sweep(sweep)
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
                run_ray(sweep, pending, Printer(total, quiet), address, cpus_per_trial, max_failures)
        else:
            why = "--backend local" if backend == "local" else "Ray is not installed (pip install 'polyrl[ray]')"
            say(f"{why}: running the trials one after another in local processes")
            run_local(pending, Printer(len(pending), quiet))
        return summarize(sweep_dir)
