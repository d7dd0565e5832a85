"""Returns and bootstrapped targets as pure functions.

Conventions shared by every function here:

* Time is the leading axis ``T``; any further leading axes (envs ``N``) and a
  trailing objective axis ``K`` (vector rewards) broadcast.
* ``terminated[t]`` means ``s_{t+1}`` is terminal: its value is zero, so the
  target does not bootstrap.
* ``done[t] = terminated[t] or truncated[t]`` means the episode ended after
  step ``t``. A truncated (time-limit) step still bootstraps from
  ``next_value[t] = V(s_{t+1})``, the value of the *final* observation, while
  the recursion is cut so nothing flows across the episode boundary.
* ``next_value[t]`` is ``V(s_{t+1})`` for every ``t``. With same-step
  auto-reset this is the value of the final observation at episode ends and
  of the following observation otherwise, so no special last-step case is
  needed.

Flags are float tensors of 0/1; they broadcast against a trailing objective
axis when ``reward`` has one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _expand_like(flag: Tensor, like: Tensor) -> Tensor:
    """Append singleton axes to ``flag`` so it broadcasts against ``like``."""
    while flag.dim() < like.dim():
        flag = flag.unsqueeze(-1)
    return flag


def gae(
    reward: Tensor,
    value: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16).

    ``delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)``
    ``A_t = delta_t + gamma lam (1 - done_t) A_{t+1}``

    Args:
        reward: ``[T, ...]`` rewards.
        value: ``[T, ...]`` ``V(s_t)``.
        next_value: ``[T, ...]`` ``V(s_{t+1})`` (final observation at episode ends).
        terminated: ``[T, ...]`` 1 where ``s_{t+1}`` is terminal.
        done: ``[T, ...]`` 1 where the episode ended (terminated or truncated).
        gamma: discount factor.
        lam: GAE lambda.

    Returns:
        ``(advantage, return)``, both ``[T, ...]``, with ``return = advantage + value``.
    """
    terminated = _expand_like(terminated, reward)
    done = _expand_like(done, reward)
    delta = reward + gamma * (1.0 - terminated) * next_value - value
    carry = gamma * lam * (1.0 - done)
    adv = torch.empty_like(delta)
    last = torch.zeros_like(delta[0])
    for t in range(delta.shape[0] - 1, -1, -1):
        last = delta[t] + carry[t] * last
        adv[t] = last
    return adv, adv + value


def lambda_returns(
    reward: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: float,
    lam: float,
) -> Tensor:
    """TD(lambda) returns (Sutton & Barto 2018, eq. 12.18; Dreamer's V^lambda).

    ``G_t = r_t + gamma (1 - terminated_t) [(1 - lam') V(s_{t+1}) + lam' G_{t+1}]``
    with ``lam' = lam (1 - done_t)``, and ``G_{T-1}`` bootstrapping from
    ``V(s_T)`` alone. ``lam = 1`` gives Monte-Carlo returns bootstrapped at the
    horizon; ``lam = 0`` gives one-step TD targets.

    Shapes as in :func:`gae`; returns ``[T, ...]``.
    """
    terminated = _expand_like(terminated, reward)
    done = _expand_like(done, reward)
    out = torch.empty_like(reward)
    nxt = next_value[-1]
    for t in range(reward.shape[0] - 1, -1, -1):
        mix = lam * (1.0 - done[t])
        nxt = reward[t] + gamma * (1.0 - terminated[t]) * ((1.0 - mix) * next_value[t] + mix * nxt)
        out[t] = nxt
    return out


