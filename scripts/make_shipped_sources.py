"""Make the SAC snapshots polyrl ships for its recipes (``polyrl/data/sources/<env>/``).

    python scripts/make_shipped_sources.py                      # Hopper-v5: 200k SAC steps, a checkpoint every 20k
    python scripts/make_shipped_sources.py --env Hopper-v5 --train-steps 200000 --every 20000 --seed 0

It trains polyrl's SAC (default config with ``normalize_obs=True``, the
configuration of polyrl's Hopper-v5 reference expert; without the observation
normaliser this SAC was still below 500 at 100k steps on Hopper-v5), keeping
a checkpoint every ``--every`` env steps, evaluates each checkpoint once (the
``--from-run`` machinery of ``polyrl.data.recipes``), and keeps the medium and
expert snapshots (``recipes.pick_snapshots``) with a ``snapshots.json`` that
records how they were made. ``polyrl pipeline`` and ``polyrl dataset make
--shipped`` roll them out instead of training SAC. One torch thread, so a CPU
run is reproducible; about 40 minutes on one core for Hopper-v5.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

import polyrl
from polyrl.jobs.recipes import SHIPPED_SOURCES, _snapshots_of_run, ship_snapshots


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--train-steps", type=int, default=200_000)
    p.add_argument("--every", type=int, default=20_000, help="env steps between checkpoints (the candidate snapshots)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path(".polyrl-sources"), help="where the SAC run and its evaluations go")
    args = p.parse_args()
    torch.set_num_threads(1)
    run = args.work / f"{args.env.replace('/', '_')}-sac-{args.train_steps}-s{args.seed}"
    config = {"normalize_obs": True}
    agent = polyrl.load(run) if (run / "checkpoints").exists() else polyrl.make("sac", args.env, seed=args.seed, run_dir=run,
                                                                                   **config)
    if agent.algo.env_steps < args.train_steps:
        agent.learn(args.train_steps - agent.algo.env_steps, eval_every=0, eval_episodes=0, tensorboard=False,
                    checkpoint_every=args.every, keep_checkpoints=args.train_steps // args.every + 1)
    agent.close()
    source = _snapshots_of_run(args.env, run, args.seed, args.work)
    out = ship_snapshots(source, SHIPPED_SOURCES / args.env.replace("/", "_"), {
        "made_by": "scripts/make_shipped_sources.py", "algo": "sac", "env_id": args.env, "config": config,
        "train_steps": args.train_steps, "checkpoint_every": args.every, "seed": args.seed,
        "snapshot_eval": "mean return of 10 deterministic episodes (polyrl.data.recipes._snapshots_of_run)",
        "polyrl_version": polyrl.__version__, "torch_version": torch.__version__, "python": platform.python_version()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
