"""One measured d3rlpy offline run; started by ``benchmarks/offline.py`` with the d3rlpy virtualenv's python.

Takes the run's JSON spec (library-neutral hyperparameters, see ``offline.py``)
as its only argument and prints one JSON line of results. It never imports
polyrl: the dataset directory's ``.npy`` files are read with NumPy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from _runner_common import UpdateWindow, emit, read_spec, set_threads

FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


def load_dataset(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The polyrl dataset directory's arrays and meta.json."""
    import numpy as np

    root = Path(path)
    meta = json.loads((root / "meta.json").read_text())
    arrays = {f: np.load(root / f"{f}.npy", allow_pickle=False) for f in FIELDS}
    return arrays, meta


def episode_flags(arrays: dict[str, Any]) -> tuple[Any, Any, int]:
    """d3rlpy's ``terminals`` and ``timeouts`` for polyrl's transitions, and how many cuts had to be added.

    d3rlpy rebuilds episodes from the observation sequence (the next
    observation of a transition is the following row's observation) and
    splits them where ``terminals | timeouts`` is set; the two may not both be
    set. polyrl stores ``next_obs`` per row, so an episode that was cut
    without a flag (the last, unfinished one of a collection; a seam between
    concatenated datasets) is found where the next row does not continue it,
    and marked as a timeout, as is the final row unless it terminated.
    """
    import numpy as np

    terminals = arrays["terminated"].astype(bool)
    timeouts = arrays["truncated"].astype(bool) & ~terminals
    ends = terminals | timeouts
    obs, next_obs = arrays["obs"], arrays["next_obs"]
    continues = np.all(obs[1:].reshape(len(obs) - 1, -1) == next_obs[:-1].reshape(len(obs) - 1, -1), axis=1)
    cut = ~ends[:-1] & ~continues
    timeouts[:-1] |= cut
    added = int(cut.sum())
    if not ends[-1]:
        timeouts[-1] = True
        added += 1
    return terminals.astype(np.float32), timeouts.astype(np.float32), added


def make_config(algo: str, hp: dict[str, Any], steps: int, action_low: Any, action_high: Any) -> Any:
    """Map the neutral hyperparameters onto d3rlpy's config classes."""
    import numpy as np
    from d3rlpy.algos import CQLConfig, IQLConfig, PRDCConfig, TD3PlusBCConfig
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.optimizers import AdamFactory, CosineAnnealingLRFactory
    from d3rlpy.preprocessing import MinMaxActionScaler, ReturnBasedRewardScaler, StandardObservationScaler

    encoder = VectorEncoderFactory(hidden_units=list(hp["hidden"]), activation="relu")
    common: dict[str, Any] = dict(batch_size=hp["batch_size"], gamma=hp["gamma"], tau=hp["tau"],
                                  n_critics=hp["n_critics"], actor_learning_rate=hp["actor_lr"],
                                  critic_learning_rate=hp["critic_lr"], actor_encoder_factory=encoder,
                                  critic_encoder_factory=encoder)
    if hp["normalize_obs"]:
        common["observation_scaler"] = StandardObservationScaler()
    if not (np.all(np.asarray(action_low) == -1.0) and np.all(np.asarray(action_high) == 1.0)):
        common["action_scaler"] = MinMaxActionScaler(minimum=np.asarray(action_low, np.float32),
                                                     maximum=np.asarray(action_high, np.float32))
    td3 = dict(target_smoothing_sigma=hp.get("target_noise"), target_smoothing_clip=hp.get("noise_clip"),
               update_actor_interval=hp.get("policy_delay"), alpha=hp.get("alpha"))
    if algo == "td3bc":
        return TD3PlusBCConfig(**common, **td3)
    if algo == "prdc":
        return PRDCConfig(**common, **td3, beta=hp["beta"])
    if algo == "iql":
        if hp["value_lr"] != hp["critic_lr"]:
            raise ValueError("d3rlpy's IQL trains Q and V with one optimizer: value_lr must equal critic_lr")
        actor_optim = (AdamFactory(lr_scheduler_factory=CosineAnnealingLRFactory(T_max=steps))
                       if hp["cosine_actor_lr"] else AdamFactory())
        extra: dict[str, Any] = {}
        if hp["return_scaled_reward"]:
            extra["reward_scaler"] = ReturnBasedRewardScaler(multiplier=1000.0)
        return IQLConfig(**common, value_encoder_factory=encoder, actor_optim_factory=actor_optim,
                         expectile=hp["expectile"], weight_temp=hp["beta"], max_weight=hp["max_weight"], **extra)
    if algo == "cql":
        if hp["auto_cql_alpha"]:
            raise ValueError("the harness maps only fixed-weight CQL onto d3rlpy")
        # alpha_learning_rate=0 keeps d3rlpy's Lagrange multiplier at initial_alpha=1: the loss is then
        # w * (gap - alpha_threshold), whose gradient is polyrl's fixed-weight w * gap.
        return CQLConfig(**common, temp_learning_rate=hp["temperature_lr"], initial_temperature=hp["init_temperature"],
                         alpha_learning_rate=0.0, initial_alpha=1.0, conservative_weight=hp["cql_weight"],
                         n_action_samples=hp["n_action_samples"], soft_q_backup=hp["backup_entropy"])
    raise ValueError(f"no d3rlpy mapping for {algo!r}")


