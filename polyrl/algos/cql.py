"""Conservative Q-Learning, CQL(H) for continuous actions (Kumar et al. 2020, arXiv:2006.04779).

SAC whose critics are pushed down on actions outside the data and up on the
dataset's actions (eq. 4, the CQL(H) variant):

``L_Q = sum_k [ w (E_s[log sum_a exp Q_k(s, a)] - E_{(s,a)~D}[Q_k(s, a)]) + E[(Q_k(s, a) - y)^2] ]``

The log-sum-exp over actions is estimated by importance sampling with
``n_action_samples`` actions each from a uniform distribution on
``[-1, 1]^d``, from ``pi(.|s)`` and from ``pi(.|s')`` (appendix F of the
paper, as in the authors' code). The TD target is SAC's, without the entropy
term by default (the authors' "deterministic backup" for MuJoCo). With
``auto_cql_alpha`` the conservative term becomes ``alpha' (w gap - target_action_gap)``
and ``alpha'`` is tuned by dual gradient descent (the Lagrangian version,
eq. 5, scaled as in the authors' code). Actor and temperature are trained
exactly as in SAC. The TD term is the authors' mean squared error (no 1/2),
the scale their ``w = 5`` was tuned with.

The authors' optional behaviour-cloning warm-up of the actor is
``bc_warmup_steps`` (their ``policy_eval_start``): for that many updates the
actor minimises ``E[alpha log pi(a~|s) - log pi(a_D|s)]`` (imitating the
dataset's actions ``a_D``) instead of SAC's loss; 0 (the default) starts with SAC's.

Deviations from the authors' code: the three action samples are scored in
one batched critic pass, and the policy's ``n`` samples per state are drawn
from one actor pass over the states (not one per repeated state).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm, adam
from polyrl.config import OfflineConfig
from polyrl.losses import polyak_update, soft_q_target, temperature_loss
from polyrl.nets.heads import GaussianPolicy, QEnsemble
from polyrl.nets.mlp import frozen
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class CQLConfig(OfflineConfig):
    actor_lr: float = 1e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    alpha_lr: float = 1e-4
    """SAC temperature learning rate."""
    tau: float = 0.005
    """Polyak coefficient for the target critics."""
    cql_weight: float = 5.0
    """w: weight of the conservative gap (inside the Lagrangian when auto_cql_alpha)."""
    auto_cql_alpha: bool = False
    """Tune alpha' by dual descent towards target_action_gap (CQL-Lagrange)."""
    target_action_gap: float = 10.0
    """Target of the conservative gap for auto_cql_alpha."""
    cql_alpha_lr: float = 3e-4
    """Learning rate of log alpha' for auto_cql_alpha."""
    n_action_samples: int = 10
    """Actions sampled per state and per proposal (uniform, pi(s), pi(s')) for the log-sum-exp."""
    backup_entropy: bool = False
    """Include -alpha log pi in the TD target (False: the authors' deterministic backup)."""
    init_alpha: float = 1.0
    """Initial SAC temperature."""
    bc_warmup_steps: int = 0
    """Updates whose actor loss imitates the dataset's actions before SAC's takes over (authors: 40000 on MuJoCo)."""
    n_critics: int = 2
    """Critics in the ensemble."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of actor and critics."""
    activation: str = "relu"
    """Hidden activation."""


@dataclass
class CQLState:
    actor: GaussianPolicy
    critic: QEnsemble
    critic_target: QEnsemble
    log_alpha: Tensor
    log_cql_alpha: Tensor
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer
    alpha_opt: torch.optim.Optimizer
    cql_alpha_opt: torch.optim.Optimizer