def nstep_returns(
    reward: Tensor,
    terminated: Tensor,
    done: Tensor,
    *,
    gamma: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """n-step discounted reward sums over windows that stop at episode ends.

    For a window of ``n`` consecutive transitions starting at ``t``
    (``reward[:, i]`` is ``r_{t+i}``), sums ``sum_{i<k} gamma^i r_{t+i}``
    where ``k`` is ``n`` or one past the first ``done`` in the window. The
    TD target is then ``G + discount * (1 - terminated) * V(s_{t+k})``.

    Args:
        reward: ``[B, n, ...]`` rewards of the window.
        terminated: ``[B, n]`` termination flags of the window.
        done: ``[B, n]`` episode-end flags of the window.
        gamma: discount factor.

    Returns:
        ``(G, discount, last, terminated)``: ``G [B, ...]`` the discounted sum,
        ``discount [B]`` equal to ``gamma**k``, ``last [B]`` (long) the index
        ``k - 1`` of the transition whose ``next_obs`` bootstraps, and
        ``terminated [B]`` whether that bootstrap state is terminal.
    """
    b, n = done.shape[:2]
    # alive[:, i] = 1 while no episode end happened strictly before step i.
    ended_before = torch.cumsum(done, dim=1) - done
    alive = (ended_before == 0).to(reward.dtype)
    powers = gamma ** torch.arange(n, dtype=reward.dtype, device=reward.device)
    weights = alive * powers
    g = (reward * _expand_like(weights, reward)).sum(dim=1)
    k = alive.sum(dim=1).long()
    last = k - 1
    rows = torch.arange(b, device=reward.device)
    return g, gamma ** k.to(reward.dtype), last, terminated[rows, last]


def symlog(x: Tensor) -> Tensor:
    """``sign(x) log(1 + |x|)`` (DreamerV3, Hafner et al. 2023, eq. 9): compresses large magnitudes, identity near 0."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """Inverse of :func:`symlog`: ``sign(x) (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(x.abs())


def twohot(x: Tensor, bins: Tensor) -> Tensor:
    """Two-hot encoding of scalars on sorted ``bins`` (DreamerV3, eq. 10).

    ``x`` puts weight on its two neighbouring bins in proportion to closeness,
    so ``(twohot(x) * bins).sum(-1) == x`` inside the bin range; values
    outside are clipped to the end bins.

    Args:
        x: ``[...]`` values (already symlog-transformed when used with symlog bins).
        bins: ``[K]`` increasing bin centres.

    Returns:
        ``[..., K]`` weights summing to 1.
    """
    x = x.clamp(bins[0], bins[-1])
    hi = torch.searchsorted(bins, x.detach().contiguous(), right=True).clamp(1, len(bins) - 1)
    lo = hi - 1
    w_hi = ((x - bins[lo]) / (bins[hi] - bins[lo])).clamp(0.0, 1.0)
    out = torch.zeros(*x.shape, len(bins), dtype=x.dtype, device=x.device)
    out.scatter_(-1, lo.unsqueeze(-1), (1.0 - w_hi).unsqueeze(-1))
    out.scatter_add_(-1, hi.unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


def twohot_mean(logits: Tensor, bins: Tensor) -> Tensor:
    """The scalar a two-hot distribution predicts: ``symexp(sum_k softmax(logits)_k bins_k)``; ``[..., K] -> [...]``."""
    return symexp((torch.softmax(logits, -1) * bins).sum(-1))


def percentile_scale(returns: Tensor, scale: Tensor, *, decay: float, low: float = 0.05, high: float = 0.95) -> Tensor:
    """One EMA step of the return scale ``S = Per(R, 95) - Per(R, 5)`` (DreamerV3, eq. 7).

    ``S <- decay S + (1 - decay) (Per(R, high) - Per(R, low))``. Advantages are
    then divided by ``max(1, S)``, which shrinks large returns without
    amplifying small ones (sparse rewards).

    Args:
        returns: ``[...]`` a batch of lambda-returns (flattened).
        scale: ``[]`` the running scale.
        decay: EMA decay (0.99 in DreamerV3).

    Returns:
        ``[]`` the updated scale.
    """
    r = returns.detach().flatten().float()
    q = torch.quantile(r, torch.tensor([low, high], device=r.device))
    return decay * scale + (1.0 - decay) * (q[1] - q[0]).to(scale.dtype)
