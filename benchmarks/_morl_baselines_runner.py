"""One morl-baselines run (PGMORL or GPI-LS); started by ``benchmarks/morl.py`` with the morl virtualenv's python.

Takes the run's JSON spec as its only argument, trains one algorithm for one
seed and env-step budget, evaluates its final set of policies with the
benchmark's protocol, writes the result JSON to ``spec["out"]`` and prints it
as the last stdout line. It never imports polyrl.

The evaluation protocol is the one C-MORL's archive uses in ``morl.py``
(``eval_gamma=1``): each policy's value is the mean **undiscounted** vector
return of ``eval_episodes`` episodes with **deterministic** actions (the
Gaussian mean for PPO, the greedy GPI action for GPI-LS) in a fresh env whose
first reset is seeded ``seed + eval_seed_offset`` (the same episodes for
every policy of a run).

* **GPI-LS** (Alegre et al., AAMAS 2023; ``GPILS`` for discrete actions,
  ``GPILSContinuousAction`` for continuous ones) learns one weight-conditioned
  value function; its front is that policy evaluated, greedily with GPI over
  its weight support, at every weight of ``spec["front_weights"]`` (a simplex
  grid written by ``morl.py``), non-dominated points kept.
* **PGMORL** (Xu et al., ICML 2020; continuous actions only) keeps an archive
  of PPO policies. morl-baselines evaluates them by sampling actions on an
  env without the training env's observation normalisation and discounts
  the returns; here ``MOPPO.policy_eval`` is replaced by the protocol above,
  run on the observations normalised with the training envs' current running
  statistics (the ones the policy was just trained with, which all
  population members share). PGMORL's archive, its prediction model and its
  task selection therefore all see these evaluations, exactly as C-MORL's
  archive does, and its front is its archive.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from _runner_common import emit, read_spec, set_threads

# morl-baselines (imported inside the run functions) imports wandb at module level; never log anywhere.
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rollout_returns(env_id: str, act: Any, episodes: int, seed: int, obs_fn: Any = None) -> Any:
    """Mean undiscounted vector return of ``episodes`` episodes of ``act(obs)`` in a fresh env (first reset seeded)."""
    import mo_gymnasium as mo_gym
    import numpy as np

    env = mo_gym.make(env_id)
    totals = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed if ep == 0 else None)
        total = np.zeros(env.unwrapped.reward_space.shape[0])
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs if obs_fn is None else obs_fn(obs)))
            total += reward
            done = terminated or truncated
        totals.append(total)
    env.close()
    return np.mean(totals, axis=0)


def non_dominated(points: list[list[float]]) -> list[list[float]]:
    """Pareto-optimal points (maximisation), first copy of duplicates kept."""
    kept: list[list[float]] = []
    for i, p in enumerate(points):
        dominated = any(all(q[k] >= p[k] for k in range(len(p))) and any(q[k] > p[k] for k in range(len(p)))
                        for q in points)
        if not dominated and p not in points[:i]:
            kept.append(p)
    return kept


# -- GPI-LS ------------------------------------------------------------------------------------
def run_gpi_ls(spec: dict[str, Any]) -> dict[str, Any]:
    import mo_gymnasium as mo_gym
    import numpy as np
    import torch

    env_id, seed, hp = spec["env"], spec["seed"], dict(spec["hp"])
    train_kw = hp.pop("train", {})
    env = mo_gym.make(env_id)
    eval_env = mo_gym.make(env_id)  # GPI-LS's own weight selection evaluates on this one
    env.reset(seed=seed)
    env.action_space.seed(seed)
    eval_env.reset(seed=seed + 1)
    continuous = hasattr(env.action_space, "shape") and len(env.action_space.shape) > 0
    if continuous:
        from morl_baselines.multi_policy.gpi_pd.gpi_pd_continuous_action import GPILSContinuousAction as Algo
    else:
        from morl_baselines.multi_policy.gpi_pd.gpi_pd import GPILS as Algo
    agent = Algo(env, log=False, seed=seed, device="cpu", **hp)
    t0 = time.perf_counter()
    agent.train(total_timesteps=spec["steps"], eval_env=eval_env, ref_point=np.asarray(spec["ref_point"], dtype=float),
                known_pareto_front=None, checkpoints=False, **train_kw)
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    weights = [np.asarray(w, dtype=np.float32) for w in spec["front_weights"]]
    eval_seed = seed + spec["eval_seed_offset"]
    values = []
    for w in weights:
        # agent.eval is greedy (GPI over the weight support for discrete actions, the actor for continuous ones).
        with torch.no_grad():
            v = rollout_returns(env_id, lambda obs, w=w: agent.eval(obs, w), spec["eval_episodes"], eval_seed)
        values.append([float(x) for x in v])
    eval_s = time.perf_counter() - t1
    return {"all_values": values, "values": non_dominated(values), "train_s": train_s, "eval_s": eval_s,
            "env_steps": int(agent.global_step), "weight_support": [list(map(float, w)) for w in agent.weight_support]
            if hasattr(agent, "weight_support") else None}


# -- PGMORL -----------------------------------------------------------------------------------
def _obs_normaliser(vec_env: Any) -> Any:
    """The training envs' observation transform (running mean/std, then clip to [-10, 10]) as a function.

    Every sub-env of morl-baselines' PPO vector env keeps its own statistics;
    sub-env 0's are used (they see the same kind of data as the others).
    """
    import gymnasium as gym
    import numpy as np

    env = vec_env.envs[0]
    while not isinstance(env, gym.wrappers.NormalizeObservation):
        env = env.env
    rms, eps = env.obs_rms, getattr(env, "epsilon", 1e-8)

    def normalise(obs: Any) -> Any:
        return np.clip((obs - rms.mean) / np.sqrt(rms.var + eps), -10.0, 10.0)

    return normalise


def run_pgmorl(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch
    from morl_baselines.multi_policy.pgmorl.pgmorl import PGMORL
    from morl_baselines.single_policy.ser.mo_ppo import MOPPO

    env_id, seed, hp = spec["env"], spec["seed"], dict(spec["hp"])
    eval_seed = seed + spec["eval_seed_offset"]
    state: dict[str, Any] = {"eval_s": 0.0, "evaluations": 0}

    def policy_eval(self: Any, eval_env: Any, num_episodes: int = 5, scalarization: Any = np.dot,
                    weights: Any = None, log: bool = False) -> tuple[Any, Any, Any, Any]:
        """The benchmark's protocol in place of morl-baselines' (see the module docstring)."""
        t = time.perf_counter()
        normalise = _obs_normaliser(self.envs)
        low, high = self.envs.single_action_space.low, self.envs.single_action_space.high

        def act(obs: Any) -> Any:
            with torch.no_grad():
                mean = self.networks.actor_mean(torch.as_tensor(obs, dtype=torch.float32)[None])[0]
            return np.clip(mean.numpy(), low, high)

        vec = rollout_returns(env_id, act, spec["eval_episodes"], eval_seed, obs_fn=normalise)
        state["eval_s"] += time.perf_counter() - t
        state["evaluations"] += 1
        scalar = float(scalarization(weights, vec)) if weights is not None else float(np.sum(vec))
        return scalar, scalar, vec, vec

    MOPPO.policy_eval = policy_eval
    algo = PGMORL(env_id=env_id, origin=np.asarray(spec["ref_point"], dtype=float), seed=seed, log=False, device="cpu",
                  **hp)
    t0 = time.perf_counter()
    algo.train(total_timesteps=spec["steps"], eval_env=None, ref_point=np.asarray(spec["ref_point"], dtype=float))
    total_s = time.perf_counter() - t0
    values = [[float(x) for x in v] for v in algo.archive.evaluations]
    return {"values": non_dominated(values), "all_values": values, "train_s": total_s - state["eval_s"],
            "eval_s": state["eval_s"], "evaluations": state["evaluations"], "env_steps": int(algo.global_step)}


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    seed_everything(spec["seed"])
    from importlib import metadata

    import torch

    runners = {"gpi_ls": run_gpi_ls, "pgmorl": run_pgmorl}
    if spec["algo"] not in runners:
        raise SystemExit(f"unknown algo {spec['algo']!r}; expected one of {sorted(runners)}")
    t0 = time.perf_counter()
    out = runners[spec["algo"]](spec)
    out.update({"lib": "morl-baselines", "version": metadata.version("morl-baselines"),
                "mo_gymnasium": metadata.version("mo-gymnasium"), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "algo": spec["algo"], "env": spec["env"], "seed": spec["seed"],
                "budget_steps": spec["steps"], "wall_s": time.perf_counter() - t0})
    if spec.get("out"):
        path = Path(spec["out"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(path)
    emit(out)


if __name__ == "__main__":
    main()
