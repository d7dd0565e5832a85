"""DreamSmooth: temporally smoothed rewards as the reward model's training target (Lee et al., ICLR 2024).

Predicting a sparse or delayed reward at the exact step it arrives is hard
for a world model; predicting a smoothed version is easy and leaves the
optimal policy almost unchanged (the sum of rewards is preserved by the
symmetric kernels). Each episode's rewards are smoothed on their own, before
the reward head is trained on them; the raw rewards are still what is logged.

Kernels (the authors' defaults in brackets):

* ``gaussian``: ``scipy.ndimage.gaussian_filter1d(r, sigma, mode="nearest")`` (sigma = 3);
* ``uniform``: a centred moving average of ``window`` steps, edges repeat the end values (window 9);
* ``ema``: the causal ``r~_t = alpha r_t + (1 - alpha) r~_{t-1}``, ``r~_0 = r_0`` (alpha = 0.33).

An ``amount`` of 0 (or ``kind="none"``) returns the rewards unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

KINDS = ("none", "gaussian", "uniform", "ema")


def smooth_rewards(rewards: np.ndarray, kind: str, amount: float) -> np.ndarray:
    """Smooth one episode's rewards.

    Args:
        rewards: ``[T]`` rewards of one episode, in order.
        kind: ``"gaussian"``, ``"uniform"``, ``"ema"`` or ``"none"``.
        amount: sigma (gaussian), window length in steps (uniform) or alpha in (0, 1] (ema); 0 disables.

    Returns:
        ``[T]`` float32 smoothed rewards.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown reward smoothing {kind!r}; choose one of {', '.join(KINDS)}")
    r = np.asarray(rewards, dtype=np.float64)
    if kind == "none" or amount == 0 or r.size == 0:
        return r.astype(np.float32)
    if kind == "gaussian":
        out = gaussian_filter1d(r, float(amount), mode="nearest")
    elif kind == "uniform":
        out = uniform_filter1d(r, int(amount), mode="nearest")
    else:
        if not 0.0 < amount <= 1.0:
            raise ValueError(f"ema smoothing needs 0 < alpha <= 1, got {amount}")
        out = np.empty_like(r)
        acc = r[0]
        for t, x in enumerate(r):
            acc = amount * x + (1.0 - amount) * acc
            out[t] = acc
    return out.astype(np.float32)
