"""Metrics to JSONL, CSV (long format) and TensorBoard."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import torch


def to_float(value: Any) -> float:
    """A metric value (float, int or 0-d tensor) as a Python float."""
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


class Logger:
    """Append metrics to ``metrics.jsonl`` (one object per row) and ``metrics.csv`` (``step,key,value,phase``).

    ``phase`` is ``"offline"`` (``step`` counts gradient updates) or ``"online"``
    (``step`` counts env steps); an offline-to-online run has both, in that order.

    TensorBoard event files go to ``tb/`` when ``tensorboard`` is true.
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        new_csv = not (self.run_dir / "metrics.csv").exists()
        self._csv_file = open(self.run_dir / "metrics.csv", "a", newline="")
        self._csv = csv.writer(self._csv_file)
        if new_csv:
            self._csv.writerow(["step", "key", "value", "phase"])
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))

    def log(self, step: int, metrics: dict[str, Any], phase: str = "online") -> dict[str, float]:
        """Write one row; returns the metrics as floats."""
        row = {k: to_float(v) for k, v in metrics.items()}
        finite = {k: (v if math.isfinite(v) else str(v)) for k, v in row.items()}
        self._jsonl.write(json.dumps({"step": step, "phase": phase, **finite}) + "\n")
        for k, v in row.items():
            self._csv.writerow([step, k, v, phase])
            if self._tb is not None:
                self._tb.add_scalar(k if phase == "online" else f"offline/{k}", v, step)
        self._jsonl.flush()
        self._csv_file.flush()
        return row

    def flush(self) -> None:
        """Push buffered TensorBoard events to disk (JSONL/CSV rows are flushed as written)."""
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()
        if self._tb is not None:
            self._tb.close()
