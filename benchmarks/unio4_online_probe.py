"""Uni-O4 diagnostic: several online settings fine-tuned from one and the same offline hand-off.

    python benchmarks/unio4_online_probe.py DATASET SEED OUT_DIR '<offline config JSON>' '<variants JSON>'

for example

    python benchmarks/unio4_online_probe.py benchmarks/.work/datasets-shipped/hopper-medium-replay 0 \\
        runs/probe-mr0 '{"batch_size": 256}' '{"base": {}, "clip0.2": {"online_clip": 0.2}}'

Trains Uni-O4 offline once (20000 updates, the offline-to-online benchmark's budget and evaluation
schedule) and saves the hand-off under ``OUT_DIR/handoff``; a later call with the same ``OUT_DIR``
reuses it. Then, for each variant (a name and the config fields to change), loads the hand-off, applies
the fields, calls ``start_online()`` and learns 30000 env steps, evaluated every 2000 with 10 episodes,
and prints one line: the normalised scores of the first, last and best online evaluations and the
whole curve. Run it from the repository's root (the hand-off records the dataset's path as given).

Loading the hand-off restores the optimiser and RNG state, so the "base" variant repeats the
benchmark's own run exactly (checked: hopper-medium-replay seed 0 gave the same curve, final 13.9).
Used for note 1b of docs/algorithms/unio4.md. One torch thread; ~9 min offline plus ~30 s per
variant on one core.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from _o2o_runner import eval_rows  # the benchmark's own reading of a run's evaluations

import polyrl
from polyrl.data.scores import reference

OFFLINE_UPDATES, ONLINE_STEPS, EPISODES = 20_000, 30_000, 10


def main() -> None:
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    dataset, seed, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    offline_config, variants = json.loads(sys.argv[4]), json.loads(sys.argv[5])
    torch.set_num_threads(1)
    settings = dict(eval_episodes=EPISODES, progress=False, tensorboard=False)
    handoff = out / "handoff"
    if not (handoff / "DONE").exists():
        agent = polyrl.make("unio4", dataset=dataset, seed=seed, run_dir=out / "offline", **offline_config)
        agent.learn(OFFLINE_UPDATES, eval_every=5_000, **settings)
        agent.save(handoff)
        (handoff / "DONE").write_text("hand-off saved\n")
        agent.close()
    for name, fields in variants.items():
        agent = polyrl.Agent.load(handoff, run_dir=out / name)
        agent.algo.cfg = dataclasses.replace(agent.algo.cfg, **fields)
        ref = reference(agent.env_id)
        if ref is None:
            raise SystemExit(f"no reference returns for {agent.env_id}: normalised scores need them")
        agent.start_online()
        t = time.perf_counter()
        agent.learn(ONLINE_STEPS, eval_every=2_000, **settings)
        agent.close()
        scores = [ref.score(r["eval/return"]) for r in eval_rows(out / name) if r["phase"] == "online"]
        print(f"{name} {fields}: first {scores[0]:.1f} final {scores[-1]:.1f} best {max(scores):.1f} "
              f"[{' '.join(f'{s:.0f}' for s in scores)}] {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
