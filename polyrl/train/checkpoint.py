"""Checkpoints as safetensors + JSON, written atomically.

A checkpoint is a directory:

* ``agent.json``: algorithm, env, seed, config, env spec, step, polyrl version;
* ``model.safetensors``: network weights and the observation normaliser
  (all a deployment needs);
* ``resume.safetensors`` + ``resume.json``: optimiser state, RNG state,
  replay contents and trainer counters, for exact resumption.

Nested state (optimiser ``state_dict``s, RNG states) is split by
:func:`flatten` into a JSON tree and a flat dict of tensors. A checkpoint is
written to a temporary sibling directory and renamed into place, so a crash
never leaves a partial checkpoint under the final name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from polyrl.errors import CheckpointError
from polyrl.io import atomic_directory, write_json

LATEST = "LATEST"


def flatten(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested structure into a JSON-able tree and a flat tensor dict (arrays become tensors)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {"__tensor__": path}
        if isinstance(node, np.ndarray):
            tensors[path] = torch.from_numpy(np.ascontiguousarray(node))
            return {"__ndarray__": path}
        if isinstance(node, dict):
            return {"__dict__": [[walk(k, f"{path}.k{i}"), walk(v, f"{path}.{i}")] for i, (k, v) in enumerate(node.items())]}
        if isinstance(node, (list, tuple)):
            return {"__list__" if isinstance(node, list) else "__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(node)]}
        if isinstance(node, (np.integer, np.floating, np.bool_)):
            return node.item()
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot checkpoint a value of type {type(node).__name__} at {path!r}")

    return walk(tree, prefix), tensors


def unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`."""
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__ndarray__" in tree:
            return tensors[tree["__ndarray__"]].numpy()
        if "__dict__" in tree:
            return {unflatten(k, tensors): unflatten(v, tensors) for k, v in tree["__dict__"]}
        if "__list__" in tree:
            return [unflatten(v, tensors) for v in tree["__list__"]]
        if "__tuple__" in tree:
            return tuple(unflatten(v, tensors) for v in tree["__tuple__"])
    return tree


def write_checkpoint(path: str | Path, meta: dict[str, Any], weights: dict[str, torch.Tensor], resume: Any | None) -> Path:
    """Atomically write a checkpoint directory at ``path`` (replacing any existing one)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"))
        if resume is not None:
            tree, tensors = flatten(resume, "r")
            save_file(tensors, str(tmp / "resume.safetensors"))
            write_json(tmp / "resume.json", tree)
        write_json(tmp / "agent.json", meta)  # written last: its presence marks a complete checkpoint
    return path


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints under ``run_dir/checkpoints``, oldest first: ``step_*`` by step, then an offline
    algorithm's online phase (``online_step_*``, whose env steps count from 0 again)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted((c for c in root.glob("*step_*") if not c.name.startswith(".") and (c / "agent.json").exists()),
                  key=lambda c: (c.name.startswith("online_"), c.name.rsplit("_", 1)[-1]))


def resolve(path: str | Path) -> Path:
    """A checkpoint directory from a checkpoint or a run directory (its latest checkpoint)."""
    path = Path(path)
    if (path / "agent.json").exists():
        return path
    latest = path / "checkpoints" / LATEST
    if latest.exists():
        ckpt = path / "checkpoints" / latest.read_text().strip()
        if (ckpt / "agent.json").exists():
            return ckpt
        raise CheckpointError(f"{latest} points to {ckpt.name}, which is missing or incomplete; pick another under {latest.parent}")
    if not path.exists():
        raise CheckpointError(f"no such run or checkpoint directory: {path}")
    raise CheckpointError(f"{path} holds no checkpoint (no agent.json, no checkpoints/{LATEST}); was the run saved?")


def read_checkpoint(path: str | Path, *, with_resume: bool = True) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any | None]:
    """Read ``(meta, weights, resume)`` from a checkpoint or run directory; errors name the bad file."""
    ckpt = resolve(path)
    try:
        meta = json.loads((ckpt / "agent.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt / 'agent.json'} is unreadable ({e}); the checkpoint is corrupt") from None
    try:
        weights = load_file(str(ckpt / "model.safetensors"))
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"{ckpt / 'model.safetensors'} is unreadable ({e}); the checkpoint is corrupt") from None
    resume = None
    if with_resume and (ckpt / "resume.json").exists():
        try:
            resume = unflatten(json.loads((ckpt / "resume.json").read_text()), load_file(str(ckpt / "resume.safetensors")))
        except Exception as e:
            raise CheckpointError(f"resume state in {ckpt} is unreadable ({e}); load without resuming or use an earlier checkpoint") from None
    return meta, weights, resume
