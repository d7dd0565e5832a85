"""``polyrl sweep``: the command line of :func:`~polyrl.sweep.run_sweep`.

The trial settings' flags (``--eval-every``, ``--checkpoint-every``,
``--no-tensorboard``, ...) are generated from ``TrainSettings`` by
:func:`polyrl.config.add_options` (the generator ``polyrl train`` and ``polyrl pipeline``
use too), with the sweep's own defaults (:data:`~polyrl.sweep.spec.SETTINGS_DEFAULTS`); a flag that
is not given is not passed, so the default stays where it is stated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from polyrl.config import add_options
from polyrl.sweep.grid import parse_assignment, parse_grid, parse_seeds
from polyrl.sweep.spec import SETTINGS_DEFAULTS, SETTINGS_FIXED
from polyrl.sweep.summary import format_summary, json_safe
from polyrl.train import TrainSettings

USAGE = ("polyrl sweep ALGO --env ID --seeds 0-9 [--grid FIELD=V1,V2 ...] [--set FIELD=V ...] [--steps N] "
         "[--search optuna --trials N] [--metric eval/return] [--address ray://HOST:PORT] [--run-dir DIR]")


def _add_settings_options(p: argparse.ArgumentParser) -> list[str]:
    """A flag per TrainSettings option (``--no-<field>`` for a field that is on by default); returns their ``dest``s."""
    group = p.add_argument_group("trial settings", "fields of polyrl.train.TrainSettings, the same in every trial")
    return add_options(group, TrainSettings, defaults=SETTINGS_DEFAULTS, skip=tuple(SETTINGS_FIXED), given_only=True)


def cli_main(argv: Sequence[str]) -> int:
    """``polyrl sweep``: parse the options, run :func:`~polyrl.sweep.run_sweep` and print the summary table."""
    from polyrl.sweep import run_sweep

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
    p.add_argument("--device", default="cpu", help="torch device of the trials (default cpu)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    settings_dests = _add_settings_options(p)
    args = p.parse_args(argv)
    fixed = dict(parse_assignment(item, "--set") for item in args.set)
    grid = parse_grid(args.grid, args.algo)
    settings = {name: getattr(args, name) for name in settings_dests if hasattr(args, name)}
    try:
        summary = run_sweep(args.algo, args.env, seeds=parse_seeds(args.seeds), grid=grid, config=fixed, dataset=args.dataset,
                            steps=args.steps, run_dir=args.run_dir, metric=args.metric, mode=args.mode, search=args.search,
                            trials=args.trials, backend=args.backend, address=args.address, device=args.device,
                            cpus_per_trial=args.cpus_per_trial, max_failures=args.max_failures, quiet=args.json, **settings)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume (finished trials are kept)", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(json_safe(summary)))
    else:
        print(format_summary(summary))
        print(f"summary: {summary['dir']}/summary.csv, summary.json, summary.png")
    return 0 if summary["n_failed"] == 0 else 1
