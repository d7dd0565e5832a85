"""Minari interchange: read datasets Minari wrote, write polyrl datasets Minari opens.

Requires the ``minari`` extra (``pip install "polyrl[minari]"``). Nothing is
downloaded: a Minari dataset is read from a local directory (or from the
local Minari store by id). Minari keeps episodes as ``T + 1`` observations
and ``T`` actions, rewards, terminations and truncations; polyrl's
transitions are derived from them without loss (``obs = observations[:-1]``,
``next_obs = observations[1:]``). Minari's HDF5 files are read into memory;
polyrl's native format (``Dataset.save``) is the faster one to train from,
since it is memory-mapped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from polyrl.data.dataset import Dataset
from polyrl.errors import DatasetError


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        raise DatasetError("Minari support needs the minari package: pip install 'polyrl[minari]'") from None
    return minari


def is_minari(path: str | Path) -> bool:
    """Whether ``path`` is a Minari dataset directory (its root, or its ``data`` folder)."""
    path = Path(path)
    return (path / "data" / "metadata.json").exists() or ((path / "metadata.json").exists() and path.name == "data")


def load_minari(path_or_id: str | Path) -> Dataset:
    """Read a Minari dataset from a local directory, or by id from the local Minari store."""
    minari = _minari()
    path = Path(path_or_id)
    if is_minari(path):
        data = path / "data" if (path / "data").exists() else path
        try:
            src = minari.MinariDataset(str(data))
        except Exception as e:
            raise DatasetError(f"{data}: not a readable Minari dataset ({e})") from None
    else:
        try:
            src = minari.load_dataset(str(path_or_id), download=False)
        except FileNotFoundError:
            raise DatasetError(f"no Minari dataset at {path_or_id} (a directory or a local dataset id; nothing is downloaded)") from None
    fields: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
    for ep in src.iterate_episodes():
        observations = ep.observations
        if isinstance(observations, dict):
            raise DatasetError(f"{path_or_id}: dict observations are not supported; flatten them first")
        fields["obs"].append(np.asarray(observations[:-1], np.float32))
        fields["next_obs"].append(np.asarray(observations[1:], np.float32))
        fields["action"].append(np.asarray(ep.actions))
        fields["reward"].append(np.asarray(ep.rewards, np.float32))
        fields["terminated"].append(np.asarray(ep.terminations, bool))
        fields["truncated"].append(np.asarray(ep.truncations, bool))
    if not fields["obs"]:
        raise DatasetError(f"{path_or_id}: the Minari dataset has no episodes")
    env_spec = src.spec.env_spec
    meta = {"env_id": env_spec.id if env_spec is not None else None, "source": "minari", "minari_id": src.spec.dataset_id,
            "algorithm": src.storage.metadata.get("algorithm_name")}
    arrays = {k: np.concatenate(v) for k, v in fields.items()}
    if arrays["action"].dtype.kind in "iu":
        arrays["action"] = arrays["action"].astype(np.int64).reshape(len(arrays["action"]))
    return Dataset(**arrays, meta=meta, name=str(path_or_id))


def save_minari(dataset: Dataset, dataset_id: str, root: str | Path | None = None) -> Path:
    """Write ``dataset`` as the Minari dataset ``dataset_id`` under ``root`` (default: the local Minari store).

    Written in a temporary store and moved into place, so an interruption
    leaves no partial dataset. Returns the dataset's directory.
    """
    minari = _minari()
    from minari.storage.datasets_root_dir import get_dataset_path

    if dataset.env_id is None:
        raise DatasetError(f"{dataset.name}: Minari needs the env id; set dataset.meta['env_id']")
    # absolute: Minari resolves MINARI_DATASETS_PATH against its own working paths
    root = (Path(root) if root is not None else Path(get_dataset_path(dataset_id)).parents[len(Path(dataset_id).parts) - 1]).resolve()
    final = root / dataset_id
    if final.exists():
        raise DatasetError(f"{final} exists; Minari datasets are immutable, choose another id or version")
    from minari.data_collector import EpisodeBuffer

    episodes = []
    start = 0
    for i, end in enumerate(dataset.episode_ends()):
        sl = slice(start, end + 1)
        truncations = np.asarray(dataset.truncated[sl]).copy()
        if not (dataset.terminated[end] or truncations[-1]):
            truncations[-1] = True  # a cut episode ends in a truncation for Minari
        episodes.append(EpisodeBuffer(
            id=i, observations=np.concatenate([dataset.obs[sl], dataset.next_obs[end:end + 1]]),
            actions=np.asarray(dataset.action[sl]), rewards=np.asarray(dataset.reward[sl]),
            terminations=np.asarray(dataset.terminated[sl]), truncations=truncations, infos={},
        ))
        start = end + 1
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".minari-tmp-"))
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(tmp)
    try:
        with warnings.catch_warnings():  # Minari nags about unset author / code link; provenance is in the description
            warnings.simplefilter("ignore", UserWarning)
            minari.create_dataset_from_buffers(
                dataset_id, episodes, env=dataset.env_id, algorithm_name=str(dataset.meta.get("policy", "polyrl")),
                description=f"written by polyrl; provenance: {json.dumps(_plain(dataset.meta))}", data_format="hdf5")
        final.parent.mkdir(parents=True, exist_ok=True)
        for namespace_file in tmp.rglob("namespace_metadata.json"):
            target = root / namespace_file.relative_to(tmp)
            if not target.exists():
                shutil.copy(namespace_file, target)
        os.replace(tmp / dataset_id, final)
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}


def load_any(path: str | Path) -> Dataset:
    """A polyrl dataset directory or a Minari dataset (directory or local id)."""
    if is_minari(path) or (not Path(path).exists() and "-v" in str(path)):
        return load_minari(path)
    return Dataset.load(path)
