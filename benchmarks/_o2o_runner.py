"""One offline-to-online run; started by ``benchmarks/offline_to_online.py`` in a fresh interpreter.

Takes the run's JSON spec as its only argument. An offline method (Uni-O4, IQL,
TD3+BC) learns ``offline_updates`` gradient updates from the dataset, is handed
over with ``start_online()`` and learns ``online_steps`` env steps; PPO learns
``online_steps`` env steps from scratch. Progress lines go to stdout (the
orchestrator sends them to the run's log); the result (evaluations read back
from the run's ``metrics.jsonl``, wall-clock per phase) is written atomically to
``spec["result_path"]`` and printed as the last stdout line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def eval_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Evaluation rows of the run (``phase``, ``step``, ``eval/return``, ...) in the order logged."""
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "eval/return" in row:
            rows.append(row)
    return rows


def select_rows(run_dir: Path) -> dict[str, Any]:
    """Uni-O4's member-selection metrics (``select/*``), logged when offline training ends."""
    out: dict[str, Any] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.update({k: v for k, v in row.items() if k.startswith("select/")})
    return out


def polyrl_source(polyrl_file: str) -> dict[str, Any]:
    """The git commit of the polyrl being run and whether its ``polyrl/`` sources differ from it (None outside git)."""
    import subprocess

    root = Path(polyrl_file).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=30).stdout.strip() or None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "polyrl"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty) if commit else None}


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: _o2o_runner.py '<json spec>' (runs are started by benchmarks/offline_to_online.py)")
    spec = json.loads(sys.argv[1])
    import torch

    torch.set_num_threads(spec["threads"])
    import polyrl

    run_dir = Path(spec["run_dir"])
    shutil.rmtree(run_dir, ignore_errors=True)  # a crashed earlier attempt: start this run over
    out: dict[str, Any] = {"spec": spec, "polyrl_version": polyrl.__version__, "polyrl_path": polyrl.__file__,
                           "torch": torch.__version__, "threads": torch.get_num_threads(), "pid": os.getpid(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "polyrl_source": polyrl_source(polyrl.__file__)}
    settings = dict(eval_episodes=spec["eval_episodes"], progress=False, tensorboard=False)
    t0 = time.perf_counter()
    if spec["dataset"] is None:
        agent = polyrl.make(spec["algo"], spec["env_id"], seed=spec["seed"], run_dir=run_dir, **spec["config"])
    else:
        agent = polyrl.make(spec["algo"], spec["env_id"], dataset=spec["dataset"], seed=spec["seed"], run_dir=run_dir,
                            **spec["config"])
    out["setup_s"] = time.perf_counter() - t0
    model_fit: list[float] = []
    try:
        if spec["dataset"] is not None:
            # Uni-O4 fits its dynamics ensemble when behaviour PPO starts; time that step on its own.
            start_bppo = getattr(agent.algo, "_start_behaviour_ppo", None)
            if start_bppo is not None:
                def timed_start() -> None:
                    t = time.perf_counter()
                    start_bppo()
                    model_fit.append(time.perf_counter() - t)
                    log(f"dynamics model fitted in {model_fit[-1]:.1f} s; behaviour PPO begins")

                agent.algo._start_behaviour_ppo = timed_start  # type: ignore[method-assign]
            log(f"{spec['algo']} offline: {spec['offline_updates']} updates on {spec['dataset']}")
            t1 = time.perf_counter()
            agent.learn(spec["offline_updates"], eval_every=spec["offline_eval_every"], **settings)
            out["offline_s"] = time.perf_counter() - t1
            out["model_fit_s"] = model_fit[0] if model_fit else None
            off = [r for r in eval_rows(run_dir) if r["phase"] == "offline"]
            log(f"offline done in {out['offline_s']:.0f} s; final offline eval return {off[-1]['eval/return']:.1f}")
            out["select"] = select_rows(run_dir)
            agent.start_online()
            log(f"online: {spec['online_steps']} env steps")
        else:
            out["offline_s"] = 0.0
            log(f"{spec['algo']} from scratch: {spec['online_steps']} env steps")
        t2 = time.perf_counter()
        agent.learn(spec["online_steps"], eval_every=spec["online_eval_every"], **settings)
        out["online_s"] = time.perf_counter() - t2
        out["env_steps"] = int(agent.algo.env_steps)
        out["total_s"] = time.perf_counter() - t0
        rows = eval_rows(run_dir)
        out["offline_evals"] = [[int(r["step"]), float(r["eval/return"])] for r in rows if r["phase"] == "offline"]
        out["online_evals"] = [[int(r["step"]), float(r["eval/return"])] for r in rows if r["phase"] == "online"]
        out["loadavg_end"] = os.getloadavg()[0]
        log(f"online done in {out['online_s']:.0f} s; final eval return {out['online_evals'][-1][1]:.1f}")
    finally:
        agent.close()
        if not spec.get("keep_checkpoints"):  # metrics.jsonl and run.json stay for diagnosis
            for name in ("checkpoints", "handoff"):
                shutil.rmtree(run_dir / name, ignore_errors=True)
    result = Path(spec["result_path"])
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(result)
    print(json.dumps({"result": str(result), "total_s": out["total_s"]}), flush=True)


if __name__ == "__main__":
    main()
