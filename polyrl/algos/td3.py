"""Twin Delayed DDPG (Fujimoto et al. 2018, arXiv:1802.09477).

* critics: ``L_Q = sum_k E[(Q_k(s, a) - y)^2]``,
  ``y = r + gamma (1 - d) min_k Q'_k(s', clip(pi'(s') + clip(eps, -c, c), -1, 1))``,
  ``eps ~ N(0, sigma)`` (target policy smoothing, section 5.3);
* actor, every ``policy_delay`` critic updates: ``L_pi = -E[Q_1(s, pi(s))]``;
* targets (actor and critics) Polyak-averaged when the actor updates;
* exploration: ``a = clip(pi(s) + N(0, exploration_noise), -1, 1)``.

Deviations from the paper: the authors' current code (3e-4 learning rates,
256-256 networks, 25k random start steps) rather than the paper's 1e-3 and
400-300; the critics are one batched ensemble module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm, adam
from polyrl.algos.offpolicy import OffPolicyConfig
from polyrl.envs import EnvSpec
from polyrl.losses import polyak_update, td3_critic_loss
from polyrl.nets.heads import DeterministicPolicy, QEnsemble
from polyrl.nets.mlp import frozen
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class TD3Params:
    """The fields of the TD3 family (TD3, TD3+BC, PRDC), whatever the data source."""

    actor_lr: float = 3e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    tau: float = 0.005
    """Polyak coefficient for the targets."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    target_noise: float = 0.2
    """Std of the target policy smoothing noise (in normalised action units)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    exploration_noise: float = 0.1
    """Std of the Gaussian exploration noise."""
    n_critics: int = 2
    """Critics in the ensemble."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of actor and critics."""
    activation: str = "relu"
    """Hidden activation."""


@dataclass(frozen=True)
class TD3Config(TD3Params, OffPolicyConfig):
    learning_starts: int = 25_000
    """Env steps of uniformly random actions before learning starts."""


@dataclass
class TD3State:
    """Trainable state of the TD3 family."""

    actor: DeterministicPolicy
    actor_target: DeterministicPolicy
    critic: QEnsemble
    critic_target: QEnsemble
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer


def build_td3_state(c: TD3Params, spec: EnvSpec, device: torch.device) -> TD3State:
    """Actor, twin critics, their targets and optimisers, as every TD3-family algorithm declares them."""
    actor = DeterministicPolicy(spec.obs_dim, spec.action_dim, c.hidden, c.activation).to(device)
    critic = QEnsemble(c.n_critics, spec.obs_dim, spec.action_dim, c.hidden, c.activation).to(device)
    return TD3State(actor, copy.deepcopy(actor).requires_grad_(False), critic, copy.deepcopy(critic).requires_grad_(False),
                    adam(actor.parameters(), c.actor_lr), adam(critic.parameters(), c.critic_lr))


def explore(actor: DeterministicPolicy, obs: Tensor, *, noise: float, deterministic: bool) -> Tensor:
    """``pi(s)``, plus clipped Gaussian exploration noise unless ``deterministic``."""
    action = actor(obs)
    if not deterministic:
        action = (action + noise * torch.randn_like(action)).clamp(-1.0, 1.0)
    return action


class TD3(Algorithm):
    """TD3 for Box actions."""

    name = "td3"
    Config = TD3Config
    action_kinds = ("box",)
    regime = "off_policy"
    cfg: TD3Config

    def build(self) -> TD3State:
        return build_td3_state(self.cfg, self.spec, self.device)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return explore(self.state.actor, obs, noise=self.cfg.exploration_noise, deterministic=deterministic)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        c, s = self.cfg, self.state
        critic_loss, q = td3_critic_loss(s.critic, s.critic_target, s.actor_target, batch,
                                         target_noise=c.target_noise, noise_clip=c.noise_clip)
        s.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        s.critic_opt.step()
        self.n_updates += 1
        metrics: dict[str, float | Tensor] = {"loss/critic": critic_loss.detach(), "train/q": q.detach().mean()}

        if self.n_updates % c.policy_delay == 0:
            with frozen(s.critic):
                actor_loss = -s.critic(batch.obs, s.actor(batch.obs), members=slice(0, 1)).mean()  # Q_1 only
            s.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            s.actor_opt.step()
            polyak_update(s.critic_target.parameters(), s.critic.parameters(), tau=c.tau)
            polyak_update(s.actor_target.parameters(), s.actor.parameters(), tau=c.tau)
            metrics["loss/actor"] = actor_loss.detach()
        return metrics
