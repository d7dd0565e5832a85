"""The local backend: each trial in its own Python process (``python -m polyrl.sweep TRIAL_DIR``), one after another.

A process of its own per trial means a crash, even one that takes the
interpreter down, costs that trial only; it is recorded as failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from polyrl.sweep.spec import LOG, TrialSpec, prepare_trial, read_result
from polyrl.sweep.summary import Printer
from polyrl.sweep.trial import record_failure


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return ("; last output: " + " | ".join(tail)) if tail else ""


def run_local(specs: list[TrialSpec], printer: Printer) -> None:
    """Each trial in its own Python process, one after another; a dying process is recorded as a failed trial."""
    for spec in specs:
        prepare_trial(spec)
        env = os.environ | {"OMP_NUM_THREADS": str(spec.threads), "MKL_NUM_THREADS": str(spec.threads)}
        log_path = Path(spec.dir) / LOG
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "polyrl.sweep", spec.dir], stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                code = proc.wait()
            except BaseException:  # Ctrl-C reaches the child too (same process group); give it time to stop cleanly
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
        record = read_result(spec.dir)
        if record is None or (code != 0 and record.get("status") == "finished"):
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            record = record_failure(spec, f"trial process {how}{_log_tail(log_path)}")
        printer(record)
