"""TD3+BC (Fujimoto & Gu 2021, arXiv:2106.06860): TD3 with a behaviour-cloning term in the actor loss.

* critics: exactly TD3's clipped double-Q with target policy smoothing
  (``polyrl.losses.td3_critic_loss``);
* actor, every ``policy_delay`` critic updates:
  ``L_pi = -lambda E[Q_1(s, pi(s))] + E[(pi(s) - a)^2]`` with
  ``lambda = alpha / mean |Q_1(s, pi(s))|`` (detached), ``alpha = 2.5``;
* states standardised with the dataset's statistics.

Online fine-tuning (``Agent.start_online``) keeps the same update on batches
that mix online and dataset transitions (``FinetuneConfig``); with
``online_bc_decay > 0`` the BC term's weight decays linearly to 0 over that
many env steps, turning the update into TD3 (with normalised Q).

Deviations from the paper: states are standardised as ``(s - mu) / sqrt(var + 1e-8)``
instead of ``(s - mu) / (std + 1e-3)``, which differs only for near-constant
dimensions; timeouts bootstrap (as in the spec, they are not terminal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm
from polyrl.algos.offline import FinetuneConfig
from polyrl.algos.td3 import TD3Params, TD3State, build_td3_state, explore
from polyrl.losses import polyak_update, td3_critic_loss
from polyrl.nets.mlp import frozen
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class BehaviourTermParams:
    """The behaviour term of TD3+BC and PRDC (BC to the dataset action, or to the nearest dataset action)."""

    alpha: float = 2.5
    """Weight of the Q term relative to the behaviour term (after normalising by mean |Q|)."""
    online_bc_decay: int = 0
    """Fine-tuning: decay the behaviour term's weight linearly to 0 over this many env steps (0: keep it at 1)."""


def behaviour_weight(algo: Algorithm) -> float:
    """1 offline; online, decayed linearly to 0 over ``online_bc_decay`` env steps when that is set."""
    decay = algo.cfg.online_bc_decay  # type: ignore[attr-defined]
    if not algo.online or decay <= 0:
        return 1.0
    return max(0.0, 1.0 - algo.env_steps / decay)


@dataclass(frozen=True)
class TD3BCConfig(TD3Params, BehaviourTermParams, FinetuneConfig):
    pass


class TD3BC(Algorithm):
    """TD3+BC for Box actions."""

    name = "td3bc"
    Config = TD3BCConfig
    action_kinds = ("box",)
    regime = "offline"
    online_regime = "off_policy"
    cfg: TD3BCConfig

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
            pi = s.actor(batch.obs)
            with frozen(s.critic):
                q_pi = s.critic(batch.obs, pi, members=slice(0, 1))
            lam = c.alpha / q_pi.abs().mean().detach()
            bc = (pi - batch.action).pow(2).mean()
            weight = behaviour_weight(self)
            actor_loss = -lam * q_pi.mean() + weight * bc
            s.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            s.actor_opt.step()
            polyak_update(s.critic_target.parameters(), s.critic.parameters(), tau=c.tau)
            polyak_update(s.actor_target.parameters(), s.actor.parameters(), tau=c.tau)
            metrics |= {"loss/actor": actor_loss.detach(), "loss/bc": bc.detach(), "train/lambda": lam, "train/bc_weight": weight}
        return metrics