def evaluate(algo: Any, env_id: str, episodes: int, seed: int) -> list[float]:
    """Deterministic episodes laid out as polyrl's evaluation: ``min(episodes, 5)`` env copies, copy ``i``
    seeded ``seed + i`` at its first reset and running an equal share of the episodes back to back."""
    import gymnasium as gym
    import numpy as np

    n = min(max(episodes, 1), 5)
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    returns: list[float] = []
    for i in range(n):
        env = gym.make(env_id)
        obs, _ = env.reset(seed=seed + i)
        for _ in range(quota[i]):
            total, done = 0.0, False
            while not done:
                action = algo.predict(np.asarray(obs, np.float32)[None])[0]
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
            obs, _ = env.reset()
        env.close()
    return returns


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import logging

    import numpy as np
    import structlog

    # d3rlpy logs through structlog to stdout; keep only warnings.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import d3rlpy
    import gymnasium as gym
    import torch
    from d3rlpy.algos.qlearning import prdc as d3rlpy_prdc
    from d3rlpy.constants import ActionSpace
    from d3rlpy.dataset import MDPDataset
    from d3rlpy.logging import NoopAdapterFactory
    from sklearn.neighbors import NearestNeighbors

    algo_name, seed, hp, steps = spec["algo"], spec["seed"], spec["hp"], spec["steps"]
    out: dict[str, Any] = {"lib": "d3rlpy", "version": d3rlpy.__version__, "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "seed": seed, "gymnasium": gym.__version__}
    t0 = time.perf_counter()
    arrays, meta = load_dataset(spec["dataset"])
    env_id = meta["env_id"]
    terminals, timeouts, added = episode_flags(arrays)
    out["cuts_marked"] = added
    probe = gym.make(env_id)
    low, high = probe.action_space.low, probe.action_space.high
    probe.close()
    d3rlpy.seed(seed)
    dataset = MDPDataset(observations=arrays["obs"], actions=arrays["action"].astype(np.float32),
                         rewards=arrays["reward"].astype(np.float32), terminals=terminals, timeouts=timeouts,
                         action_space=ActionSpace.CONTINUOUS, action_size=int(arrays["action"].shape[1]))
    out["d3rlpy_transitions"] = int(dataset.transition_count)
    if algo_name == "prdc":
        # d3rlpy's PRDC searches with a class-level NearestNeighbors(n_jobs=-1), i.e. every core; give it the
        # same thread budget as torch (and as polyrl's single-threaded KD-tree query).
        d3rlpy_prdc.PRDC._nbsr = NearestNeighbors(n_neighbors=1, algorithm="auto", n_jobs=spec["threads"])
    algo = make_config(algo_name, hp, steps, low, high).create(device="cpu:0")
    window = UpdateWindow(lambda: 0)
    # fit() samples a batch and calls algo.update(batch) once per gradient step.
    algo.update = window.wrap(algo.update)  # type: ignore[method-assign]
    setup_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False, save_interval=10**9,
             logger_adapter=NoopAdapterFactory(), experiment_name=f"{algo_name}-s{seed}", with_timestamp=False)
    out["learn_call_s"] = time.perf_counter() - t1
    out["setup_s"] = setup_s
    out.update(window.summary(int(algo.grad_step)))
    for key in ("learn_phase_env_steps", "steps_per_s"):  # no env is stepped offline
        out.pop(key)
    out["learn_call_updates_per_s"] = int(algo.grad_step) / out["learn_call_s"]
    t2 = time.perf_counter()
    returns = evaluate(algo, env_id, spec["eval_episodes"], seed + spec["eval_seed_offset"])
    out["eval_s"] = time.perf_counter() - t2
    out["eval_return"], out["eval_std"] = float(np.mean(returns)), float(np.std(returns))
    out["eval_returns"] = returns
    out["total_s"] = time.perf_counter() - t0
    emit(out)


if __name__ == "__main__":
    main()
