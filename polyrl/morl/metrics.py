"""Multi-objective metrics as pure numpy functions.

Conventions shared by every function here:

* A set of return vectors is an array ``points`` of shape ``[N, M]``: ``N``
  policies, ``M`` objectives. Every objective is **maximised**.
* ``a`` *dominates* ``b`` when ``a >= b`` in every objective and ``a > b`` in
  at least one. The Pareto front of a set is its non-dominated subset.
* Nothing here reads or writes state; the functions take arrays and return
  arrays or floats, so they can score an archive, a baseline's front, or a
  hand-written list equally.

The metrics are the ones used to compare multi-objective RL methods in
PGMORL (Xu et al., ICML 2020) and C-MORL (Liu et al., ICLR 2025):
hypervolume (Zitzler & Thiele 1999), expected utility (Zintgraf et al. 2015)
and sparsity (Xu et al. 2020).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "dominates",
    "crowding_distance",
    "expected_utility",
    "hypervolume",
    "non_dominated",
    "simplex_grid",
    "sparsity",
]


def _as_points(points: ArrayLike, name: str = "points") -> np.ndarray:
    """Return ``points`` as a float64 ``[N, M]`` array (an empty input becomes ``[0, M]``)."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        return arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, M] of return vectors; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; drop those policies before scoring the set")
    return arr


def non_dominated(points: ArrayLike) -> np.ndarray:
    """Boolean mask of the Pareto-optimal (non-dominated) rows of ``points`` under maximisation.

    Row ``i`` is kept when no row ``j`` dominates it (``G_j >= G_i`` everywhere
    and ``G_j > G_i`` somewhere). Exact duplicates do not dominate each other,
    so of a group of identical non-dominated rows only the **first** (lowest
    index) is kept: the mask selects a set, not a multiset.

    Cost is ``O(N^2 M)`` time and ``O(N^2)`` memory (vectorised pairwise
    comparison), fine for the few hundred points of a Pareto archive.

    Args:
        points: ``[N, M]`` return vectors.

    Returns:
        ``[N]`` boolean mask, True for the rows that form the front.
    """
    p = _as_points(points)
    n = p.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    ge = np.all(p[:, None, :] >= p[None, :, :], axis=-1)  # ge[j, i]: G_j >= G_i everywhere
    gt = np.any(p[:, None, :] > p[None, :, :], axis=-1)  # gt[j, i]: G_j > G_i somewhere
    dominated = np.any(ge & gt, axis=0)
    # Duplicates: row i is dropped when an earlier row j < i equals it.
    equal = ge & ~gt
    earlier = np.tril(np.ones((n, n), dtype=bool), k=-1).T  # earlier[j, i] = j < i
    duplicate = np.any(equal & earlier, axis=0)
    return ~(dominated | duplicate)


