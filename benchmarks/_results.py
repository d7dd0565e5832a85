"""Results-file and BENCHMARKS.md helpers shared by the benchmark harnesses (standard library only)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def record_key(r: dict[str, Any]) -> tuple[str, str, str]:
    """What identifies a record: ``(task, algo, metric)``."""
    return r["task"], r["algo"], r["metric"]


def merged_records(path: Path, new: list[dict[str, Any]], sort_key: Callable[[dict[str, Any]], Any]
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(old file content, old records replaced or extended by new ones, sorted)`` for the results JSON at ``path``."""
    old = json.loads(path.read_text()) if path.exists() else {}
    records = {record_key(r): r for r in old.get("records", [])}
    records.update({record_key(r): r for r in new})
    return old, sorted(records.values(), key=sort_key)


def write_results(path: Path, data: dict[str, Any]) -> None:
    """Write the results JSON through a temporary file, so an interrupted write keeps the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (through ``<path>.lock``) for the block: two harness processes (one per
    core, say) that merge into the same results JSON and BENCHMARKS.md then take turns instead of losing records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_section(path: Path, start: str, end: str, block: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` by ``block`` (append it if absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def cached(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The run's result (``spec["result_path"]``) if it finished before with exactly this spec."""
    path = Path(spec["result_path"])
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return res if res.get("spec") == spec else None


_print_lock = threading.Lock()


def say(msg: str) -> None:
    """Print one line whole, even from several harness threads."""
    with _print_lock:
        print(msg, flush=True)
