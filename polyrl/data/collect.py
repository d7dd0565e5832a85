"""Collect a dataset by running a policy (a trained agent, or uniform random actions) in an environment."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polyrl._version import __version__
from polyrl.data.dataset import Dataset
from polyrl.envs import VecEnv

if TYPE_CHECKING:
    from polyrl.agent import Agent


def collect(
    env_id: str,
    steps: int,
    *,
    agent: Agent | None = None,
    seed: int = 0,
    deterministic: bool = False,
    noise: float = 0.0,
    env_kwargs: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Dataset:
    """Roll out ``steps`` transitions and return them as a :class:`Dataset`.

    Args:
        env_id: Gymnasium id.
        steps: transitions to record (an episode cut by the budget is marked truncated: it
            bootstraps, and datasets can be concatenated without merging episodes).
        agent: the policy; ``None`` draws uniformly random actions.
        seed: seeds the env, the random/noise draws and the policy's sampling (the caller's
            torch RNG is left as it was).
        deterministic: act with the policy's mode instead of sampling.
        noise: std of Gaussian noise added to (normalised) continuous actions, then clipped.
        env_kwargs: keyword arguments for ``gymnasium.make``.
        provenance: extra metadata to record (e.g. a recipe name).
    """
    env = VecEnv(env_id, 1, seed=seed, env_kwargs=env_kwargs)
    if agent is not None and agent.spec.obs_shape != env.spec.obs_shape:
        raise ValueError(f"the policy was trained on {agent.env_id}, whose observations do not match {env_id}")
    spec, rng = env.spec, np.random.default_rng(seed)
    obs_buf = np.zeros((steps, *spec.obs_shape), np.float32)
    next_buf = np.zeros_like(obs_buf)
    act_buf = np.zeros((steps,), np.int64) if spec.action_kind == "discrete" else np.zeros((steps, spec.action_dim), np.float32)
    rew_buf = np.zeros(steps, np.float32)
    term_buf, trunc_buf = np.zeros(steps, bool), np.zeros(steps, bool)
    obs = env.reset()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for t in range(steps):
            if agent is None:
                action = (rng.integers(spec.action_dim, size=1) if spec.action_kind == "discrete"
                          else rng.uniform(-1.0, 1.0, size=(1, spec.action_dim)))
            else:
                action = agent.act_normalized(obs, deterministic=deterministic)
            if noise > 0 and spec.action_kind == "box":
                action = np.clip(action + rng.normal(0.0, noise, size=action.shape), -1.0, 1.0)
            res = env.step(action)
            obs_buf[t], next_buf[t], act_buf[t] = obs[0], res.next_obs[0], env.to_env_action(action)[0]
            rew_buf[t], term_buf[t], trunc_buf[t] = res.reward[0], res.terminated[0], res.truncated[0]
            obs = res.obs
    if not (term_buf[-1] or trunc_buf[-1]):
        trunc_buf[-1] = True  # cut by the budget: it bootstraps, and concatenation keeps episodes apart
    returns = [r for r, _ in env.drain_episodes()]
    env.close()
    meta = {
        "env_id": env.env_id, "spec": spec.to_json(), "policy": "random" if agent is None else str(agent.run_dir or agent.algo_cls.name),
        "policy_algo": None if agent is None else agent.algo_cls.name, "seed": seed, "steps": steps,
        "deterministic": deterministic, "noise": noise, "episodes_completed": len(returns),
        "policy_return": float(np.mean(returns)) if returns else None, "polyrl_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    } | dict(provenance or {})
    return Dataset(obs_buf, act_buf, rew_buf, next_buf, term_buf, trunc_buf, meta=meta, name=f"{env.env_id} collection")
