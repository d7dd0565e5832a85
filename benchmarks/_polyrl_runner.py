"""One measured polyrl run; started by ``benchmarks/online.py`` in a fresh interpreter.

Takes the run's JSON spec (library-neutral hyperparameters, see ``online.py``)
as its only argument and prints one JSON line of results.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from _runner_common import EvalClock, Solved, UpdateWindow, emit, read_spec, set_threads


def polyrl_config(algo: str, hp: dict[str, Any]) -> dict[str, Any]:
    """Map the neutral hyperparameters onto polyrl's config fields."""
    if algo == "sac":
        return dict(learning_starts=hp["learning_starts"], batch_size=hp["batch_size"], buffer_size=hp["buffer_size"],
                    train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"], actor_lr=hp["learning_rate"],
                    critic_lr=hp["learning_rate"], alpha_lr=hp["learning_rate"], tau=hp["tau"], gamma=hp["gamma"],
                    hidden=tuple(hp["hidden"]))
    if algo == "td3":
        return dict(learning_starts=hp["learning_starts"], batch_size=hp["batch_size"], buffer_size=hp["buffer_size"],
                    train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"], actor_lr=hp["learning_rate"],
                    critic_lr=hp["learning_rate"], tau=hp["tau"], gamma=hp["gamma"], policy_delay=hp["policy_delay"],
                    target_noise=hp["target_noise"], noise_clip=hp["noise_clip"],
                    exploration_noise=hp["exploration_noise"], hidden=tuple(hp["hidden"]))
    if algo == "dqn":
        return dict(learning_rate=hp["learning_rate"], batch_size=hp["batch_size"], buffer_size=hp["buffer_size"],
                    learning_starts=hp["learning_starts"], gamma=hp["gamma"],
                    target_update_interval=hp["target_update_gradient_steps"], train_freq=hp["train_freq"],
                    gradient_steps=hp["gradient_steps"], exploration_fraction=hp["exploration_fraction"],
                    exploration_final_eps=hp["exploration_final_eps"], max_grad_norm=hp["max_grad_norm"],
                    double_q=hp["double_q"], hidden=tuple(hp["hidden"]))
    if algo == "ppo":
        return dict(n_envs=hp["n_envs"], n_steps=hp["n_steps"], batch_size=hp["batch_size"], n_epochs=hp["n_epochs"],
                    gae_lambda=hp["gae_lambda"], gamma=hp["gamma"], learning_rate=hp["learning_rate"],
                    anneal_lr=hp["anneal"], clip_range=hp["clip_range"], anneal_clip=hp["anneal"],
                    ent_coef=hp["ent_coef"], vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"],
                    hidden=tuple(hp["hidden"]), activation=hp["activation"])
    raise ValueError(f"no polyrl mapping for {algo!r}")


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import torch

    import polyrl

    algo, seed, hp = spec["algo"], spec["seed"], spec["hp"]
    settings = dict(progress=False, tensorboard=False)
    out: dict[str, Any] = {"lib": "polyrl", "version": polyrl.__version__, "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "seed": seed}
    t0 = time.perf_counter()
    agent = polyrl.make(algo, env=spec["env"], seed=seed, run_dir=spec["run_dir"], **polyrl_config(algo, hp))
    try:
        if spec["mode"] == "throughput":
            window = UpdateWindow(lambda: agent.algo.env_steps)
            # The trainer calls agent.algo.update(batch) once per gradient update.
            agent.algo.update = window.wrap(agent.algo.update)  # type: ignore[method-assign]
            # eval_episodes=0: no built-in evaluation; the final one is done (off the clock) below.
            agent.learn(spec["steps"], eval_every=0, eval_episodes=0, **settings)
            out["total_s"] = time.perf_counter() - t0
            out.update(window.summary(agent.algo.n_updates))
            out["env_steps"] = agent.algo.env_steps
            res = agent.evaluate(spec["eval_episodes"], seed=seed + spec["eval_seed_offset"])
            out["eval_return"], out["eval_std"] = res.mean_return, res.std_return
        elif spec["mode"] == "threshold":
            clock = EvalClock(spec["threshold"], lambda: agent.algo.env_steps)
            clock.t0 = t0
            evaluate = agent.evaluate

            def timed_evaluate(episodes: int = 10, seed: int | None = None) -> Any:
                held: dict[str, Any] = {}

                def run() -> float:
                    held["result"] = evaluate(episodes, seed)
                    return held["result"].mean_return

                if clock.evaluate(run):
                    raise Solved
                return held["result"]

            # The trainer evaluates through agent.evaluate every eval_every steps and once at the end.
            agent.evaluate = timed_evaluate  # type: ignore[method-assign]
            try:
                agent.learn(spec["steps"], eval_every=spec["eval_every"], eval_episodes=spec["eval_episodes"], **settings)
            except Solved:
                pass
            out.update(clock.summary())
            out["env_steps"] = agent.algo.env_steps
            out["updates"] = agent.algo.n_updates
        else:
            raise ValueError(f"unknown mode {spec['mode']!r}")
    finally:
        agent.close()
        shutil.rmtree(spec["run_dir"], ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main()
