"""Running mean/variance normalisation of observations, kept as module buffers so it is saved with the agent."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def merge_moments(count: Tensor, mean: Tensor, m2: Tensor, batch_count: float, batch_mean: Tensor, batch_m2: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Merge a batch's ``(count, mean, M2)`` into running ones (Chan, Golub & LeVeque 1979, the parallel formula).

    ``M2`` is the sum of squared deviations (``var * count``); all tensors broadcast, so one call merges the
    statistics of many streams at once (e.g. ``[P, O]``: one per policy of a population). Returns the new
    ``(count, mean, M2)``: ``n = n_a + n_b``, ``mean = mean_a + delta n_b / n``,
    ``M2 = M2_a + M2_b + delta^2 n_a n_b / n`` with ``delta = mean_b - mean_a``.
    """
    total = count + batch_count
    delta = batch_mean - mean
    return total, mean + delta * batch_count / total, m2 + batch_m2 + delta.pow(2) * count * batch_count / total


class RunningNorm(nn.Module):
    """``(x - mean) / sqrt(var + eps)``, clipped, with statistics updated from data.

    Statistics are float64 buffers merged with the parallel-variance formula
    (Chan et al. 1979), so they are exact for any batch split and are saved
    and restored with the agent's weights. ``frozen`` stops updates (e.g. the
    dataset's statistics during offline-to-online fine-tuning). When
    ``enabled`` is false the module is the identity.
    """

    def __init__(self, shape: tuple[int, ...], *, enabled: bool = True, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.enabled, self.clip, self.eps = enabled, clip, eps
        self.frozen = False
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: np.ndarray | Tensor) -> None:
        """Merge the statistics of a batch ``[B, *shape]``."""
        if not self.enabled or self.frozen:
            return
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float64, device=self.mean.device)
        x = x.reshape(-1, *self.mean.shape)
        n = x.shape[0]
        b_mean, b_var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + b_var * n + delta.pow(2) * self.count * n / total) / total)
        self.count.copy_(total)

    def set(self, mean: np.ndarray | Tensor, var: np.ndarray | Tensor, count: float = 1.0) -> None:
        """Set the statistics explicitly (e.g. from a dataset)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float64))
        self.var.copy_(torch.as_tensor(var, dtype=torch.float64))
        self.count.fill_(count)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        mean, scale = self._affine(x.dtype)
        return ((x - mean) * scale).clamp(-self.clip, self.clip)

    def _affine(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(mean, rsqrt(var + eps))`` in ``dtype``, recomputed only when the statistics change.

        Every batch passes through here twice; converting and combining the float64 statistics each time
        was most of the cost. The cache remembers the very buffer objects and their version counters, so
        any in-place write (``update``, ``set``, ``load_state_dict``) or a replaced buffer (device moves)
        recomputes it; a stale pair is never used.
        """
        mean, var = self.mean, self.var
        cached = self.__dict__.get("_affine_cache")  # a plain attribute: no nn.Module lookup, not in state_dict
        if (cached is None or cached[0] is not mean or cached[1] is not var or cached[2] != dtype
                or cached[3] != (mean._version, var._version)):
            cached = (mean, var, dtype, (mean._version, var._version), (mean.to(dtype), torch.rsqrt(var.to(dtype) + self.eps)))
            self.__dict__["_affine_cache"] = cached
        return cached[4]

    def inverse(self, x: Tensor) -> Tensor:
        """Raw observations from normalised ones, ``x sqrt(var + eps) + mean`` (exact inside the clip range)."""
        if not self.enabled:
            return x
        return x * torch.sqrt(self.var.to(x.dtype) + self.eps) + self.mean.to(x.dtype)
