"""polyrl's own offline datasets, as the offline harnesses use them (``offline.py``, ``offline_to_online.py``,
``model_based.py``): the envs, the recipes and budgets of ``offline.py make-data``, where the datasets go, and the
reference returns of their normalised scores.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from _harness import WORK

DATA_DIR = WORK / "datasets"
QUICK_DATA_DIR = WORK / "datasets-quick"

# -- environments, dataset recipes and reference returns ------------------------------------------
# Normalised score = 100 (R - R_random) / (R_expert - R_random), with the reference returns polyrl.data.reference()
# picks for the env id: polyrl's own measurement of that exact id when it ships one (Hopper-v5: a uniformly random
# policy and a 200k-step polyrl SAC), else D4RL's published constants for the family (measured on the v2 envs).
# Every record names the source it used.
ENVS: dict[str, dict[str, Any]] = {
    "hopper": {"env_id": "Hopper-v5"},
    "halfcheetah": {"env_id": "HalfCheetah-v5"},
}
KINDS = ("medium", "medium-replay", "medium-expert")

# make-data budgets: one polyrl SAC run per env; "medium" is its policy at medium_steps, "expert" at
# expert_steps; medium-replay is its replay buffer up to medium_steps; medium-expert = medium + expert.
MAKE_DATA = {"expert_steps": 60_000, "medium_steps": 20_000, "transitions": 100_000, "learning_starts": 1000}
MAKE_DATA_QUICK = {"expert_steps": 3_000, "medium_steps": 2_000, "transitions": 5_000, "learning_starts": 1000}
SAC_SEED, MEDIUM_COLLECT_SEED, EXPERT_COLLECT_SEED = 0, 1, 2


def env_reference(env: str) -> dict[str, Any]:
    """The reference returns of ``env``'s normalised scores and their source, as stored in records and metadata."""
    from polyrl.data.scores import reference

    ref = reference(ENVS[env]["env_id"])
    assert ref is not None, env
    source = ("polyrl-measured (polyrl/data/references.json: " + ref.provenance.get("expert_policy", "")
              + ")") if ref.source == "polyrl" else "D4RL published constants (v2 envs)"
    return {"random": ref.random, "expert": ref.expert, "source": source}


def normalized_score(env: str, ret: float) -> float:
    ref = env_reference(env)
    return 100.0 * (ret - ref["random"]) / (ref["expert"] - ref["random"])


