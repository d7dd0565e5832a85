"""Statistics of one configuration's final metric across seeds: interquartile mean and a bootstrap confidence interval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of the sorted values, with fractional weights at the edges.

    The lowest and highest ``n/4`` observations are cut; when ``n/4`` is not
    whole, the observation straddling each cut counts with the fraction of it
    that lies inside. For ``n = 4k`` this is the mean of the middle ``2k``
    values (``scipy.stats.trim_mean(x, 0.25)``, rliable's IQM); otherwise it
    is the exact mean of the middle half of the empirical distribution, e.g.
    ``n = 2``: the mean, ``n = 3``: ``(x1/4 + x2 + x3/4) / 1.5``, ``n = 1``:
    the value.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("iqm of no values")
    lo, hi = n / 4, 3 * n / 4
    # observation i covers [i, i+1) of [0, n); its weight is the part of that interval inside [lo, hi]
    i = np.arange(n)
    weights = np.clip(np.minimum(i + 1, hi) - np.maximum(i, lo), 0.0, None)
    return float(np.dot(weights, x) / weights.sum())


def seed_stats(values: Sequence[float], *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Across-seed statistics of one configuration's final metric.

    ``std`` is the sample standard deviation (``ddof=1``; ``None`` for one
    value); ``ci_low``/``ci_high`` is the percentile bootstrap interval of the
    mean (:func:`polyrl.ope.bootstrap_ci`, ``n_boot`` resamples of the seeds);
    with fewer than 4 seeds it is ``[min, max]`` at 95%, so read it as a rough guide.
    """
    from polyrl.ope import bootstrap_ci

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return {"n": 0, "mean": None, "std": None, "iqm": None, "ci_low": None, "ci_high": None, "min": None, "max": None}
    low, high = bootstrap_ci(x, confidence=confidence, n_boot=n_boot, seed=seed)
    return {"n": len(x), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else None, "iqm": iqm(x),
            "ci_low": low, "ci_high": high, "min": float(x.min()), "max": float(x.max())}
