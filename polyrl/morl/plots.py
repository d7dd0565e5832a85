"""Pareto-front plots written as PNG files (matplotlib, Agg canvas)."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from polyrl.io import write_text_atomic
from polyrl.morl.metrics import non_dominated

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_front"]

PANEL_INCHES = 4.0
"""Width and height of one subplot, in inches."""
DPI = 100
"""Resolution of the written PNG; a 2-objective plot is ``400 x 400`` pixels."""
MARKERS = ("o", "x", "^", "+", "v", "D")
"""Marker of the main set, then of each overlay in turn."""


def _front_steps(points: np.ndarray, ref: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Corner points of the attainment curve of a 2-D set under maximisation.

    Sorted by the first objective ascending, non-dominated points have the
    second objective descending; the boundary of the region they dominate
    drops vertically at each point and runs horizontally to the next. With a
    reference point the curve starts on the line ``x = ref_x`` and ends on
    ``y = ref_y``, closing the hypervolume region.
    """
    front = points[non_dominated(points)]
    front = front[np.argsort(front[:, 0], kind="stable")]
    xs: list[float] = []
    ys: list[float] = []
    if ref is not None:
        xs.append(float(ref[0]))
        ys.append(float(front[0, 1]))
    for i, (x, y) in enumerate(front):
        xs.append(float(x))
        ys.append(float(y))
        if i + 1 < len(front):
            xs.append(float(x))
            ys.append(float(front[i + 1, 1]))
    if ref is not None:
        xs.append(float(front[-1, 0]))
        ys.append(float(ref[1]))
    return np.asarray(xs), np.asarray(ys)


def _panel(
    ax: Axes,
    sets: Sequence[tuple[str, np.ndarray]],
    i: int,
    j: int,
    names: Sequence[str],
    ref: np.ndarray | None,
    steps: bool,
) -> None:
    for k, (label, pts) in enumerate(sets):
        if not len(pts):
            continue
        color = f"C{k}"
        marker = MARKERS[k % len(MARKERS)]
        ax.scatter(pts[:, i], pts[:, j], s=18, color=color, marker=marker, label=f"{label} ({len(pts)})", zorder=3)
        if steps:
            r = None if ref is None else ref[[i, j]]
            xs, ys = _front_steps(pts[:, [i, j]], r)
            ax.plot(xs, ys, color=color, lw=1.0, alpha=0.8)
    if ref is not None:
        ax.scatter([ref[i]], [ref[j]], s=30, color="0.3", marker="s", label="reference point", zorder=3)
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.grid(alpha=0.3)


def plot_front(
    values: ArrayLike,
    path: str | Path,
    *,
    ref_point: ArrayLike | None = None,
    title: str = "Pareto front",
    label: str = "front",
    overlays: Mapping[str, ArrayLike] | None = None,
    objective_names: Sequence[str] | None = None,
) -> Path:
    """Plot a set of return vectors and write it to ``path`` as a PNG.

    With 2 objectives: a scatter of the points and the front drawn as a step
    line (the boundary of the dominated region, closed at ``ref_point`` if
    given). With ``M >= 3`` objectives: a grid of the ``M (M - 1) / 2``
    pairwise projections, one scatter per pair of objectives (a projection of
    a front is not a front, so no step line is drawn). ``overlays`` adds more
    sets with their own colours and markers (e.g. stage-1 points against the
    final archive, or a baseline's front), named in the legend.

    The figure size is fixed (``PANEL_INCHES`` per panel at ``DPI``), so a
    2-objective plot is always ``400 x 400`` pixels; the file is written
    atomically.

    Args:
        values: ``[N, M]`` return vectors, ``M >= 2``.
        path: output PNG file.
        ref_point: optional ``[M]`` reference point, drawn and used to close the 2-D step line.
        title: figure title.
        label: legend name of ``values``.
        overlays: optional ``{legend name: [N_k, M] return vectors}``.
        objective_names: optional axis labels, one per objective (default ``objective 1..M``).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = np.asarray(values, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"values must be [N, M] with M >= 2 objectives; got shape {pts.shape}")
    m = pts.shape[1]
    sets = [(label, pts)]
    for name, other in (overlays or {}).items():
        o = np.asarray(other, dtype=np.float64).reshape(-1, m)
        sets.append((name, o))
    ref = None if ref_point is None else np.asarray(ref_point, dtype=np.float64).reshape(m)
    names = list(objective_names) if objective_names is not None else [f"objective {k + 1}" for k in range(m)]
    if len(names) != m:
        raise ValueError(f"objective_names has {len(names)} names for {m} objectives")

    pairs = list(itertools.combinations(range(m), 2))
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(PANEL_INCHES * ncols, PANEL_INCHES * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (i, j) in zip(axes.flat, pairs):
        _panel(ax, sets, i, j, names, ref, steps=(m == 2))
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    path = Path(path)
    write_text_atomic(path, buf.getvalue())
    return path
