"""Seeded behaviour fingerprint of every algorithm, for refactors that must not change behaviour.

For each registered algorithm (tiny configs from ``tests/conftest.py``, with and without observation
normalisation) it trains 300 steps with checkpoints, continues online where the algorithm can, resumes from
the first checkpoint, and prints hashes of the weights, the logged metric rows (timings left out) and the
actions. Run it before and after a change on the same machine and torch build; the JSON must be identical::

    python scripts/fingerprint.py --out before.json        # on the old commit
    python scripts/fingerprint.py --out after.json         # on the new one
    cmp before.json after.json

Hashes are bit-level, so they differ across CPUs and torch releases; compare runs of one machine only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.conftest: the tiny configs

import polyrl  # noqa: E402
from polyrl import algos  # noqa: E402
from polyrl.data.collect import collect  # noqa: E402
from tests.conftest import agent_kwargs  # noqa: E402

QUIET = {"progress": False, "tensorboard": False, "eval_episodes": 2, "eval_every": 150, "log_every": 50}


def weights_hash(agent: polyrl.Agent) -> str:
    h = hashlib.sha256()
    for k, v in sorted(agent.algo.weights().items()) + sorted(agent.obs_norm.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def rows_hash(run: Path) -> tuple[str, int]:
    rows = [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in open(run / "metrics.jsonl")]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16], len(rows)


def fingerprint(name: str, datasets: dict[str, Path], root: Path, normalize: bool) -> dict:
    kw = agent_kwargs(name, datasets)
    if "online_warmup" in algos.get(name).Config().to_dict():
        kw["online_warmup"] = 50
    a = polyrl.make(name, seed=3, run_dir=root / f"{name}-{normalize}", normalize_obs=normalize, **kw)
    a.learn(300, checkpoint_every=150, keep_checkpoints=5, **QUIET)
    out: dict = {"w": weights_hash(a), "rows": rows_hash(a.run_dir), "steps": a.algo.env_steps, "updates": a.algo.n_updates}
    if a.algo_cls.online_regime is not None:
        a.start_online()
        a.learn(200, checkpoint_every=100, **QUIET)
        out["online"] = {"w": weights_hash(a), "rows": rows_hash(a.run_dir), "steps": a.algo.env_steps, "updates": a.algo.n_updates}
    obs = np.random.default_rng(1).normal(size=(4, *a.spec.obs_shape)).astype(np.float32)
    out["act"] = hashlib.sha256(np.asarray(a.act(obs)).tobytes()).hexdigest()[:16]
    b = polyrl.load(sorted((a.run_dir / "checkpoints").glob("step_*"))[0], run_dir=root / f"{name}-{normalize}-resumed")
    b.learn(**QUIET)
    out["resumed"] = weights_hash(b)
    a.close()
    b.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("algos", nargs="*", help="algorithms (default: every registered one)")
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    datasets = {env: collect(env, 600, seed=1).save(root / env) for env in ("Pendulum-v1", "CartPole-v1")}
    result = {f"{n}/norm={norm}": fingerprint(n, datasets, root, norm) for n in (args.algos or algos.names()) for norm in (False, True)}
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    print(f"wrote {args.out}: {len(result)} fingerprints")


if __name__ == "__main__":
    main()
