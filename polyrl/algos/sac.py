"""Soft Actor-Critic with automatic entropy tuning (Haarnoja et al. 2018, arXiv:1812.05905).

For a batch of transitions:

* critics: ``L_Q = sum_k E[(Q_k(s, a) - y)^2]`` with the soft target
  ``y = r + gamma (1 - d) (min_k Q'_k(s', a') - alpha log pi(a'|s'))``,
  ``a' ~ pi(.|s')`` (eq. 5, with clipped double-Q from Fujimoto et al. 2018);
* actor: ``L_pi = E[alpha log pi(a|s) - min_k Q_k(s, a)]``, ``a ~ pi(.|s)``
  reparameterised through ``tanh`` (eq. 7);
* temperature: ``L_alpha = -E[log alpha (log pi(a|s) + H_target)]`` with
  ``H_target = -dim(A)`` (eq. 18);
* target critics: Polyak averaging with ``tau``.

The ``n_critics`` critics are one batched ensemble module. Deviations from
the paper: none; ``log alpha`` (not ``alpha``) is optimised, as in the
authors' code.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm, adam
from polyrl.algos.offpolicy import OffPolicyConfig
from polyrl.losses import polyak_update, soft_q_target, temperature_loss
from polyrl.nets.heads import GaussianPolicy, QEnsemble
from polyrl.nets.mlp import frozen
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    actor_lr: float = 3e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    alpha_lr: float = 3e-4
    """Temperature learning rate."""
    tau: float = 0.005
    """Polyak coefficient for the target critics."""
    n_critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""
    auto_alpha: bool = True
    """Tune alpha towards the target entropy; otherwise keep init_alpha fixed."""
    target_entropy: float | None = None
    """Target policy entropy (None: -action_dim)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of actor and critics."""
    activation: str = "relu"
    """Hidden activation."""


@dataclass
class SACState:
    actor: GaussianPolicy
    critic: QEnsemble
    critic_target: QEnsemble
    log_alpha: Tensor
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer
    alpha_opt: torch.optim.Optimizer


class SAC(Algorithm):
    """SAC for Box actions."""

    name = "sac"
    Config = SACConfig
    action_kinds = ("box",)
    regime = "off_policy"
    cfg: SACConfig

    def build(self) -> SACState:
        c, d = self.cfg, self.spec
        actor = GaussianPolicy(d.obs_dim, d.action_dim, c.hidden, c.activation, log_std_bounds=(-20.0, 2.0)).to(self.device)
        critic = QEnsemble(c.n_critics, d.obs_dim, d.action_dim, c.hidden, c.activation).to(self.device)
        critic_target = copy.deepcopy(critic).requires_grad_(False)
        log_alpha = torch.tensor(math.log(c.init_alpha), device=self.device, requires_grad=True)
        self.target_entropy = -float(d.action_dim) if c.target_entropy is None else c.target_entropy
        return SACState(actor, critic, critic_target, log_alpha,
                        adam(actor.parameters(), c.actor_lr), adam(critic.parameters(), c.critic_lr),
                        adam([log_alpha], c.alpha_lr))

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        dist = self.state.actor(obs)
        return dist.mode() if deterministic else dist.sample()

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        c, s = self.cfg, self.state
        alpha = s.log_alpha.detach().exp()

        # Critic: regress every Q_k onto the soft clipped-double-Q target.
        with torch.no_grad():
            next_action, next_log_prob = s.actor(batch.next_obs).rsample_with_log_prob()
            target = soft_q_target(batch.reward, s.critic_target(batch.next_obs, next_action), next_log_prob,
                                   alpha=alpha, discount=batch.discount, terminated=batch.terminated)
        q = s.critic(batch.obs, batch.action)
        critic_loss = (q - target).pow(2).mean(1).sum()
        s.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        s.critic_opt.step()

        # Actor: maximise min_k Q_k(s, a~pi) + alpha H.
        action, log_prob = s.actor(batch.obs).rsample_with_log_prob()
        with frozen(s.critic):
            q_pi = s.critic(batch.obs, action).min(0).values
        actor_loss = (alpha * log_prob - q_pi).mean()
        s.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        s.actor_opt.step()

        # Temperature.
        if c.auto_alpha:
            alpha_loss = temperature_loss(s.log_alpha, log_prob, target_entropy=self.target_entropy)
            s.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            s.alpha_opt.step()

        polyak_update(s.critic_target.parameters(), s.critic.parameters(), tau=c.tau)
        self.n_updates += 1
        return {
            "loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(),
            "train/alpha": alpha, "train/entropy": -log_prob.detach().mean(), "train/q": q.detach().mean(),
        }
