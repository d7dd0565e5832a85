"""Pieces shared by families of algorithms, so no algorithm file imports another.

Each is a leaf the algorithm files compose, in the order their papers give:

* the SAC family (SAC, MBPO, MOPO): one parameter set, one trainable state (with a dynamics
  ensemble for the model-based members) and SAC's whole update;
* the TD3 family (TD3, TD3+BC, PRDC): one parameter set, one trainable state, exploration,
  the clipped double-Q critic step and the delayed actor step with its target updates;
  the behaviour term of TD3+BC and PRDC and its fine-tuning decay;
* IQL's value and critic step (IQL; Uni-O4's offline critics), on the pure losses of
  :mod:`polyrl.losses`.

What differs between the members of a family (TD3+BC's behaviour-cloning term, PRDC's
nearest-neighbour target) stays in the member's own file.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from polyrl.envs import EnvSpec
from polyrl.losses import (
    iql_q_loss,
    iql_value_loss,
    polyak_update,
    soft_q_target,
    td3_critic_loss,
    temperature_loss,
)
from polyrl.models.dynamics import DynamicsConfig, DynamicsEnsemble
from polyrl.nets.heads import DeterministicPolicy, GaussianPolicy, QEnsemble, ValueNet
from polyrl.nets.mlp import frozen
from polyrl.optim import adam, step
from polyrl.types import TransitionBatch

# -- the TD3 family -------------------------------------------------------------------------------------


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


def td3_critic_step(s: TD3State, batch: TransitionBatch, *, target_noise: float, noise_clip: float) -> tuple[Tensor, Tensor]:
    """One step of the twin critics on TD3's clipped double-Q target with target policy smoothing
    (:func:`polyrl.losses.td3_critic_loss`); returns ``(loss, Q [E, B])``, detached."""
    critic_loss, q = td3_critic_loss(s.critic, s.critic_target, s.actor_target, batch,
                                     target_noise=target_noise, noise_clip=noise_clip)
    step(s.critic_opt, critic_loss)
    return critic_loss.detach(), q.detach()


def td3_actor_step(s: TD3State, actor_loss: Tensor, *, tau: float) -> None:
    """The delayed step: the actor on ``actor_loss``, then Polyak updates of the target critics and actor."""
    step(s.actor_opt, actor_loss)
    polyak_update(s.critic_target.parameters(), s.critic.parameters(), tau=tau)
    polyak_update(s.actor_target.parameters(), s.actor.parameters(), tau=tau)


def td3_update(algo: Any, batch: TransitionBatch, actor_objective: Callable[[TransitionBatch], tuple[Tensor, dict[str, Any]]]
               ) -> dict[str, Any]:
    """The TD3 family's update (Fujimoto et al. 2018, Algorithm 1): a critic step every call; every ``policy_delay``
    calls, an actor step on ``actor_objective(batch) -> (loss, extra metrics)`` (the member's own objective) and
    the target updates. ``algo`` has a :class:`TD3Params` config, a :class:`TD3State` and the clock's ``n_updates``."""
    c, s = algo.cfg, algo.state
    critic_loss, q = td3_critic_step(s, batch, target_noise=c.target_noise, noise_clip=c.noise_clip)
    algo.n_updates += 1
    metrics: dict[str, Any] = {"loss/critic": critic_loss, "train/q": q.mean()}
    if algo.n_updates % c.policy_delay == 0:
        actor_loss, extra = actor_objective(batch)
        td3_actor_step(s, actor_loss, tau=c.tau)
        metrics |= {"loss/actor": actor_loss.detach(), **extra}
    return metrics


@dataclass(frozen=True)
class BehaviourTermParams:
    """The behaviour term of TD3+BC and PRDC (BC to the dataset action, or to the nearest dataset action)."""

    alpha: float = 2.5
    """Weight of the Q term relative to the behaviour term (after normalising by mean |Q|)."""
    online_bc_decay: int = 0
    """Fine-tuning: decay the behaviour term's weight linearly to 0 over this many env steps (0: keep it at 1)."""


def behaviour_weight(algo: Any) -> float:
    """1 offline; online, decayed linearly to 0 over ``online_bc_decay`` env steps when that is set."""
    decay = algo.cfg.online_bc_decay
    if not algo.online or decay <= 0:
        return 1.0
    return max(0.0, 1.0 - algo.env_steps / decay)


# -- the SAC family --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SACParams:
    """The fields of the SAC family (SAC, MBPO, MOPO), whatever the data source."""

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


def sac_target_entropy(c: SACParams, spec: EnvSpec) -> float:
    """SAC's target entropy: ``target_entropy``, or ``-dim(A)`` when unset (eq. 18)."""
    return -float(spec.action_dim) if c.target_entropy is None else c.target_entropy


def build_sac_state(c: SACParams, spec: EnvSpec, device: torch.device) -> SACState:
    """Actor, critic ensemble, its target, ``log alpha`` and the three optimisers, as every SAC-family algorithm declares them."""
    actor = GaussianPolicy(spec.obs_dim, spec.action_dim, c.hidden, c.activation, log_std_bounds=(-20.0, 2.0)).to(device)
    critic = QEnsemble(c.n_critics, spec.obs_dim, spec.action_dim, c.hidden, c.activation).to(device)
    critic_target = copy.deepcopy(critic).requires_grad_(False)
    log_alpha = torch.tensor(math.log(c.init_alpha), device=device, requires_grad=True)
    return SACState(actor, critic, critic_target, log_alpha,
                    adam(actor.parameters(), c.actor_lr), adam(critic.parameters(), c.critic_lr), adam([log_alpha], c.alpha_lr))


def sac_step(s: SACState, batch: TransitionBatch, *, target_entropy: float, tau: float, auto_alpha: bool) -> dict[str, float | Tensor]:
    """One SAC update (Haarnoja et al. 2018): critics on the soft clipped-double-Q target (eq. 5), the actor (eq. 7),
    the temperature (eq. 18, when ``auto_alpha``), then Polyak-averaged target critics. Returns the metrics."""
    alpha = s.log_alpha.detach().exp()

    # Critic: regress every Q_k onto the soft clipped-double-Q target.
    with torch.no_grad():
        next_action, next_log_prob = s.actor(batch.next_obs).rsample_with_log_prob()
        target = soft_q_target(batch.reward, s.critic_target(batch.next_obs, next_action), next_log_prob,
                               alpha=alpha, discount=batch.discount, terminated=batch.terminated)
    q = s.critic(batch.obs, batch.action)
    critic_loss = (q - target).pow(2).mean(1).sum()
    step(s.critic_opt, critic_loss)

    # Actor: maximise min_k Q_k(s, a~pi) + alpha H.
    action, log_prob = s.actor(batch.obs).rsample_with_log_prob()
    with frozen(s.critic):
        q_pi = s.critic(batch.obs, action).min(0).values
    actor_loss = (alpha * log_prob - q_pi).mean()
    step(s.actor_opt, actor_loss)

    # Temperature.
    if auto_alpha:
        alpha_loss = temperature_loss(s.log_alpha, log_prob, target_entropy=target_entropy)
        step(s.alpha_opt, alpha_loss)

    polyak_update(s.critic_target.parameters(), s.critic.parameters(), tau=tau)
    return {
        "loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(),
        "train/alpha": alpha, "train/entropy": -log_prob.detach().mean(), "train/q": q.detach().mean(),
    }


@dataclass
class ModelSACState(SACState):
    """SAC's state plus the dynamics ensemble it learns from (MBPO, MOPO; saved with the agent)."""

    dynamics: DynamicsEnsemble
    dynamics_opt: torch.optim.Optimizer
    model_fitted: Tensor
    """1 once the ensemble has been fitted."""


def sac_act(actor: GaussianPolicy, obs: Tensor, *, deterministic: bool) -> Tensor:
    """The SAC family's actions: the squashed Gaussian's mode, or a sample."""
    dist = actor(obs)
    return dist.mode() if deterministic else dist.sample()


def build_model_sac_state(c: Any, spec: EnvSpec, device: torch.device) -> ModelSACState:
    """SAC's state plus a fresh dynamics ensemble configured by the config's ``model`` section (MBPO, MOPO)."""
    return with_dynamics(build_sac_state(c, spec, device), c.model.dynamics_config(), spec, device)


def with_dynamics(state: SACState, dynamics: DynamicsConfig, spec: EnvSpec, device: torch.device) -> ModelSACState:
    """``state`` extended with a fresh dynamics ensemble configured by ``dynamics``."""
    model = DynamicsEnsemble(spec.obs_dim, spec.action_dim, dynamics).to(device)
    return ModelSACState(**{f.name: getattr(state, f.name) for f in fields(state)},
                         dynamics=model, dynamics_opt=model.make_optimizer(), model_fitted=torch.zeros((), device=device))


# -- IQL's critics ---------------------------------------------------------------------------------------


def iql_critic_step(critic: QEnsemble, critic_target: QEnsemble, value: ValueNet, critic_opt: torch.optim.Optimizer,
                    value_opt: torch.optim.Optimizer, batch: TransitionBatch, *, reward_scale: float | Tensor,
                    expectile: float) -> tuple[Tensor, Tensor, Tensor]:
    """One IQL step of ``V`` (eq. 5: expectile of the target critics' minimum) and then of the critics (eq. 6:
    regress onto ``r + gamma V(s')`` with the updated ``V``). Returns ``(value loss, critic loss, advantage
    min_k Q'_k(s, a) - V(s))``, all detached."""
    with torch.no_grad():
        q_target = critic_target(batch.obs, batch.action).min(0).values
    value_loss, adv = iql_value_loss(q_target, value(batch.obs), expectile=expectile)
    step(value_opt, value_loss)
    with torch.no_grad():
        next_v = value(batch.next_obs)
    critic_loss = iql_q_loss(critic(batch.obs, batch.action), batch.reward * reward_scale, next_v,
                             discount=batch.discount, terminated=batch.terminated)
    step(critic_opt, critic_loss)
    return value_loss.detach(), critic_loss.detach(), adv.detach()
