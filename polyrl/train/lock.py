"""One writer per run directory: a lock file naming its holder (pid, host), taken over when the holder is gone.

``train``, ``pipeline`` and each sweep trial hold the lock of the directory they write while they run, so a second
process on the same directory stops at once with a one-line error instead of interleaving checkpoints with the
first. A lock left by a killed process (same host, pid no longer alive) is stale and is taken over. A lock from
another host cannot be checked from here: the error says which host holds it and how to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from polyrl.errors import PolyrlError
from polyrl.io import write_text_atomic

LOCK_NAME = ".polyrl.lock"


class RunLockedError(PolyrlError):
    """Another live process writes to this run directory."""


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: assume it lives (the error says what to do)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class RunLock:
    """The lock of ``run_dir``, re-entrant within one process (the pipeline and the agent it drives share it)."""

    _held: dict[Path, int] = {}
    """Lock paths this process holds -> how many holders in it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir).resolve() / LOCK_NAME
        self.acquired = False

    def holder(self) -> dict | None:
        """The recorded holder (``pid``, ``host``, ``since``), or None when the directory is not locked."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # no lock, or one being written: treated as none
            return None

    def acquire(self) -> RunLock:
        if self.acquired:
            return self
        if self.path in RunLock._held:
            RunLock._held[self.path] += 1
            self.acquired = True
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = self.holder()
            if other is not None and (other.get("host") != me["host"] or _alive(int(other.get("pid", -1)))):
                where = f"pid {other.get('pid')} on {other.get('host')} since {other.get('since')}"
                hint = ("stop it or wait for it" if other.get("host") == me["host"] else
                        f"if that process is gone, delete {self.path}")
                raise RunLockedError(f"{self.path.parent} is being written by {where}; {hint} (one writer per run directory)") from None
            write_text_atomic(self.path, json.dumps(me))  # stale (its process is gone): take it over
            if (self.holder() or {}).get("pid") != me["pid"]:  # another process took it over at the same moment
                raise RunLockedError(f"{self.path.parent} was just taken by another process; one writer per run directory") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
        RunLock._held[self.path] = 1
        self.acquired = True
        return self

    def release(self) -> None:
        if not self.acquired:
            return
        self.acquired = False
        count = RunLock._held.get(self.path, 0) - 1
        if count > 0:
            RunLock._held[self.path] = count
            return
        RunLock._held.pop(self.path, None)
        if (self.holder() or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
