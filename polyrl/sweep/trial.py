"""Running one trial in this process (:func:`run_trial`) and recording how it ended (``result.json``).

Both backends end here: the local one through ``python -m polyrl.sweep
TRIAL_DIR`` (:func:`trial_main`), Ray Tune's workers by calling
:func:`run_trial` directly.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polyrl.io import write_json_atomic
from polyrl.sweep.spec import LOG, RESULT, SPEC, TrialSpec, read_metric


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

    torch.set_num_threads(spec.threads)
    trial_dir = Path(spec.dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    t0, resumed_from, agent = time.time(), None, None
    record: dict[str, Any] = {"trial": spec.name, "config": spec.grid_values, "label": spec.label, "seed": spec.seed,
                              "metric": spec.metric}
    try:
        latest = trial_dir / "checkpoints" / "LATEST"
        if latest.is_file():
            if spec.env is not None:
                # a checkpoint names the env without its "module:" prefix; importing the module registers the id
                check_env_id(spec.env)
            agent = Agent.load(trial_dir, device=spec.device)
            resumed_from = latest.read_text().strip()
            agent.settings = spec.train
        else:
            _fresh_start(trial_dir)
            agent = Agent(spec.algo, spec.env, dataset=spec.dataset, seed=spec.seed, device=spec.device,
                          run_dir=trial_dir, settings=spec.train, **spec.config)
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


def trial_main(argv: Sequence[str]) -> int:
    """``python -m polyrl.sweep TRIAL_DIR``: run the trial whose ``trial.json`` is in ``TRIAL_DIR``."""
    spec = TrialSpec.from_json(json.loads((Path(argv[0]) / SPEC).read_text()))
    return 0 if run_trial(spec)["status"] == "finished" else 1
