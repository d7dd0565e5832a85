"""Atomic writes shared by checkpoints and datasets."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; on success it replaces ``path`` in one rename.

    On any exception (including ``KeyboardInterrupt``) the temporary directory
    is removed and ``path`` is left as it was, so readers never see a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make checkpoints and datasets private to their writer
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any, **kwargs: Any) -> None:
    """Write JSON and fsync it (used inside :func:`atomic_directory`)."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, **kwargs)
        f.flush()
        os.fsync(f.fileno())
