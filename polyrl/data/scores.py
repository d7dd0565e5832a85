"""Reference returns and normalised scores: ``score = 100 (R - R_random) / (R_expert - R_random)``.

polyrl cannot download D4RL, so its datasets are its own (made on the v5
MuJoCo tasks). Two sets of references exist and every score says which it
used:

* ``"polyrl"``: returns polyrl measured itself on the exact task id, a
  uniformly random policy and the best expert polyrl trained, each stored
  with its provenance (policy, budget, episodes, seed, polyrl version). The
  shipped table is ``polyrl/data/references.json``; a file named by the
  ``POLYRL_REFERENCES`` environment variable adds or overrides entries (write
  one with ``polyrl dataset reference ENV --expert RUN_DIR --out FILE``).
* ``"d4rl"``: D4RL's published constants for the hopper / halfcheetah /
  walker2d / ant families, measured by D4RL on the v2 tasks with its own
  random and expert policies.

``reference(env_id)`` prefers polyrl's measurement of the exact id and falls
back to D4RL's family constants; ``source=`` picks one explicitly.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyrl.errors import ConfigError, DatasetError

D4RL_REFERENCE: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}
"""``family -> (R_random, R_expert)`` as published with D4RL (Fu et al. 2020)."""

SHIPPED = Path(__file__).with_name("references.json")
SOURCES = ("auto", "polyrl", "d4rl")


@dataclass(frozen=True)
class Reference:
    """Returns that define a normalised score, and where they come from."""

    random: float
    expert: float
    source: str
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)
    """How the returns were measured (polyrl's own references): policies, episodes, seed, version."""

    def score(self, ret: float) -> float:
        """``100 (ret - random) / (expert - random)``."""
        return 100.0 * (ret - self.random) / (self.expert - self.random)

    def to_json(self) -> dict[str, Any]:
        return {"random": self.random, "expert": self.expert, "provenance": self.provenance}


def family(env_id: str) -> str:
    """``"Hopper-v5" -> "hopper"`` (the lower-cased name without version or namespace)."""
    return env_id.split("/")[-1].split(":")[-1].split("-v")[0].lower()


def _read_table(path: Path) -> dict[str, Reference]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read the reference-returns file {path}: {exc}; fix or remove it") from exc
    table = {}
    for env_id, entry in raw.items():
        try:
            table[env_id] = Reference(float(entry["random"]), float(entry["expert"]), "polyrl", dict(entry.get("provenance", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: the entry for {env_id!r} needs numeric 'random' and 'expert' returns ({exc})") from exc
    return table


@functools.cache
def _shipped() -> dict[str, Reference]:
    return _read_table(SHIPPED) if SHIPPED.exists() else {}


def polyrl_references() -> dict[str, Reference]:
    """polyrl's measured references by exact env id: the shipped table, updated by ``$POLYRL_REFERENCES`` if set."""
    table = dict(_shipped())
    extra = os.environ.get("POLYRL_REFERENCES")
    if extra:
        table |= _read_table(Path(extra))
    return table


def reference(env_id: str, source: str = "auto") -> Reference | None:
    """The reference returns of ``env_id``: polyrl's own measurement of that id (``"polyrl"``), D4RL's constants
    for its family (``"d4rl"``), or the first of those that exists (``"auto"``); ``None`` when there is none."""
    if source not in SOURCES:
        raise ConfigError(f"unknown reference source {source!r}; choose one of {', '.join(SOURCES)}")
    if source in ("auto", "polyrl"):
        ref = polyrl_references().get(env_id)
        if ref is not None or source == "polyrl":
            return ref
    d4rl = D4RL_REFERENCE.get(family(env_id))
    return Reference(d4rl[0], d4rl[1], "d4rl") if d4rl else None


def write_references(path: str | Path, refs: dict[str, Reference]) -> None:
    """Merge ``refs`` into the reference-returns file at ``path`` (written atomically)."""
    from polyrl.io import write_json_atomic

    path = Path(path)
    table = {k: v.to_json() for k, v in (_read_table(path) if path.exists() else {}).items()}
    write_json_atomic(path, table | {k: v.to_json() for k, v in refs.items()})
