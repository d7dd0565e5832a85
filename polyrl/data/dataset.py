"""Offline datasets: transitions of whole (or cut) episodes, served from the replay buffer's storage.

A :class:`Dataset` holds the six transition fields polyrl uses everywhere
(``obs, action, reward, next_obs, terminated, truncated``) as NumPy arrays,
actions in the environment's own action space, plus a ``meta`` dict (env id,
spec, provenance). ``Dataset.buffer()`` wraps the same memory as a full
:class:`~polyrl.data.ReplayBuffer`, so offline training samples through the
exact code path online training uses.

Native on-disk format (a directory, written atomically)::

    meta.json                   format, version, env spec, sizes, provenance
    obs.npy action.npy reward.npy next_obs.npy terminated.npy truncated.npy

The ``.npy`` files are opened memory-mapped (copy-on-write), so a dataset of
a million transitions is not read into RAM twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrl._version import __version__
from polyrl.data import scores
from polyrl.data.replay import ReplayBuffer
from polyrl.data.scores import Reference
from polyrl.errors import DatasetError
from polyrl.io import atomic_directory, write_json

FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
FORMAT = "polyrl-dataset"
VERSION = 1


class Dataset:
    """Transitions ``(s, a, r, s', terminated, truncated)`` in time order, episodes back to back.

    Args:
        obs, next_obs: ``[N, *O]`` float32.
        action: ``[N, d]`` float32 (env's Box space) or ``[N]`` int64 (Discrete).
        reward: ``[N]`` (or ``[N, K]``) float32.
        terminated, truncated: ``[N]`` bool.
        meta: free-form metadata; ``env_id`` names the env to evaluate in.
        name: shown in error messages (the file the data came from).
    """

    def __init__(self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any, truncated: Any,
                 meta: dict[str, Any] | None = None, *, name: str = "dataset") -> None:
        self.name = name
        self.obs = _as(obs, np.float32)
        self.next_obs = _as(next_obs, np.float32)
        act = np.asanyarray(action)
        self.action = act if act.dtype.kind in "iu" else _as(act, np.float32)
        self.reward = _as(reward, np.float32)
        self.terminated = _as(terminated, bool)
        self.truncated = _as(truncated, bool)
        self.meta: dict[str, Any] = dict(meta or {})
        self._validate()

    # -- validation ----------------------------------------------------------------------------
    def _validate(self) -> None:
        n = len(self.obs)
        if n == 0:
            raise DatasetError(f"{self.name}: the dataset is empty")
        for field in FIELDS:
            if len(getattr(self, field)) != n:
                raise DatasetError(f"{self.name}: field {field!r} has {len(getattr(self, field))} rows but obs has {n}; "
                                   "every field needs one row per transition")
        if self.next_obs.shape != self.obs.shape:
            raise DatasetError(f"{self.name}: next_obs has shape {self.next_obs.shape[1:]} but obs has {self.obs.shape[1:]}")
        for field in ("obs", "next_obs", "reward", "action"):
            arr = getattr(self, field)
            if arr.dtype.kind == "f":
                bad = _first_nonfinite(arr)
                if bad is not None:
                    raise DatasetError(f"{self.name}: field {field!r} has a non-finite value at row {bad}; "
                                       "clean or drop those transitions before training")

    def check_spec(self, spec: Any) -> None:
        """Raise ``DatasetError`` if the data does not fit an env's :class:`~polyrl.envs.EnvSpec`."""
        where = f"{self.name} vs {spec.env_id}"
        if tuple(self.obs.shape[1:]) != tuple(spec.obs_shape):
            raise DatasetError(f"{where}: obs shape {tuple(self.obs.shape[1:])} does not match the env's {tuple(spec.obs_shape)}; "
                               "was the dataset made for another environment?")
        if spec.action_kind == "discrete":
            if self.action.dtype.kind not in "iu" or self.action.ndim != 1:
                raise DatasetError(f"{where}: the env has Discrete actions but the dataset's actions are {self.action.dtype} "
                                   f"of shape {self.action.shape[1:]}")
            if self.action.min() < 0 or self.action.max() >= spec.action_dim:
                raise DatasetError(f"{where}: action values span [{self.action.min()}, {self.action.max()}] "
                                   f"outside 0..{spec.action_dim - 1}")
        else:
            if self.action.ndim != 2 or self.action.shape[1] != spec.action_dim:
                raise DatasetError(f"{where}: action shape {tuple(self.action.shape[1:])} does not match the env's ({spec.action_dim},)")

    # -- views ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.obs)

    @property
    def env_id(self) -> str | None:
        return self.meta.get("env_id")

    def episode_ends(self) -> np.ndarray:
        """Indices of each episode's last transition (the final transition counts, cut or not)."""
        ends = np.flatnonzero(self.terminated | self.truncated)
        if len(ends) == 0 or ends[-1] != len(self) - 1:
            ends = np.append(ends, len(self) - 1)
        return ends

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode (summed over objectives' axis kept for vector rewards)."""
        ends = self.episode_ends()
        csum = np.cumsum(self.reward, axis=0, dtype=np.float64)
        totals = csum[ends]
        return np.diff(totals, axis=0, prepend=np.zeros_like(totals[:1]))

    def obs_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and variance of ``obs`` (float64), computed in chunks."""
        total = np.zeros(self.obs.shape[1:], np.float64)
        sq = np.zeros_like(total)
        for start in range(0, len(self), 100_000):
            chunk = self.obs[start:start + 100_000].astype(np.float64)
            total += chunk.sum(0)
            sq += (chunk**2).sum(0)
        mean = total / len(self)
        return mean, np.maximum(sq / len(self) - mean**2, 0.0)

    def saco(self, *, obs_bin: float = 0.5, action_bins: int = 8) -> float:
        """State-action coverage: unique discretised ``(s, a)`` pairs per transition, in ``(0, 1]``.

        After Schweighofer et al. 2022 ("A dataset perspective on offline RL"),
        normalised by the dataset's size instead of a reference dataset's count.
        Discretisation: each state dimension is standardised with the
        dataset's own mean and std and cut into bins ``obs_bin`` std wide;
        continuous actions are min-max scaled per dimension and cut into
        ``action_bins`` equal bins (discrete actions are used as they are).
        1.0 means no two transitions share a cell.
        """
        mean, var = self.obs_stats()
        std = np.sqrt(var) + 1e-8
        codes = [np.floor((np.asarray(self.obs, np.float64) - mean) / (std * obs_bin)).astype(np.int64)]
        act = np.asarray(self.action)
        if act.dtype.kind in "iu":
            codes.append(act.reshape(len(act), -1).astype(np.int64))
        else:
            lo, hi = act.min(0), act.max(0)
            scaled = (act - lo) / np.where(hi > lo, hi - lo, 1.0)
            codes.append(np.minimum(np.floor(scaled * action_bins), action_bins - 1).astype(np.int64))
        cells = np.concatenate([c.reshape(len(self), -1) for c in codes], axis=1)
        return float(len(np.unique(cells, axis=0)) / len(self))

    def tq(self, reference: Reference | None = None) -> float | None:
        """Trajectory quality: the mean episode return normalised by reference returns, in [0, 1] for
        data between the random and the expert policy (Schweighofer et al. 2022). ``None`` without references.
        """
        ref = reference or (scores.reference(self.env_id) if self.env_id else None)
        if ref is None:
            return None
        return float((np.mean(self.episode_returns()) - ref.random) / (ref.expert - ref.random))

    def info(self) -> dict[str, Any]:
        """Size, shapes, return statistics and the quality measures TQ and SACo."""
        rets = self.episode_returns()
        ref = scores.reference(self.env_id) if self.env_id else None
        return {
            "name": self.name, "env_id": self.env_id, "transitions": len(self), "episodes": int(len(rets)),
            "obs_shape": list(self.obs.shape[1:]), "action_shape": list(self.action.shape[1:]),
            "action_dtype": str(self.action.dtype), "mean_return": float(np.mean(rets)), "std_return": float(np.std(rets)),
            "min_return": float(np.min(rets)), "max_return": float(np.max(rets)),
            "terminations": int(self.terminated.sum()), "truncations": int(self.truncated.sum()),
            "tq": self.tq(ref), "saco": self.saco(), "reference": None if ref is None else ref.source,
            "normalized_mean_return": None if ref is None else ref.score(float(np.mean(rets))),
        }

    def buffer(self, spec: Any, device: Any = "cpu") -> ReplayBuffer:
        """The dataset as a full :class:`ReplayBuffer` on ``device``, actions rescaled to ``[-1, 1]``.

        On the CPU, fields that need no conversion share memory with the
        (memory-mapped) arrays instead of being copied.
        """
        self.check_spec(spec)
        action = self.action
        if spec.action_kind == "box":
            low, high = np.asarray(spec.action_low), np.asarray(spec.action_high)
            if np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and not (np.all(low == -1) and np.all(high == 1)):
                action = ((action - (high + low) / 2) / ((high - low) / 2)).astype(np.float32)

        def t(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(np.asarray(x)).to(device=device, dtype=dtype)

        return ReplayBuffer.wrap(
            obs=t(self.obs, torch.float32), action=t(action, torch.int64 if spec.action_kind == "discrete" else torch.float32),
            reward=t(self.reward, torch.float32), next_obs=t(self.next_obs, torch.float32),
            terminated=t(self.terminated, torch.float32), truncated=t(self.truncated, torch.float32),
        )

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the native format atomically (temporary directory, then rename)."""
        path = Path(path)
        with atomic_directory(path) as tmp:
            for field in FIELDS:
                with open(tmp / f"{field}.npy", "wb") as f:
                    np.save(f, np.ascontiguousarray(getattr(self, field)))
                    f.flush()
                    os.fsync(f.fileno())
            meta = self.meta | {"format": FORMAT, "version": VERSION, "transitions": len(self),
                                "polyrl_version": self.meta.get("polyrl_version", __version__)}
            write_json(tmp / "meta.json", meta, default=_json_default)  # written last: marks a complete dataset
        return path

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> Dataset:
        """Open a native dataset directory (memory-mapped unless ``mmap=False``)."""
        path = Path(path)
        meta_file = path / "meta.json"
        if not path.exists():
            raise DatasetError(f"no such dataset: {path}")
        if not meta_file.exists():
            raise DatasetError(f"{path} is not a polyrl dataset (no meta.json); an interrupted write leaves no dataset behind")
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{meta_file} is corrupt ({e})") from None
        if meta.get("format") != FORMAT:
            raise DatasetError(f"{meta_file} is not a polyrl dataset (format {meta.get('format')!r})")
        arrays = {}
        for field in FIELDS:
            file = path / f"{field}.npy"
            try:
                arrays[field] = np.load(file, mmap_mode="c" if mmap else None, allow_pickle=False)
            except FileNotFoundError:
                raise DatasetError(f"{path}: field {field!r} is missing ({file.name}); the dataset is incomplete") from None
            except (ValueError, OSError) as e:
                raise DatasetError(f"{file}: field {field!r} is unreadable ({e}); the file is truncated or corrupt") from None
        if len(arrays["obs"]) != meta.get("transitions"):
            raise DatasetError(f"{path / 'obs.npy'}: {len(arrays['obs'])} rows but meta.json says {meta.get('transitions')}; "
                               "the dataset is corrupt")
        return cls(**arrays, meta=meta, name=str(path))

    @classmethod
    def concatenate(cls, parts: list[Dataset], meta: dict[str, Any] | None = None) -> Dataset:
        """Join datasets of the same env back to back (e.g. medium + expert); each part's cut end becomes a truncation."""
        if not parts:
            raise DatasetError("nothing to concatenate")
        arrays = {f: np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS}
        ends = np.cumsum([len(p) for p in parts]) - 1
        cut = ~(arrays["terminated"][ends] | arrays["truncated"][ends])
        arrays["truncated"][ends[cut]] = True  # a part's unfinished last episode must not run into the next part
        return cls(*(arrays[f] for f in FIELDS),
                   meta=meta if meta is not None else dict(parts[0].meta), name="+".join(p.name for p in parts))


def _as(x: Any, dtype: type) -> np.ndarray:
    arr = np.asanyarray(x)  # keeps np.memmap (no copy)
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _first_nonfinite(arr: np.ndarray) -> int | None:
    for start in range(0, len(arr), 200_000):
        chunk = np.asarray(arr[start:start + 200_000])
        ok = np.isfinite(chunk).reshape(len(chunk), -1).all(1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in dataset metadata")