def make_data(envs: list[str], data_dir: Path, budget: dict[str, int], threads: int, force: bool) -> None:
    """Build ``<env>-{medium,medium-replay,medium-expert}`` under ``data_dir`` from one polyrl SAC run per env.

    The SAC agent learns for ``medium_steps`` env steps; its replay buffer so far
    is medium-replay and ``transitions`` steps of its stochastic policy are
    medium. It then learns on to ``expert_steps``, and ``transitions`` steps of
    that policy are expert (kept as ``<env>-expert``); medium-expert is medium
    followed by expert. The unfinished last episode of each collection is
    marked truncated (a cut bootstraps, like a time limit), so episodes stay
    separate when datasets are joined.
    """
    import numpy as np
    import torch

    import polyrl
    from polyrl.data import Dataset
    from polyrl.data.collect import collect

    torch.set_num_threads(threads)
    for env in envs:
        env_id = ENVS[env]["env_id"]
        outputs = [data_dir / f"{env}-{k}" for k in (*KINDS, "expert")]
        if not force and all((p / "meta.json").exists() for p in outputs):
            print(f"{env}: datasets exist in {data_dir} (--force to rebuild)", flush=True)
            continue
        medium_steps, expert_steps, n = budget["medium_steps"], budget["expert_steps"], budget["transitions"]
        sac_cfg = dict(learning_starts=budget["learning_starts"], buffer_size=expert_steps)
        run_dir = data_dir / "_sac" / env
        shutil.rmtree(run_dir, ignore_errors=True)
        base = {"made_by": "benchmarks/offline.py make-data", "sac": {"algo": "sac", "env_id": env_id,
                "seed": SAC_SEED, "config": sac_cfg, "run_dir": str(run_dir)}, "budget": dict(budget),
                "reference_returns": env_reference(env)}
        print(f"{env}: SAC {env_id} for {medium_steps} env steps (medium policy)", flush=True)
        t0 = time.perf_counter()
        agent = polyrl.make("sac", env=env_id, seed=SAC_SEED, run_dir=run_dir, **sac_cfg)
        agent.learn(medium_steps, progress=False, eval_every=0, eval_episodes=0, tensorboard=False)
        t_medium = time.perf_counter() - t0
        assert agent.trainer is not None
        buf = agent.trainer.source.buffer  # type: ignore[union-attr]
        size = len(buf)
        low, high = np.asarray(agent.spec.action_low), np.asarray(agent.spec.action_high)
        action = buf.action[:size, 0].cpu().numpy()
        action = (low + (action + 1.0) * 0.5 * (high - low)).astype(np.float32)  # [-1, 1] -> the env's space
        replay = Dataset(buf.obs[:size, 0].cpu().numpy(), action, buf.reward[:size, 0].cpu().numpy(),
                         buf.next_obs[:size, 0].cpu().numpy(), buf.terminated[:size, 0].cpu().numpy() > 0.5,
                         buf.truncated[:size, 0].cpu().numpy() > 0.5,
                         meta=base | {"env_id": env_id, "spec": agent.spec.to_json(), "recipe": "medium-replay",
                                      "source": f"SAC replay buffer, env steps 0..{medium_steps}",
                                      "sac_train_s": round(t_medium, 1)})
        _close_cut(replay)
        replay.save(data_dir / f"{env}-medium-replay")
        medium = _collect(collect, agent, env_id, n, MEDIUM_COLLECT_SEED, base | {"recipe": "medium",
                          "sac_steps": medium_steps, "sac_train_s": round(t_medium, 1)})
        medium.save(data_dir / f"{env}-medium")
        print(f"{env}: SAC on to {expert_steps} env steps (expert policy)", flush=True)
        t1 = time.perf_counter()
        agent.learn(expert_steps - medium_steps, progress=False, eval_every=0, eval_episodes=0, tensorboard=False)
        t_expert = t_medium + time.perf_counter() - t1
        expert = _collect(collect, agent, env_id, n, EXPERT_COLLECT_SEED, base | {"recipe": "expert",
                          "sac_steps": expert_steps, "sac_train_s": round(t_expert, 1)})
        expert.save(data_dir / f"{env}-expert")
        agent.close()
        both = Dataset.concatenate([medium, expert], meta=base | {
            "env_id": env_id, "spec": medium.meta["spec"], "recipe": "medium-expert",
            "parts": [medium.meta, expert.meta]})
        both.save(data_dir / f"{env}-medium-expert")
        for p in outputs:
            info = Dataset.load(p).info()
            print(f"  {p.name:26s} {info['transitions']:>8d} transitions {info['episodes']:>5d} episodes  "
                  f"return {info['mean_return']:8.1f} +- {info['std_return']:6.1f}  "
                  f"(score {normalized_score(env, info['mean_return']):5.1f})", flush=True)
        print(f"{env}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def _collect(collect: Any, agent: Any, env_id: str, n: int, seed: int, provenance: dict[str, Any]) -> Any:
    import torch

    print(f"  collecting {n} transitions ({provenance['recipe']}, stochastic policy, seed {seed})", flush=True)
    # collect() seeds the env and its NumPy draws, but the policy samples its actions from torch's global RNG:
    # seed that too, or the same command gives different datasets.
    torch.manual_seed(seed)
    ds = collect(env_id, n, agent=agent, seed=seed, provenance=provenance | {"torch_seed": seed})
    _close_cut(ds)
    return ds


def _close_cut(ds: Any) -> None:
    """Mark an unfinished final episode truncated (a cut: it bootstraps), recording that in meta."""
    if not (ds.terminated[-1] or ds.truncated[-1]):
        ds.truncated[-1] = True
        ds.meta["last_episode_cut"] = True