def _hv2d(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume by a sweep; ``p`` must already strictly dominate ``ref``."""
    order = np.argsort(-p[:, 0], kind="stable")  # x descending
    x = p[order, 0]
    y = p[order, 1]
    # Sweeping from the largest x, a point adds the strip between the best y so far and its own y.
    best_y = np.maximum.accumulate(y)
    prev_best = np.concatenate(([ref[1]], best_y[:-1]))
    return float(np.sum((x - ref[0]) * np.maximum(y - prev_best, 0.0)))


def _hv_slicing(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume for ``M >= 2`` by slicing along the last objective (HSO).

    Sort the points by the last objective, descending: ``z_1 >= z_2 >= ...``.
    Between ``z_{k+1}`` and ``z_k`` the dominated region's cross-section is the
    ``(M-1)``-dimensional hypervolume of the first ``k`` points projected onto
    the other objectives, so ``HV = sum_k (z_k - z_{k+1}) HV_{M-1}(proj(p_1..p_k))``
    with ``z_{N+1} = ref_M`` (While et al., IEEE TEC 2006, "Hypervolume by
    Slicing Objectives"). Each projected set is reduced to its non-dominated
    rows before recursing, which keeps the recursion small in practice.
    """
    m = p.shape[1]
    if m == 2:
        return _hv2d(p, ref)
    order = np.argsort(-p[:, -1], kind="stable")
    p = p[order]
    z = np.concatenate((p[:, -1], [ref[-1]]))
    total = 0.0
    for k in range(1, p.shape[0] + 1):
        depth = z[k - 1] - z[k]
        if depth <= 0.0:
            continue  # points with equal last objective share one slice
        proj = p[:k, :-1]
        if proj.shape[1] > 2:  # the 2-D sweep already skips dominated points
            proj = proj[non_dominated(proj)]
        total += depth * _hv_slicing(proj, ref[:-1])
    return total


def hypervolume(points: ArrayLike, ref: ArrayLike) -> float:
    """Hypervolume of ``points`` with respect to the reference point ``ref`` (maximisation).

    ``HV(P) = Lebesgue measure of  U_{G in P} [ref_1, G_1] x ... x [ref_M, G_M]``,
    the volume of objective space dominated by the set and dominating ``ref``
    (Zitzler & Thiele 1999). Points that do not strictly dominate ``ref`` (some
    ``G_m <= ref_m``) are ignored: their box is empty.

    The value is exact in every dimension: a sweep for ``M = 2`` and
    hypervolume-by-slicing-objectives (While et al. 2006) for ``M >= 3``,
    which recurses down to the 2-D sweep. Around 200 non-dominated points in
    3 objectives take milliseconds and in 4 objectives well under a second.

    Args:
        points: ``[N, M]`` return vectors.
        ref: ``[M]`` reference point, worse than every point of interest.

    Returns:
        The hypervolume, 0.0 for an empty set.
    """
    p = _as_points(points)
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if p.shape[0] == 0:
        return 0.0
    if r.shape[0] != p.shape[1]:
        raise ValueError(f"ref has {r.shape[0]} objectives but points have {p.shape[1]}; pass one value per objective")
    if r.shape[0] == 1:
        return float(max(0.0, p[:, 0].max() - r[0]))
    p = p[np.all(p > r, axis=1)]
    if p.shape[0] == 0:
        return 0.0
    p = p[non_dominated(p)]
    return float(_hv_slicing(p, r))


def simplex_grid(n_objectives: int, step: float | int = 0.1) -> np.ndarray:
    """All weight vectors on a regular grid of the probability simplex.

    Components are multiples of ``1 / D`` summing to 1, where ``D`` is the
    number of divisions: ``D = step`` when ``step`` is an ``int``, otherwise
    ``D = round(1 / step)`` (a float step must divide 1). There are
    ``C(D + M - 1, M - 1)`` vectors, in lexicographic order of their integer
    numerators ``(k_1, ..., k_M)``, ascending, so the order is deterministic:
    for ``M = 2, step = 0.5`` it is ``[0, 1], [0.5, 0.5], [1, 0]``.

    Args:
        n_objectives: ``M >= 1``.
        step: grid spacing as a float in ``(0, 1]``, or the number of divisions as an int.

    Returns:
        ``[K, M]`` float64 weights, each row summing to 1.
    """
    if n_objectives < 1:
        raise ValueError(f"n_objectives must be >= 1; got {n_objectives}")
    if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
        divisions = int(step)
    else:
        if not 0.0 < float(step) <= 1.0:
            raise ValueError(f"step must be in (0, 1] (or an int number of divisions); got {step}")
        divisions = int(round(1.0 / float(step)))
        if abs(divisions * float(step) - 1.0) > 1e-9:
            raise ValueError(f"step {step} does not divide 1; use e.g. 0.1, 0.05 or an int number of divisions")
    if divisions < 1:
        raise ValueError(f"the number of divisions must be >= 1; got {divisions}")
    rows = [
        c + (divisions - sum(c),)
        for c in itertools.product(range(divisions + 1), repeat=n_objectives - 1)
        if sum(c) <= divisions
    ]
    return np.asarray(rows, dtype=np.float64).reshape(-1, n_objectives) / divisions


def expected_utility(
    points: ArrayLike, weights: ArrayLike | None = None, *, step: float | int = 0.05
) -> float:
    """Expected utility of a set of policies under linear preferences (Zintgraf et al. 2015).

    ``EU(P) = mean_{w in W} max_{G in P} w . G``: the average, over a set of
    preference vectors ``W``, of the best scalarised return the set offers.
    With ``weights=None``, ``W = simplex_grid(M, step)`` (21 vectors for
    ``M = 2`` and 231 for ``M = 3`` at the default ``step = 0.05``). EU uses
    every point, dominated or not (dominated points never win the max, so
    the value is the same).

    Args:
        points: ``[N, M]`` return vectors, ``N >= 1``.
        weights: optional ``[K, M]`` preference vectors; overrides ``step``.
        step: simplex grid spacing (see :func:`simplex_grid`) when ``weights`` is None.

    Returns:
        The expected utility.
    """
    p = _as_points(points)
    if p.shape[0] == 0:
        raise ValueError("expected utility of an empty set is undefined; pass at least one return vector")
    w = simplex_grid(p.shape[1], step) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != p.shape[1]:
        raise ValueError(f"weights must be [K, {p.shape[1]}]; got shape {w.shape}")
    return float(np.mean(np.max(w @ p.T, axis=1)))


def sparsity(points: ArrayLike) -> float:
    """Sparsity of the Pareto front of ``points`` (Xu et al., PGMORL, ICML 2020, eq. 6).

    ``SP(P) = 1 / (|P| - 1) * sum_{j=1}^{M} sum_{i=2}^{|P|} (G~_j[i] - G~_j[i-1])^2``,
    where ``P`` is the non-dominated subset (duplicates removed, see
    :func:`non_dominated`) and ``G~_j`` is objective ``j``'s values over ``P``
    sorted ascending. Lower is denser. Values are **raw, not normalised**, as
    in PGMORL's and C-MORL's definitions (and the C-MORL spec), so SP is in
    squared return units and only comparable between fronts on the same task.

    Args:
        points: ``[N, M]`` return vectors.

    Returns:
        The sparsity; 0.0 when the front has fewer than two points.
    """
    p = _as_points(points)
    if p.shape[0] == 0:
        return 0.0
    front = p[non_dominated(p)]
    if front.shape[0] < 2:
        return 0.0
    gaps = np.diff(np.sort(front, axis=0), axis=0)
    return float(np.sum(gaps**2) / (front.shape[0] - 1))


def crowding_distance(points: ArrayLike) -> np.ndarray:
    """Crowding distance of every row of ``points`` (Deb et al., NSGA-II, IEEE TEC 2002).

    Per objective ``j``, sort the points by ``G_j`` (stable, so ties keep index
    order); the two boundary points get ``+inf`` and an interior point gets
    ``(G_j[next] - G_j[prev]) / (max_j - min_j)``. The distance is the sum over
    objectives. An objective with ``max_j == min_j`` contributes 0 to every
    point (no boundary ``+inf`` either), since it does not separate them.
    Larger means more isolated; C-MORL selects the most isolated policies to
    extend and prunes the least isolated when the archive is full.

    Args:
        points: ``[N, M]`` return vectors (normally a front, but any set works).

    Returns:
        ``[N]`` float64 distances.
    """
    p = _as_points(points)
    n, m = p.shape
    dist = np.zeros(n, dtype=np.float64)
    for j in range(m):
        span = p[:, j].max() - p[:, j].min() if n else 0.0
        if span <= 0.0:
            continue
        order = np.argsort(p[:, j], kind="stable")
        v = p[order, j]
        contrib = np.empty(n, dtype=np.float64)
        contrib[0] = contrib[-1] = np.inf
        contrib[1:-1] = (v[2:] - v[:-2]) / span
        dist[order] += contrib
    return dist


def dominates(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> bool:
    """True when return vector ``a`` Pareto-dominates ``b`` (maximisation)."""
    a_ = np.asarray(a, dtype=np.float64)
    b_ = np.asarray(b, dtype=np.float64)
    return bool(np.all(a_ >= b_) and np.any(a_ > b_))
