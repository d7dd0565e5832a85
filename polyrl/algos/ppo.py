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

from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.algos.base import AlgoConfig, Algorithm
from polyrl.config import PPOUpdate, RolloutConfig
from polyrl.data.rollout import Rollout
from polyrl.nets.heads import ActorCritic
from polyrl.optim import adam, ppo_epochs


@dataclass(frozen=True)
class PPOConfig(AlgoConfig):
    learning_rate: float = 3e-4
    """Adam step size (shared by actor and critic)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the training budget."""
    rollout: RolloutConfig = RolloutConfig()
    """The on-policy rollout collected per iteration."""
    ppo: PPOUpdate = PPOUpdate()
    """The optimisation phase: epochs of minibatches on the clipped objective."""
    anneal_clip: bool = False
    """Decay the clipping epsilon linearly to 0 over the training budget."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
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
        p = c.ppo
        clip = p.clip_range * frac if c.anneal_clip else p.clip_range
        flat = batch.flatten(gamma=c.gamma, lam=p.gae_lambda)

        def evaluate(o: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            dist, value = s.model(o)
            return dist.log_prob(a), dist.entropy(), value

        stats = ppo_epochs(evaluate, s.optimizer, [list(s.model.parameters())], flat,
                           p.objective(max_grad_norm=c.max_grad_norm, clip=clip), n_epochs=p.n_epochs, batch_size=p.batch_size)
        self.n_updates += stats.steps
        with torch.no_grad():
            explained = 1.0 - (flat.returns - flat.value).var() / (flat.returns.var() + 1e-8)
        return {
            "loss/policy": stats.policy_loss, "loss/value": stats.value_loss, "train/entropy": stats.entropy,
            "train/clip_fraction": stats.clip_fraction, "train/approx_kl": stats.approx_kl,
            "train/explained_variance": explained, "train/learning_rate": s.optimizer.param_groups[0]["lr"],
        }