class CQL(Algorithm):
    """CQL(H) for Box actions."""

    name = "cql"
    Config = CQLConfig
    action_kinds = ("box",)
    regime = "offline"
    cfg: CQLConfig

    def build(self) -> CQLState:
        c, d = self.cfg, self.spec
        actor = GaussianPolicy(d.obs_dim, d.action_dim, c.hidden, c.activation).to(self.device)
        critic = QEnsemble(c.n_critics, d.obs_dim, d.action_dim, c.hidden, c.activation).to(self.device)
        log_alpha = torch.tensor(math.log(c.init_alpha), device=self.device, requires_grad=True)
        log_cql_alpha = torch.zeros((), device=self.device, requires_grad=True)  # alpha' = 1
        self.target_entropy = -float(d.action_dim)
        return CQLState(actor, critic, copy.deepcopy(critic).requires_grad_(False), log_alpha, log_cql_alpha,
                        adam(actor.parameters(), c.actor_lr), adam(critic.parameters(), c.critic_lr),
                        adam([log_alpha], c.alpha_lr), adam([log_cql_alpha], c.cql_alpha_lr))

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        dist = self.state.actor(obs)
        return dist.mode() if deterministic else dist.sample()

    def _sampled_q(self, batch: TransitionBatch) -> Tensor:
        """Importance-weighted Q of sampled actions, ``[E, B, 3N]`` (``Q - log density``)."""
        c, s = self.cfg, self.state
        b, n, d = batch.obs.shape[0], c.n_action_samples, self.spec.action_dim
        obs_rep = batch.obs.repeat_interleave(n, dim=0)
        with torch.no_grad():
            uniform = torch.rand(b * n, d, device=self.device) * 2.0 - 1.0
            # pi(.|s) then pi(.|s'), n samples per state from one actor pass over the 2B states
            pi_a, pi_logp = s.actor(torch.cat([batch.obs, batch.next_obs])).repeat_rows(n).rsample_with_log_prob()
        actions = torch.cat([uniform, pi_a])
        q = s.critic(torch.cat([obs_rep, obs_rep, obs_rep]), actions)  # one batched pass, [E, 3BN]
        log_density = torch.cat([torch.full((b * n,), -d * math.log(2.0), device=self.device), pi_logp])
        weighted = (q - log_density).view(q.shape[0], 3, b, n)
        return weighted.permute(0, 2, 1, 3).reshape(q.shape[0], b, 3 * n)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        c, s = self.cfg, self.state
        alpha = s.log_alpha.detach().exp()

        # Critic: SAC's TD loss plus the conservative gap.
        with torch.no_grad():
            next_action, next_log_prob = s.actor(batch.next_obs).rsample_with_log_prob()
            target = soft_q_target(batch.reward, s.critic_target(batch.next_obs, next_action), next_log_prob,
                                   alpha=alpha if c.backup_entropy else 0.0, discount=batch.discount,
                                   terminated=batch.terminated)
        q = s.critic(batch.obs, batch.action)
        td_loss = (q - target).pow(2).mean(1).sum()
        gap = c.cql_weight * (torch.logsumexp(self._sampled_q(batch), dim=-1) - q).mean(1)  # [E]
        if c.auto_cql_alpha:
            cql_alpha = s.log_cql_alpha.detach().exp().clamp(0.0, 1e6)
            conservative = (cql_alpha * (gap - c.target_action_gap)).sum()
        else:
            conservative = gap.sum()
        critic_loss = td_loss + conservative
        s.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        s.critic_opt.step()
        metrics: dict[str, float | Tensor] = {"loss/critic": td_loss.detach(), "train/cql_gap": gap.detach().mean(),
                                              "train/q": q.detach().mean()}
        if c.auto_cql_alpha:  # dual step: alpha' grows while the gap exceeds its target
            cql_alpha_loss = -0.5 * (s.log_cql_alpha.exp().clamp(0.0, 1e6) * (gap.detach() - c.target_action_gap)).sum()
            s.cql_alpha_opt.zero_grad(set_to_none=True)
            cql_alpha_loss.backward()
            s.cql_alpha_opt.step()
            metrics["train/cql_alpha"] = cql_alpha

        # Actor and temperature: SAC (after the optional BC warm-up).
        dist = s.actor(batch.obs)
        action, log_prob = dist.rsample_with_log_prob()
        if self.n_updates < c.bc_warmup_steps:
            actor_loss = (alpha * log_prob - dist.log_prob(batch.action)).mean()
        else:
            with frozen(s.critic):
                q_pi = s.critic(batch.obs, action).min(0).values
            actor_loss = (alpha * log_prob - q_pi).mean()
        s.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        s.actor_opt.step()
        alpha_loss = temperature_loss(s.log_alpha, log_prob, target_entropy=self.target_entropy)
        s.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        s.alpha_opt.step()

        polyak_update(s.critic_target.parameters(), s.critic.parameters(), tau=c.tau)
        self.n_updates += 1
        return metrics | {"loss/actor": actor_loss.detach(), "train/alpha": alpha}
