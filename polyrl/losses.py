"""Losses and targets as pure functions: explicit arguments, no optimiser steps.

Every function broadcasts over leading batch axes and, where rewards enter,
over a trailing objective axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from polyrl.types import TransitionBatch


def ppo_clip_loss(log_prob: Tensor, old_log_prob: Tensor, advantage: Tensor, *, clip: float,
                  dim: int | tuple[int, ...] | None = None) -> Tensor:
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7), as a loss to minimise.

    ``L = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]`` with
    ``rho = exp(log_prob - old_log_prob)``. All inputs ``[B]`` (or with leading
    axes, e.g. ``[E, B]`` for an ensemble); the expectation is over ``dim``
    (default: every axis, a scalar).
    """
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantage
    loss = -torch.minimum(unclipped, clipped)
    return loss.mean() if dim is None else loss.mean(dim)


def value_loss(value: Tensor, target: Tensor, *, old_value: Tensor | None = None, clip: float | None = None,
               dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Squared value error, ``0.5 E[(V - target)^2]``, optionally clipped as in PPO2.

    With ``clip``, ``V`` is kept within ``old_value +- clip`` and the larger of
    the clipped and unclipped errors is used (OpenAI baselines' PPO2). The
    expectation is over ``dim`` (default: every axis, a scalar).
    """
    err = (value - target) ** 2
    if clip is not None and old_value is not None:
        clipped = old_value + torch.clamp(value - old_value, -clip, clip)
        err = torch.maximum(err, (clipped - target) ** 2)
    return 0.5 * (err.mean() if dim is None else err.mean(dim))


def log_barrier(value: Tensor, threshold: Tensor | float, *, t: float, floor: float = 1e-3) -> Tensor:
    """Interior-point log barrier for the constraint ``value >= threshold``, as a loss to minimise.

    ``B = -(1 / t) log(max(value - threshold, floor))`` elementwise (Boyd &
    Vandenberghe 2004, sec. 11.2; C-MORL, Liu et al. 2025, eq. 6): it grows
    without bound as ``value`` nears the threshold from above, so gradient
    steps on ``objective + B`` keep the constraint satisfied; ``t`` sharpens it.
    Below ``threshold + floor`` it is flat (no gradient): start feasible.
    """
    return -torch.log(torch.clamp(value - threshold, min=floor)) / t


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian, summed over the last axis: ``sum(log_std + 0.5 log(2 pi e))``."""
    return (log_std + 0.5 * math.log(2.0 * math.pi * math.e)).sum(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    """Entropy of a categorical distribution from unnormalised logits ``[..., A]``."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def td_target(reward: Tensor, next_value: Tensor, *, discount: Tensor | float, terminated: Tensor) -> Tensor:
    """One- or n-step TD target ``r + discount (1 - terminated) V(s')``.

    ``discount`` is ``gamma`` (or ``gamma**k`` for a k-step return); truncated
    transitions are not terminal and therefore bootstrap.
    """
    return reward + discount * (1.0 - terminated) * next_value


def soft_value(next_q: Tensor, next_log_prob: Tensor, *, alpha: Tensor | float) -> Tensor:
    """Soft state value ``min_k Q_k(s', a') - alpha log pi(a'|s')`` (Haarnoja et al. 2018b, eq. 3).

    Args:
        next_q: ``[E, B]`` ensemble of Q estimates (the min over ``E`` is clipped double-Q).
        next_log_prob: ``[B]``.
        alpha: entropy temperature.
    """
    return next_q.min(dim=0).values - alpha * next_log_prob


def soft_q_target(
    reward: Tensor,
    next_q: Tensor,
    next_log_prob: Tensor,
    *,
    alpha: Tensor | float,
    discount: Tensor | float,
    terminated: Tensor,
) -> Tensor:
    """SAC critic target ``r + discount (1 - terminated) (min_k Q'_k(s', a') - alpha log pi(a'|s'))``."""
    return td_target(reward, soft_value(next_q, next_log_prob, alpha=alpha), discount=discount, terminated=terminated)


def double_q_target(
    reward: Tensor,
    next_q_online: Tensor,
    next_q_target: Tensor,
    *,
    discount: Tensor | float,
    terminated: Tensor,
) -> Tensor:
    """Double DQN target (van Hasselt et al. 2016): the online net picks ``a'``, the target net scores it.

    ``next_q_online``, ``next_q_target``: ``[B, A]``.
    """
    best = next_q_online.argmax(dim=-1, keepdim=True)
    return td_target(reward, next_q_target.gather(-1, best).squeeze(-1), discount=discount, terminated=terminated)


def temperature_loss(log_alpha: Tensor, log_prob: Tensor, *, target_entropy: float) -> Tensor:
    """SAC automatic entropy tuning (Haarnoja et al. 2018b, eq. 18): ``-E[log_alpha (log pi + H_target)]``."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


@torch.no_grad()
def polyak_update(target: Iterable[Tensor], online: Iterable[Tensor], *, tau: float) -> None:
    """In place ``target <- (1 - tau) target + tau online`` over matching tensors (one fused call)."""
    t, o = list(target), list(online)
    if t:
        torch._foreach_lerp_(t, o, tau)


def expectile_loss(diff: Tensor, *, expectile: float) -> Tensor:
    """Asymmetric squared loss ``E[|tau - 1(u < 0)| u^2]`` (IQL, Kostrikov et al. 2021, eq. 5), ``u = diff``."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def td3_critic_loss(
    critic: Callable[[Tensor, Tensor], Tensor],
    critic_target: Callable[[Tensor, Tensor], Tensor],
    actor_target: Callable[[Tensor], Tensor],
    batch: TransitionBatch,
    *,
    target_noise: float,
    noise_clip: float,
) -> tuple[Tensor, Tensor]:
    """TD3's critic loss (Fujimoto et al. 2018, section 5): clipped double-Q with target policy smoothing.

    ``y = r + discount (1 - d) min_k Q'_k(s', clip(pi'(s') + clip(eps, -c, c), -1, 1))``,
    ``eps ~ N(0, target_noise)``; returns ``(sum_k E[(Q_k(s, a) - y)^2], Q [E, B])``.
    Shared by TD3, TD3+BC and PRDC, whose critics are identical.
    """
    with torch.no_grad():
        next_action = actor_target(batch.next_obs)
        noise = (target_noise * torch.randn_like(next_action)).clamp(-noise_clip, noise_clip)
        next_action = (next_action + noise).clamp(-1.0, 1.0)
        next_q = critic_target(batch.next_obs, next_action).min(0).values
        target = td_target(batch.reward, next_q, discount=batch.discount, terminated=batch.terminated)
    q = critic(batch.obs, batch.action)
    return (q - target).pow(2).mean(1).sum(), q


def iql_value_loss(target_q: Tensor, value: Tensor, *, expectile: float) -> tuple[Tensor, Tensor]:
    """IQL's value regression (Kostrikov et al. 2021, eq. 5): ``L_V = E[L2^tau(Q'(s, a) - V(s))]``.

    ``target_q [B]`` is the target critics' minimum at dataset actions (no gradient), ``value [B]`` is ``V(s)``.
    Returns ``(L_V, advantage Q'(s, a) - V(s))``; the advantage still carries ``V``'s gradient.
    """
    adv = target_q - value
    return expectile_loss(adv, expectile=expectile), adv


def iql_q_loss(q: Tensor, reward: Tensor, next_value: Tensor, *, discount: Tensor | float, terminated: Tensor) -> Tensor:
    """IQL's critic regression (eq. 6): ``L_Q = sum_k E[(Q_k(s, a) - r - discount (1 - d) V(s'))^2]``.

    ``q [E, B]`` from the critic ensemble, ``reward [B]`` (already scaled), ``next_value [B]`` is ``V(s')`` (no gradient).
    """
    target = td_target(reward, next_value, discount=discount, terminated=terminated)
    return (q - target).pow(2).mean(1).sum()
