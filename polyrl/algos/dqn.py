"""Deep Q-Network (Mnih et al. 2015) with the double-DQN target (van Hasselt et al. 2016).

* ``L = E[huber(Q(s, a) - y)]`` with
  ``y = r + gamma (1 - d) Q'(s', argmax_a' Q(s', a'))`` (double DQN) or
  ``y = r + gamma (1 - d) max_a' Q'(s', a')`` (``double_q = False``);
* the target network ``Q'`` is copied (``tau = 1``) or Polyak-averaged every
  ``target_update_interval`` gradient updates;
* epsilon-greedy exploration, epsilon decaying linearly from
  ``exploration_initial_eps`` to ``exploration_final_eps`` over the first
  ``exploration_fraction`` of the step budget.

Deviations from the paper: Adam instead of RMSProp, and gradient-norm
clipping instead of error clipping (the Huber loss keeps the gradient bound),
as in most current implementations. ``target_update_interval`` counts
gradient updates, not env steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyrl.algos.base import Algorithm, adam
from polyrl.config import OffPolicyConfig, ReplayConfig
from polyrl.losses import double_q_target, polyak_update, td_target
from polyrl.nets.heads import DiscreteQ
from polyrl.types import TransitionBatch


@dataclass(frozen=True)
class DQNConfig(OffPolicyConfig):
    learning_rate: float = 1e-4
    """Adam step size."""
    replay: ReplayConfig = ReplayConfig(batch_size=32, learning_starts=1000, train_freq=4)
    """The replay buffer and how batches are drawn from it (SB3's DQN defaults: batches of 32 every 4 steps)."""
    target_update_interval: int = 1000
    """Gradient updates between target-network updates."""
    tau: float = 1.0
    """Target update coefficient (1.0: hard copy)."""
    double_q: bool = True
    """Use the double-DQN target."""
    exploration_fraction: float = 0.1
    """Share of the step budget over which epsilon decays."""
    exploration_initial_eps: float = 1.0
    """Initial epsilon."""
    exploration_final_eps: float = 0.05
    """Final epsilon."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the Q-network."""
    activation: str = "relu"
    """Hidden activation."""


@dataclass
class DQNState:
    q: DiscreteQ
    q_target: DiscreteQ
    optimizer: torch.optim.Optimizer


class DQN(Algorithm):
    """(Double) DQN for Discrete actions."""

    name = "dqn"
    Config = DQNConfig
    action_kinds = ("discrete",)
    regime = "off_policy"
    cfg: DQNConfig

    def build(self) -> DQNState:
        c, d = self.cfg, self.spec
        q = DiscreteQ(d.obs_dim, d.action_dim, c.hidden, c.activation).to(self.device)
        return DQNState(q, copy.deepcopy(q).requires_grad_(False), adam(q.parameters(), c.learning_rate))

    def epsilon(self) -> float:
        """Current exploration rate from the env-step schedule."""
        c = self.cfg
        frac = min(self.env_steps / max(c.exploration_fraction * self.total_steps, 1.0), 1.0)
        return c.exploration_initial_eps + frac * (c.exploration_final_eps - c.exploration_initial_eps)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        greedy = self.state.q(obs).argmax(-1)
        if deterministic:
            return greedy
        explore = torch.rand(greedy.shape, device=self.device) < self.epsilon()
        random = torch.randint(self.spec.action_dim, greedy.shape, device=self.device)
        return torch.where(explore, random, greedy)

    def update(self, batch: TransitionBatch) -> dict[str, float | Tensor]:
        c, s = self.cfg, self.state
        with torch.no_grad():
            next_target = s.q_target(batch.next_obs)
            if c.double_q:
                target = double_q_target(batch.reward, s.q(batch.next_obs), next_target,
                                         discount=batch.discount, terminated=batch.terminated)
            else:
                target = td_target(batch.reward, next_target.max(-1).values, discount=batch.discount,
                                   terminated=batch.terminated)
        q = s.q(batch.obs).gather(-1, batch.action.long().unsqueeze(-1)).squeeze(-1)
        loss = F.smooth_l1_loss(q, target)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(s.q.parameters(), c.max_grad_norm, foreach=True)
        s.optimizer.step()
        self.n_updates += 1
        if self.n_updates % c.target_update_interval == 0:
            polyak_update(s.q_target.parameters(), s.q.parameters(), tau=c.tau)
        return {"loss/q": loss.detach(), "train/q": q.detach().mean(), "train/epsilon": self.epsilon()}
