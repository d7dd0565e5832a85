"""Implicit Q-Learning (Kostrikov et al. 2021, arXiv:2110.06169).

Learns values without querying actions outside the dataset:

* value: expectile regression ``L_V = E[L2^tau(min_k Q'_k(s, a) - V(s))]``,
  ``L2^tau(u) = |tau - 1(u < 0)| u^2`` (eq. 5);
* critics: ``L_Q = sum_k E[(Q_k(s, a) - r - gamma (1 - d) V(s'))^2]`` (eq. 6);
* actor, advantage-weighted regression:
  ``L_pi = -E[min(exp(beta (Q'(s, a) - V(s))), 100) log pi(a|s)]`` (eq. 7);
* target critics by Polyak averaging; cosine decay of the actor's learning
  rate over the step budget.

Following the authors' locomotion setup, the actor is a Gaussian with a
state-independent log-std (min -5) whose mean is ``tanh`` of the network's
output: the distribution itself is not tanh-squashed, so ``log pi(a|s)`` of a
dataset action needs no inverse tanh. With ``normalize_reward`` rewards are
scaled by ``1000 / (max return - min return)`` over the dataset's episodes.

Online fine-tuning (``Agent.start_online``, as in the paper's section 5.3)
runs the same update on batches mixing online and dataset transitions
(``FinetuneConfig``), acting with samples of the Gaussian policy; the reward
scale and the observation normaliser stay those of the dataset. The actor's
cosine schedule covers the offline budget only; online it learns at the
constant ``actor_lr``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polyrl.algos.base import Algorithm
from polyrl.config import FinetuneConfig
from polyrl.families import iql_critic_step
from polyrl.losses import polyak_update
from polyrl.nets.heads import GaussianPolicy, QEnsemble, ValueNet
from polyrl.optim import adam, step
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class IQLConfig(FinetuneConfig):
    expectile: float = 0.7
    """Expectile tau of the value regression."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Clip of the advantage weights."""
    actor_lr: float = 3e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    value_lr: float = 3e-4
    """Value-function learning rate."""
    tau: float = 0.005
    """Polyak coefficient for the target critics."""
    cosine_actor_lr: bool = True
    """Decay the actor learning rate with a cosine schedule over the step budget."""
    normalize_reward: bool = True
    """Scale rewards by 1000 / (max - min episode return) of the dataset (locomotion setting)."""
    n_critics: int = 2
    """Critics in the ensemble."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of all networks."""
    activation: str = "relu"
    """Hidden activation."""


@dataclass
class IQLState:
    actor: GaussianPolicy
    critic: QEnsemble
    critic_target: QEnsemble
    value: ValueNet
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer
    value_opt: torch.optim.Optimizer
    reward_scale: Tensor


class IQL(Algorithm):
    """IQL for Box actions."""

    name = "iql"
    Config = IQLConfig
    action_kinds = ("box",)
    regime = "offline"
    online_regime = "off_policy"
    cfg: IQLConfig

    def build(self) -> IQLState:
        c, d = self.cfg, self.spec
        actor = GaussianPolicy(d.obs_dim, d.action_dim, c.hidden, c.activation, state_dependent_std=False, squash=False,
                               tanh_mean=True, log_std_bounds=(-5.0, 2.0)).to(self.device)
        critic = QEnsemble(c.n_critics, d.obs_dim, d.action_dim, c.hidden, c.activation).to(self.device)
        value = ValueNet(d.obs_dim, c.hidden, c.activation).to(self.device)
        return IQLState(actor, critic, copy.deepcopy(critic).requires_grad_(False), value,
                        adam(actor.parameters(), c.actor_lr), adam(critic.parameters(), c.critic_lr),
                        adam(value.parameters(), c.value_lr), torch.ones((), device=self.device))

    def prepare(self, dataset: Any, normalize: Any = None) -> None:
        """Derive the reward scale from the dataset's episode returns (saved with the weights)."""
        if self.cfg.normalize_reward:
            rets = dataset.episode_returns()
            spread = float(rets.max() - rets.min())
            self.state.reward_scale.fill_(1000.0 / spread if spread > 0 else 1.0)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        dist = self.state.actor(obs)
        return (dist.mode() if deterministic else dist.sample()).clamp(-1.0, 1.0)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        c, s = self.cfg, self.state
        if self.online:
            s.actor_opt.param_groups[0]["lr"] = c.actor_lr
        elif c.cosine_actor_lr:
            progress = min(self.n_updates / max(self.total_steps, 1), 1.0)
            s.actor_opt.param_groups[0]["lr"] = c.actor_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

        value_loss, critic_loss, adv = iql_critic_step(s.critic, s.critic_target, s.value, s.critic_opt, s.value_opt, batch,
                                                       reward_scale=s.reward_scale, expectile=c.expectile)  # eqs. 5, 6

        # Actor: advantage-weighted regression onto dataset actions.
        weight = torch.exp(c.beta * adv).clamp(max=c.max_weight)
        actor_loss = -(weight * s.actor(batch.obs).log_prob(batch.action)).mean()
        step(s.actor_opt, actor_loss)

        polyak_update(s.critic_target.parameters(), s.critic.parameters(), tau=c.tau)
        self.n_updates += 1
        return {"loss/value": value_loss.detach(), "loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(),
                "train/adv": adv.mean(), "train/weight": weight.mean()}

