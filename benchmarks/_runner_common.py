"""Timing helpers shared by ``_polyrl_runner.py`` and ``_sb3_runner.py``.

Standard library only: it is imported by both interpreters (the polyrl dev
environment and the Stable-Baselines3 virtualenv). Both runners time the
same events through these classes, so the two sides are measured identically.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any


def read_spec() -> dict[str, Any]:
    """The run specification: one JSON object, the only command-line argument."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} '<json spec>' (runs are started by benchmarks/online.py)")
    return json.loads(sys.argv[1])


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def emit(result: dict[str, Any]) -> None:
    """Print the one result line the orchestrator parses (last line of stdout starting with ``{``)."""
    print(json.dumps(result), flush=True)


class UpdateWindow:
    """The learning phase: from the start of the first gradient-update call to the end of the last one.

    Everything in between counts (env steps, action selection, replay writes,
    sampling, logging); set-up, the random warm-up before ``learning_starts``
    and the evaluation / checkpoint after training do not.
    """

    def __init__(self, env_steps: Callable[[], int]) -> None:
        self.env_steps = env_steps
        self.start: float | None = None
        self.end: float | None = None
        self.steps_at_start = 0
        self.steps_at_end = 0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            now = time.perf_counter()
            if self.start is None:
                self.start, self.steps_at_start = now, self.env_steps()
            out = fn(*args, **kwargs)
            self.end, self.steps_at_end = time.perf_counter(), self.env_steps()
            self.calls += 1
            return out

        return timed

    def summary(self, updates: int) -> dict[str, Any]:
        if self.start is None or self.end is None or self.end <= self.start:
            # Never silently report nothing: the hook is how the learning phase is timed.
            raise RuntimeError(f"the update hook ran {self.calls} time(s) for {updates} updates; the library no "
                               "longer calls the wrapped method (update the runner) or the budget ends before "
                               "learning_starts")
        dt = self.end - self.start
        return {"learn_phase_s": dt, "updates": updates, "updates_per_s": updates / dt,
                "learn_phase_env_steps": self.steps_at_end - self.steps_at_start,
                "steps_per_s": (self.steps_at_end - self.steps_at_start) / dt}


class Solved(Exception):
    """Raised from the evaluation hook to end training once the threshold is reached."""


class EvalClock:
    """Training wall time with evaluation time taken out, and the first time an evaluation reaches ``threshold``."""

    def __init__(self, threshold: float, env_steps: Callable[[], int]) -> None:
        self.threshold = threshold
        self.env_steps = env_steps
        self.t0 = time.perf_counter()
        self.eval_s = 0.0
        self.evals: list[dict[str, float]] = []
        self.solved_at: dict[str, float] | None = None

    def evaluate(self, run: Callable[[], float]) -> bool:
        """Run one evaluation (``run`` returns the mean return) off the clock; True once solved."""
        start = time.perf_counter()
        train_s = start - self.t0 - self.eval_s
        mean_return = float(run())
        self.eval_s += time.perf_counter() - start
        row = {"step": int(self.env_steps()), "return": mean_return, "train_s": train_s}
        self.evals.append(row)
        if self.solved_at is None and mean_return >= self.threshold:
            self.solved_at = row
        return self.solved_at is not None

    def summary(self) -> dict[str, Any]:
        s = self.solved_at
        return {"solved": s is not None, "seconds_to_threshold": s["train_s"] if s else None,
                "steps_to_threshold": s["step"] if s else None, "eval_s": self.eval_s,
                "train_s": time.perf_counter() - self.t0 - self.eval_s, "evals": self.evals}
