"""Diagnostic: does model-based OPE rank policies better when rollouts end by the task's known rule?

    python benchmarks/ope_termination_probe.py RUN_DIR DATASET [MAX_EPOCHS]

``RUN_DIR`` is a finished offline Uni-O4 run (its candidates, each member's reference and BC start, are the
policies); ``DATASET`` the data the OPE model is fitted to (``MAX_EPOCHS``, default 20). Prints the real return of
every candidate (10 deterministic episodes), then for ``termination="learned"`` and ``"auto"`` the model-based
estimates (100 rollouts, 95% interval) and their Spearman rank correlation with the real returns. Used for the
termination paragraph of docs/guides/ope.md. One torch thread; about 6 minutes on a loaded core for Hopper.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from scipy.stats import spearmanr

import polyrl
from polyrl import ope
from polyrl.data.dataset import Dataset
from polyrl.models.dynamics import DynamicsConfig


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.time()
    agent, data = polyrl.load(sys.argv[1]), Dataset.load(sys.argv[2])
    max_epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    candidates = agent.algo.candidates()
    real = {name: agent.evaluate_policy(policy, 10).mean_return for name, policy in candidates.items()}
    print(json.dumps({"real": {k: round(v) for k, v in real.items()}}), flush=True)
    model, fit = ope.fit_model(agent, data, cfg=DynamicsConfig(max_epochs=max_epochs), seed=0)
    print(json.dumps({"fit": fit}), flush=True)
    for termination in ("learned", "auto"):
        est = {name: ope.model_based(agent, data, model=model, policy=policy, n_rollouts=100, seed=0,
                                     termination=termination) for name, policy in candidates.items()}
        rho = spearmanr([est[k].estimate for k in candidates], [real[k] for k in candidates]).correlation
        print(json.dumps({"termination": termination, "spearman": round(float(rho), 2),
                          "estimates": {k: [round(e.estimate), round(e.ci_low), round(e.ci_high)] for k, e in est.items()}}),
              flush=True)
    print(json.dumps({"time_s": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
