"""One measured polyrl offline run; started by ``benchmarks/offline.py`` in a fresh interpreter.

Takes the run's JSON spec (library-neutral hyperparameters, see ``offline.py``)
as its only argument and prints one JSON line of results.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from _runner_common import UpdateWindow, emit, read_spec, set_threads


def polyrl_config(algo: str, hp: dict[str, Any]) -> dict[str, Any]:
    """Map the neutral hyperparameters onto polyrl's config fields."""
    common = dict(batch_size=hp["batch_size"], gamma=hp["gamma"], hidden=tuple(hp["hidden"]),
                  normalize_obs=hp["normalize_obs"], n_critics=hp["n_critics"], tau=hp["tau"],
                  actor_lr=hp["actor_lr"], critic_lr=hp["critic_lr"])
    if algo in ("td3bc", "prdc"):
        cfg = dict(common, alpha=hp["alpha"], policy_delay=hp["policy_delay"], target_noise=hp["target_noise"],
                   noise_clip=hp["noise_clip"])
        if algo == "prdc":
            cfg["beta"] = hp["beta"]
        return cfg
    if algo == "iql":
        return dict(common, value_lr=hp["value_lr"], expectile=hp["expectile"], beta=hp["beta"],
                    max_weight=hp["max_weight"], cosine_actor_lr=hp["cosine_actor_lr"],
                    normalize_reward=hp["return_scaled_reward"])
    if algo == "cql":
        return dict(common, alpha_lr=hp["temperature_lr"], init_alpha=hp["init_temperature"],
                    cql_weight=hp["cql_weight"], n_action_samples=hp["n_action_samples"],
                    auto_cql_alpha=hp["auto_cql_alpha"], backup_entropy=hp["backup_entropy"])
    raise ValueError(f"no polyrl mapping for {algo!r}")


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import torch

    import polyrl

    algo, seed = spec["algo"], spec["seed"]
    out: dict[str, Any] = {"lib": "polyrl", "version": polyrl.__version__, "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "seed": seed, "polyrl_path": polyrl.__file__}
    t0 = time.perf_counter()
    # Loading the dataset, its observation statistics and (PRDC) the search tree happen here, off the clock.
    agent = polyrl.make(algo, dataset=spec["dataset"], seed=seed, run_dir=spec["run_dir"],
                        **polyrl_config(algo, spec["hp"]))
    try:
        out["setup_s"] = time.perf_counter() - t0
        window = UpdateWindow(lambda: 0)
        # The trainer calls agent.algo.update(batch) once per gradient update.
        agent.algo.update = window.wrap(agent.algo.update)  # type: ignore[method-assign]
        t1 = time.perf_counter()
        agent.learn(spec["steps"], progress=False, eval_every=0, eval_episodes=0, tensorboard=False)
        out["learn_call_s"] = time.perf_counter() - t1
        out.update(window.summary(agent.algo.n_updates))
        for key in ("learn_phase_env_steps", "steps_per_s"):  # no env is stepped offline
            out.pop(key)
        out["learn_call_updates_per_s"] = agent.algo.n_updates / out["learn_call_s"]
        if algo == "prdc" and agent.trainer is not None:
            share = agent.trainer.last_metrics.get("time/search_share")
            out["search_share"] = None if share is None else float(share)
        t2 = time.perf_counter()
        res = agent.evaluate(spec["eval_episodes"], seed=seed + spec["eval_seed_offset"])
        out["eval_s"] = time.perf_counter() - t2
        out["eval_return"], out["eval_std"] = res.mean_return, res.std_return
        out["eval_returns"] = list(res.returns)
        out["total_s"] = time.perf_counter() - t0
    finally:
        agent.close()
        shutil.rmtree(spec["run_dir"], ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main()
