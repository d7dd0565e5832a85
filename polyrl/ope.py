"""Off-policy evaluation of an agent's deterministic policy on a dataset, with bootstrap confidence intervals.

* :func:`fqe`, fitted Q evaluation (Le et al. 2019): regress
  ``Q(s, a) <- r + gamma (1 - d) Q'(s', pi(s'))`` over the dataset (the
  target net ``Q'`` tracks ``Q`` with a fast Polyak rate, 0.05, so the value
  propagates over the horizon within a few thousand steps), then
  ``V = E_{s0}[Q(s0, pi(s0))]`` over the dataset's initial states. A
  *discounted* value. The interval bootstraps the initial states (the
  variance of fitting Q is not included).
* :func:`model_based`: roll the policy out in a probabilistic dynamics
  ensemble fitted to the dataset (:mod:`polyrl.models.dynamics`), from the
  dataset's initial states, for the env's episode length; the estimate is the
  mean *undiscounted* return, comparable with ``agent.evaluate``. A rollout
  ends where the model's learned termination head says so, or, with
  ``termination="auto"``, where the task's known rule does. The interval
  bootstraps the rollouts.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from polyrl.data.dataset import Dataset
from polyrl.models.dynamics import DynamicsConfig, DynamicsEnsemble, fit_dynamics, termination_rule
from polyrl.nets.heads import DiscreteQ, QEnsemble
from polyrl.optim import adam

if TYPE_CHECKING:
    from polyrl.agent import Agent


@dataclass(frozen=True)
class OPEResult:
    """An off-policy estimate with a percentile-bootstrap confidence interval."""

    method: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    samples: int
    quantity: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_ci(values: np.ndarray, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(n_boot, len(values)), replace=True).mean(1)
    tail = (1.0 - confidence) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def initial_states(dataset: Dataset) -> np.ndarray:
    """Observations that start an episode in the dataset."""
    starts = np.concatenate([[0], dataset.episode_ends()[:-1] + 1])
    return np.asarray(dataset.obs[starts])


Policy = Callable[[Tensor], Tensor]
"""A deterministic policy on normalised observations (``polyrl.algos.base.candidates(agent.algo)`` gives such)."""


def _acting(agent: Agent, policy: Policy | None) -> Callable[[Tensor], Tensor]:
    """Raw observations -> normalised actions, by ``policy`` or else the agent's own deterministic policy."""
    pi = policy if policy is not None else (lambda x: agent.algo.act(x, deterministic=True))
    return lambda obs: pi(agent.obs_norm(obs))


def fqe(agent: Agent, dataset: Dataset, *, steps: int = 20_000, gamma: float = 0.99, batch_size: int = 256,
        learning_rate: float = 3e-4, tau: float = 0.05, hidden: tuple[int, ...] = (256, 256), seed: int = 0,
        confidence: float = 0.95, policy: Policy | None = None) -> OPEResult:
    """Fitted Q evaluation of ``policy`` (default: the agent's); see the module docstring."""
    act = _acting(agent, policy)
    spec, device = agent.spec, agent.device
    buf = dataset.buffer(spec, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        discrete = spec.action_kind == "discrete"
        q = (DiscreteQ(spec.obs_dim, spec.action_dim, hidden) if discrete else QEnsemble(1, spec.obs_dim, spec.action_dim, hidden)).to(device)
    q_target = copy.deepcopy(q).requires_grad_(False)
    opt = adam(q.parameters(), learning_rate)

    def value(net: torch.nn.Module, obs: Tensor, action: Tensor) -> Tensor:
        x = agent.obs_norm(obs)
        return net(x).gather(-1, action.long().unsqueeze(-1)).squeeze(-1) if discrete else net(x, action)[0]

    for _ in range(steps):
        b = buf.sample(batch_size, gen, gamma=gamma)
        with torch.no_grad():
            target = b.reward + b.discount * (1.0 - b.terminated) * value(q_target, b.next_obs, act(b.next_obs))
        loss = (value(q, b.obs, b.action) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(q_target.parameters()), list(q.parameters()), tau)
    s0 = torch.as_tensor(initial_states(dataset), device=device)
    with torch.no_grad():
        v0 = value(q, s0, act(s0)).cpu().numpy().astype(np.float64)
    lo, hi = bootstrap_ci(v0, confidence=confidence, seed=seed)
    return OPEResult("fqe", float(v0.mean()), lo, hi, confidence, len(v0), f"discounted value (gamma={gamma})")


def fit_model(agent: Agent, dataset: Dataset, *, cfg: DynamicsConfig | None = None, seed: int = 0) -> tuple[DynamicsEnsemble, dict[str, float]]:
    """The dynamics ensemble of :func:`model_based`, on the dataset's raw observations and normalised actions."""
    spec = agent.spec
    if spec.action_kind != "box":
        raise ValueError("model-based OPE needs continuous (Box) actions")
    buf = dataset.buffer(spec, agent.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fit_dynamics(buf.obs[:, 0], buf.action[:, 0], buf.reward[:, 0], buf.next_obs[:, 0], buf.terminated[:, 0],
                            cfg=cfg, seed=seed)


def model_based(agent: Agent, dataset: Dataset, *, model: DynamicsEnsemble | None = None, horizon: int | None = None,
                n_rollouts: int = 100, seed: int = 0, confidence: float = 0.95, policy: Policy | None = None,
                termination: str = "learned") -> OPEResult:
    """Model-based estimate of ``policy``'s (default: the agent's) undiscounted episode return; see the module docstring.

    ``termination`` decides where a rollout ends: ``"learned"`` (the default) by the model's learned termination
    head; ``"auto"`` by the task's known rule when polyrl has one (:func:`polyrl.models.dynamics.known_termination`,
    e.g. Hopper's healthy-state rule on the predicted observation), else by the head. Over whole episodes the
    model drifts, and the rule ends drifted rollouts that the head lets run: on polyrl's hopper-medium (a model
    fitted for 20 epochs; eight Uni-O4 policies with real returns 823-2767) the rule ranked them worse than the
    head (Spearman 0.57 vs 0.79), so the head stays the default here (Uni-O4's short gate rollouts use the rule).
    """
    rule = termination_rule(termination, agent.env_id)
    act = _acting(agent, policy)
    if model is None:
        model, _ = fit_model(agent, dataset, seed=seed)
    if horizon is None:
        horizon = gym.spec(agent.env_id).max_episode_steps or 1000
    device = agent.device
    gen = torch.Generator(device=device).manual_seed(seed)
    starts = initial_states(dataset)
    pick = np.random.default_rng(seed).integers(len(starts), size=n_rollouts)
    obs = torch.as_tensor(starts[pick], device=device)
    returns = torch.zeros(n_rollouts, device=device)
    alive = torch.ones(n_rollouts, dtype=torch.bool, device=device)
    for _ in range(horizon):
        with torch.no_grad():
            step = model.sample(obs, act(obs), gen, rule)  # the model sees raw observations, as the rule does
        obs, reward, terminated = step.next_obs, step.reward, step.terminated
        returns += reward * alive
        alive &= ~terminated
        if not alive.any():
            break
    values = returns.cpu().numpy().astype(np.float64)
    lo, hi = bootstrap_ci(values, confidence=confidence, seed=seed)
    return OPEResult("model", float(values.mean()), lo, hi, confidence, n_rollouts, f"return over {horizon} steps")
