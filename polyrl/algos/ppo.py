"""Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

Per iteration, with a rollout of ``T x N`` steps from the current policy:

1. advantages by GAE (``polyrl.returns.gae``), truncated steps bootstrapping
   from ``V(final obs)``, terminal steps not bootstrapping;
2. for ``n_epochs`` epochs over shuffled minibatches, minimise

   ``L = L_clip(theta) + c_v * L_V - c_e * H[pi]``

   with ``L_clip = -E[min(rho A, clip(rho, 1-eps, 1+eps) A)]`` (eq. 7),
   ``rho = pi(a|s) / pi_old(a|s)``, and ``L_V = 0.5 (V(s) - R)^2``.

Implementation details (Engstrom et al. 2020; Huang et al. 2022, "The 37
implementation details of PPO"), each a config field: separate actor and
critic MLPs with orthogonal init (evaluated as one 2-member ensemble, see
``ActorCritic``), per-minibatch advantage normalisation,
global gradient clipping, linear learning-rate annealing, optional value
clipping, optional early stop on approximate KL (``(rho - 1) - log rho``).

Deviations from the paper: none in the objective; continuous actions use an
unsquashed Gaussian with a state-independent log-std, clipped to the action
bounds by the environment wrapper (as in the authors' baselines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polyrl.algos.base import AlgoConfig, Algorithm, adam
from polyrl.data.rollout import Rollout
from polyrl.losses import ppo_clip_loss, value_loss
from polyrl.nets.heads import ActorCritic
from polyrl.returns import gae


@dataclass(frozen=True)
class PPOConfig(AlgoConfig):
    learning_rate: float = 3e-4
    """Adam step size (shared by actor and critic)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the training budget."""
    n_steps: int = 2048
    """Steps collected per env per rollout."""
    batch_size: int = 64
    """Minibatch size."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """Surrogate clipping epsilon."""
    anneal_clip: bool = False
    """Decay the clipping epsilon linearly to 0 over the training budget."""
    clip_range_vf: float | None = None
    """Clip value updates to +- this around the old value (None: no clipping)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient c_e."""
    vf_coef: float = 0.5
    """Value loss coefficient c_v."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    normalize_advantage: bool = True
    """Standardise advantages per minibatch."""
    target_kl: float | None = None
    """Stop the epoch loop once the approximate KL exceeds this (None: never)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and of the critic."""
    activation: str = "tanh"
    """Hidden activation."""
    init_log_std: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions)."""


@dataclass
class PPOState:
    model: ActorCritic
    optimizer: torch.optim.Optimizer


class PPO(Algorithm):
    """PPO-clip for Box and Discrete actions."""

    name = "ppo"
    Config = PPOConfig
    action_kinds = ("box", "discrete")
    regime = "on_policy"
    cfg: PPOConfig

    def build(self) -> PPOState:
        c, spec = self.cfg, self.spec
        model = ActorCritic(spec.obs_dim, spec.action_dim, c.hidden, c.activation, discrete=spec.action_kind == "discrete",
                            init_log_std=c.init_log_std).to(self.device)
        return PPOState(model, adam(model.parameters(), c.learning_rate, eps=1e-5))

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        dist, _ = self.state.model(obs)
        return dist.mode() if deterministic else dist.sample()

    @torch.no_grad()
    def policy_step(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``(action, log_prob, value)`` for collection."""
        dist, value = self.state.model(obs)
        action = dist.sample()
        return action, dist.log_prob(action), value

    @torch.no_grad()
    def value(self, obs: Tensor) -> Tensor:
        return self.state.model(obs)[1]

    def update(self, batch: Rollout) -> dict[str, float | Tensor]:
        c, s = self.cfg, self.state
        frac = 1.0 - min(self.env_steps / max(self.total_steps, 1), 1.0)
        if c.anneal_lr:
            for group in s.optimizer.param_groups:
                group["lr"] = frac * c.learning_rate
        clip = c.clip_range * frac if c.anneal_clip else c.clip_range

        obs, action, old_log_prob, old_value, advantage, returns = flat_rollout(batch, gamma=c.gamma, lam=c.gae_lambda)

        def evaluate(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            dist, value = s.model(o)
            return dist.log_prob(a), dist.entropy(), value

        stats, n = ppo_epochs(evaluate, s.optimizer, [list(s.model.parameters())], obs, action, old_log_prob, old_value,
                              advantage, returns, n_epochs=c.n_epochs, batch_size=c.batch_size, clip=clip,
                              clip_vf=c.clip_range_vf, vf_coef=c.vf_coef, ent_coef=c.ent_coef,
                              max_grad_norm=c.max_grad_norm, normalize_advantage=c.normalize_advantage, target_kl=c.target_kl)
        self.n_updates += n
        with torch.no_grad():
            explained = 1.0 - (returns - old_value).var() / (returns.var() + 1e-8)
        return {
            "loss/policy": stats[0], "loss/value": stats[1], "train/entropy": stats[2],
            "train/clip_fraction": stats[3], "train/approx_kl": stats[4],
            "train/explained_variance": explained, "train/learning_rate": s.optimizer.param_groups[0]["lr"],
        }


def flat_rollout(batch: Rollout, *, gamma: float, lam: float, reward_scale: float | Tensor = 1.0) -> tuple[Tensor, ...]:
    """GAE over a ``[T, N]`` rollout (rewards times ``reward_scale``), then every field flattened to ``[T * N, ...]``:
    ``(obs, action, old_log_prob, old_value, advantage, returns)``."""
    advantage, returns = gae(batch.reward * reward_scale, batch.value, batch.next_value, batch.terminated, batch.done,
                             gamma=gamma, lam=lam)
    return tuple(x.flatten(0, 1) for x in (batch.obs, batch.action, batch.log_prob, batch.value, advantage, returns))


def ppo_epochs(evaluate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]], optimizer: torch.optim.Optimizer,
               params: list[list[Tensor]], obs: Tensor, action: Tensor, old_log_prob: Tensor, old_value: Tensor,
               advantage: Tensor, returns: Tensor, *, n_epochs: int, batch_size: int, clip: float, clip_vf: float | None,
               vf_coef: float, ent_coef: float, max_grad_norm: float, normalize_advantage: bool,
               target_kl: float | None) -> tuple[Tensor, int]:
    """The PPO optimisation phase over one flattened rollout ``[n, ...]``, shared by PPO and Uni-O4's online phase.

    ``evaluate(obs, action) -> (log_prob [b], entropy [b], value [b])`` under the
    current parameters. Each minibatch minimises ``L_clip + vf_coef L_V - ent_coef H``,
    then clips the global gradient norm. Returns the mean of ``(policy loss,
    value loss, entropy, clip fraction, approx KL)`` over minibatches and the
    number of optimiser steps taken. ``params`` holds the groups whose gradient
    norms are clipped separately (one group: a global clip).
    """
    n = obs.shape[0]
    stats = torch.zeros(5, device=obs.device)
    count = 0
    for _ in range(n_epochs):
        perm = torch.randperm(n, device=obs.device)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            log_prob, entropy, value = evaluate(obs[idx], action[idx])
            adv = advantage[idx]
            if normalize_advantage and len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pi_loss = ppo_clip_loss(log_prob, old_log_prob[idx], adv, clip=clip)
            v_loss = value_loss(value, returns[idx], old_value=old_value[idx], clip=clip_vf)
            entropy = entropy.mean()
            loss = pi_loss + vf_coef * v_loss - ent_coef * entropy

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in params:
                nn.utils.clip_grad_norm_(group, max_grad_norm, foreach=True)
            optimizer.step()

            with torch.no_grad():
                log_ratio = log_prob - old_log_prob[idx]
                kl = ((log_ratio.exp() - 1) - log_ratio).mean()
                clipped = ((log_ratio.exp() - 1).abs() > clip).float().mean()
                stats += torch.stack([pi_loss.detach(), v_loss.detach(), entropy.detach(), clipped, kl])
            count += 1
        if target_kl is not None and float(kl) > target_kl:
            break
    return stats / max(count, 1), count
