"""A bounded Pareto archive of evaluated policies (C-MORL, Liu et al., ICLR 2025, Sec. 4).

The archive keeps the return vectors of the policies found so far that are
non-dominated and strictly better than a reference point in every objective.
Each entry also carries an opaque ``payload`` chosen by the caller (a
checkpoint name, a state dict, a policy id): the archive never looks inside
it, and the caller decides how payloads persist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from polyrl.morl.metrics import crowding_distance

__all__ = ["ParetoArchive"]


class ParetoArchive:
    """Non-dominated return vectors above ``ref_point``, capped at ``capacity`` by crowding distance.

    Insertion (:meth:`add`) rejects a vector that is not strictly above
    ``ref_point`` in every objective, that an entry dominates, or that equals
    an entry (the first copy stays). An accepted vector removes the entries it
    dominates; if the archive then holds more than ``capacity`` entries, the
    one with the smallest crowding distance (ties: the oldest) is dropped,
    which may be the new one. Every accepted vector gets a stable integer id,
    never reused, so callers can remember which entries they already extended
    (:meth:`select_sparse`).

    Args:
        n_objectives: number of objectives ``M``.
        ref_point: ``[M]`` reference point; entries must exceed it in every objective.
        capacity: the most entries kept (C-MORL uses 200).
    """

    def __init__(self, n_objectives: int, ref_point: ArrayLike, capacity: int = 200) -> None:
        ref = np.asarray(ref_point, dtype=np.float64).reshape(-1)
        if n_objectives < 1 or ref.shape != (n_objectives,):
            raise ValueError(
                f"ref_point must have one value per objective ({n_objectives}); got shape {ref.shape}"
            )
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.n_objectives = int(n_objectives)
        self.ref_point = ref
        self.capacity = int(capacity)
        self._values = np.zeros((0, n_objectives), dtype=np.float64)
        self._ids: list[int] = []
        self._payloads: list[Any] = []
        self._next_id = 0

    # ------------------------------------------------------------------ reading
    @property
    def values(self) -> np.ndarray:
        """``[K, M]`` return vectors of the entries, in insertion order (a copy)."""
        return self._values.copy()

    @property
    def payloads(self) -> list[Any]:
        """The entries' payloads, aligned with :attr:`values`."""
        return list(self._payloads)

    @property
    def ids(self) -> list[int]:
        """The entries' stable ids, aligned with :attr:`values`."""
        return list(self._ids)

    @property
    def next_id(self) -> int:
        """The id the next kept entry will get (ids count every entry ever kept)."""
        return self._next_id

    def __len__(self) -> int:
        return len(self._ids)

    def index_of(self, entry_id: int) -> int:
        """Position in :attr:`values` of the entry with id ``entry_id`` (KeyError if it was pruned)."""
        try:
            return self._ids.index(entry_id)
        except ValueError:
            raise KeyError(f"no archive entry with id {entry_id}; it was dominated or pruned") from None

    # ------------------------------------------------------------------ writing
    def add(self, value: ArrayLike, payload: Any = None) -> bool:
        """Offer one evaluated return vector; returns True if it is in the archive afterwards."""
        v = np.asarray(value, dtype=np.float64).reshape(-1)
        if v.shape != (self.n_objectives,):
            raise ValueError(f"value must have {self.n_objectives} objectives; got shape {v.shape}")
        if not np.all(np.isfinite(v)) or not np.all(v > self.ref_point):
            return False
        if len(self):
            ge = np.all(self._values >= v, axis=1)
            if np.any(ge):  # an entry dominates v or equals it
                return False
            keep = ~(np.all(v >= self._values, axis=1))  # v is not equal to any entry, so >= means dominates
            self._filter(keep)
        new_id = self._next_id
        self._next_id += 1
        self._values = np.vstack([self._values, v[None]])
        self._ids.append(new_id)
        self._payloads.append(payload)
        if len(self) > self.capacity:
            cd = crowding_distance(self._values)
            drop = int(np.argmin(cd))  # argmin returns the first minimum: the oldest entry on ties
            self._filter(np.arange(len(self)) != drop)
        return new_id in self._ids

    def _filter(self, keep: np.ndarray) -> None:
        self._values = self._values[keep]
        self._ids = [i for i, k in zip(self._ids, keep) if k]
        self._payloads = [p for p, k in zip(self._payloads, keep) if k]

    # ---------------------------------------------------------------- selection
    def best_for(self, weight: ArrayLike) -> int:
        """Index of the entry maximising ``w . G`` (ties: the lowest index); serves a preference ``w``."""
        if not len(self):
            raise ValueError("the archive is empty; add evaluated policies before serving a preference")
        w = np.asarray(weight, dtype=np.float64).reshape(-1)
        if w.shape != (self.n_objectives,):
            raise ValueError(f"weight must have {self.n_objectives} components; got shape {w.shape}")
        return int(np.argmax(self._values @ w))

    def select_sparse(self, k: int, exclude: Iterable[int] = ()) -> list[int]:
        """Ids of the ``k`` entries with the largest crowding distance whose id is not in ``exclude``.

        This is C-MORL's stage-2 selection: extend the policies in the
        sparsest parts of the front, each at most once (pass the ids already
        selected as ``exclude``). Ties keep insertion order. Fewer than ``k``
        ids are returned when fewer candidates remain.
        """
        excluded = set(exclude)
        if not len(self) or k <= 0:
            return []
        cd = crowding_distance(self._values)
        order = np.argsort(-cd, kind="stable")
        picked = [self._ids[i] for i in order if self._ids[i] not in excluded]
        return picked[:k]

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the archive; payloads are returned as they are (opaque)."""
        return {
            "n_objectives": self.n_objectives,
            "ref_point": self.ref_point.tolist(),
            "capacity": self.capacity,
            "values": self._values.tolist(),
            "ids": list(self._ids),
            "next_id": self._next_id,
            "payloads": list(self._payloads),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the archive's ``n_objectives`` must match."""
        if int(state["n_objectives"]) != self.n_objectives:
            raise ValueError(
                f"state has {state['n_objectives']} objectives but the archive has {self.n_objectives}"
            )
        values = np.asarray(state["values"], dtype=np.float64).reshape(-1, self.n_objectives)
        ids = [int(i) for i in state["ids"]]
        payloads = list(state.get("payloads", [None] * len(ids)))
        if not (len(values) == len(ids) == len(payloads)):
            raise ValueError("archive state has values, ids and payloads of different lengths")
        self.ref_point = np.asarray(state["ref_point"], dtype=np.float64).reshape(self.n_objectives)
        self.capacity = int(state["capacity"])
        self._values = values
        self._ids = ids
        self._payloads = payloads
        self._next_id = int(state["next_id"])

    def to_json(self, metadata: dict[str, Any] | None = None) -> str:
        """JSON text of the values, ids, reference point and capacity, plus optional ``metadata``.

        Payloads are left out (they are opaque and may not be JSON); the
        ``values`` and ``ref_point`` keys are what the benchmark harness reads.
        """
        state = self.state_dict()
        del state["payloads"]
        state["metadata"] = dict(metadata or {})
        return json.dumps(state, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ParetoArchive:
        """Rebuild an archive from :meth:`to_json` text; every payload is None."""
        state = json.loads(text)
        archive = cls(int(state["n_objectives"]), state["ref_point"], int(state["capacity"]))
        state["payloads"] = [None] * len(state["ids"])
        archive.load_state_dict(state)
        return archive
