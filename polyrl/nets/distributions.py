"""Light-weight action distributions with the few methods the algorithms need.

They avoid ``torch.distributions``' argument validation and object overhead
on the hot path; log-probabilities are summed over the action axis.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class Gaussian:
    """Diagonal Gaussian ``N(mean, exp(log_std)^2)`` over the last axis."""

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)
        self.std = self.log_std.exp()

    def sample(self) -> Tensor:
        with torch.no_grad():
            return self.rsample()

    def rsample(self) -> Tensor:
        return self.mean + self.std * torch.randn_like(self.mean)

    def log_prob(self, x: Tensor) -> Tensor:
        z = (x - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> Tensor:
        return (self.log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)

    def mode(self) -> Tensor:
        return self.mean


class TanhGaussian:
    """``tanh(u)`` with ``u ~ N(mean, std)``: actions in (-1, 1) (Haarnoja et al. 2018, appendix C).

    ``log pi(a) = log N(u) - sum log(1 - tanh(u)^2)``, with the correction
    computed as ``2 (log 2 - u - softplus(-2u))`` for numerical stability.
    """

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        self.base = Gaussian(mean, log_std)

    @staticmethod
    def _log_det(u: Tensor) -> Tensor:
        return (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)

    def rsample_with_log_prob(self) -> tuple[Tensor, Tensor]:
        """Reparameterised sample and its log-probability in one pass."""
        u = self.base.rsample()
        return torch.tanh(u), self.base.log_prob(u) - self._log_det(u)

    def sample(self) -> Tensor:
        with torch.no_grad():
            return torch.tanh(self.base.rsample())

    def log_prob(self, a: Tensor, eps: float = 1e-6) -> Tensor:
        a = a.clamp(-1.0 + eps, 1.0 - eps)
        u = torch.atanh(a)
        return self.base.log_prob(u) - self._log_det(u)

    def mode(self) -> Tensor:
        return torch.tanh(self.base.mean)

    def repeat_rows(self, n: int) -> TanhGaussian:
        """The same distributions with each row repeated ``n`` times (row ``i`` becomes rows ``i n .. i n + n - 1``):
        ``n`` samples per state from one network pass over the states."""
        return TanhGaussian(self.base.mean.repeat_interleave(n, dim=0), self.base.log_std.repeat_interleave(n, dim=0))


class Categorical:
    """Categorical distribution from unnormalised logits ``[..., A]``."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = torch.log_softmax(logits, dim=-1)

    def sample(self) -> Tensor:
        with torch.no_grad():
            return torch.multinomial(self.logits.exp().reshape(-1, self.logits.shape[-1]), 1).reshape(
                self.logits.shape[:-1]
            )

    def log_prob(self, a: Tensor) -> Tensor:
        return self.logits.gather(-1, a.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)

    def mode(self) -> Tensor:
        return self.logits.argmax(-1)
