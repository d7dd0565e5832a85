"""One measured Stable-Baselines3 run; started by ``benchmarks/online.py`` with the SB3 virtualenv's python.

Takes the run's JSON spec (library-neutral hyperparameters, see ``online.py``)
as its only argument and prints one JSON line of results. It never imports polyrl.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from _runner_common import EvalClock, UpdateWindow, emit, read_spec, set_threads


def linear(start: float) -> Callable[[float], float]:
    """SB3 schedule: ``progress_remaining`` goes 1 -> 0 over the budget, so this decays ``start`` -> 0."""
    return lambda progress_remaining: progress_remaining * start


def make_model(algo: str, env: Any, seed: int, hp: dict[str, Any]) -> Any:
    """Map the neutral hyperparameters onto SB3's constructor arguments."""
    import numpy as np
    from stable_baselines3 import DQN, PPO, SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    common = dict(seed=seed, device="cpu", verbose=0)
    if algo == "sac":
        return SAC("MlpPolicy", env, learning_rate=hp["learning_rate"], buffer_size=hp["buffer_size"],
                   learning_starts=hp["learning_starts"], batch_size=hp["batch_size"], tau=hp["tau"], gamma=hp["gamma"],
                   train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"], ent_coef="auto",
                   policy_kwargs=dict(net_arch=list(hp["hidden"])), **common)
    if algo == "td3":
        dim = env.action_space.shape[0]
        noise = NormalActionNoise(np.zeros(dim), hp["exploration_noise"] * np.ones(dim))
        return TD3("MlpPolicy", env, learning_rate=hp["learning_rate"], buffer_size=hp["buffer_size"],
                   learning_starts=hp["learning_starts"], batch_size=hp["batch_size"], tau=hp["tau"], gamma=hp["gamma"],
                   train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"], action_noise=noise,
                   policy_delay=hp["policy_delay"], target_policy_noise=hp["target_noise"],
                   target_noise_clip=hp["noise_clip"], policy_kwargs=dict(net_arch=list(hp["hidden"])), **common)
    if algo == "dqn":
        return DQN("MlpPolicy", env, learning_rate=hp["learning_rate"], buffer_size=hp["buffer_size"],
                   learning_starts=hp["learning_starts"], batch_size=hp["batch_size"], tau=1.0, gamma=hp["gamma"],
                   train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"],
                   target_update_interval=hp["target_update_env_steps"], exploration_fraction=hp["exploration_fraction"],
                   exploration_final_eps=hp["exploration_final_eps"], max_grad_norm=hp["max_grad_norm"],
                   policy_kwargs=dict(net_arch=list(hp["hidden"])), **common)
    if algo == "ppo":
        return PPO("MlpPolicy", env, learning_rate=linear(hp["learning_rate"]) if hp["anneal"] else hp["learning_rate"],
                   n_steps=hp["n_steps"], batch_size=hp["batch_size"], n_epochs=hp["n_epochs"], gamma=hp["gamma"],
                   gae_lambda=hp["gae_lambda"], clip_range=linear(hp["clip_range"]) if hp["anneal"] else hp["clip_range"],
                   ent_coef=hp["ent_coef"], vf_coef=hp["vf_coef"], max_grad_norm=hp["max_grad_norm"],
                   policy_kwargs=dict(net_arch=dict(pi=list(hp["hidden"]), vf=list(hp["hidden"])),
                                      activation_fn=_activation(hp["activation"])), **common)
    raise ValueError(f"no SB3 mapping for {algo!r}")


def _activation(name: str) -> Any:
    from torch import nn

    return {"tanh": nn.Tanh, "relu": nn.ReLU}[name]


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    algo, seed, hp = spec["algo"], spec["seed"], spec["hp"]
    eval_seed = seed + spec["eval_seed_offset"]
    out: dict[str, Any] = {"lib": "stable-baselines3", "version": sb3.__version__, "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "seed": seed}
    t0 = time.perf_counter()
    env = make_vec_env(spec["env"], n_envs=hp.get("n_envs", 1), seed=seed)
    model = make_model(algo, env, seed, hp)

    if spec["mode"] == "throughput":
        window = UpdateWindow(lambda: model.num_timesteps)
        # learn() calls model.train(gradient_steps=..., batch_size=...) once per round of gradient updates.
        model.train = window.wrap(model.train)
        model.learn(spec["steps"])
        out["total_s"] = time.perf_counter() - t0
        out.update(window.summary(model._n_updates))
        out["env_steps"] = model.num_timesteps
        eval_env = make_vec_env(spec["env"], n_envs=1, seed=eval_seed)
        mean, std = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=True)
        out["eval_return"], out["eval_std"] = float(mean), float(std)
    elif spec["mode"] == "threshold":
        clock = EvalClock(spec["threshold"], lambda: model.num_timesteps)
        clock.t0 = t0
        # Same layout as polyrl's evaluation env: min(episodes, 5) copies, re-seeded for every evaluation.
        eval_env = make_vec_env(spec["env"], n_envs=min(spec["eval_episodes"], 5), seed=eval_seed)

        def run_eval() -> float:
            eval_env.seed(eval_seed)
            mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=True)
            return float(mean)

        every = spec["eval_every"]

        class EvalEvery(BaseCallback):
            """Evaluate when the step count crosses a multiple of ``every``, after the update (as polyrl's trainer does)."""

            def __init__(self) -> None:
                super().__init__()
                self.last = 0
                self.solved = False

            def _on_rollout_start(self) -> None:  # runs after the previous iteration's train()
                now = self.model.num_timesteps
                crossed = now // every > self.last // every
                self.last = now
                if crossed and not self.solved:
                    self.solved = clock.evaluate(run_eval)

            def _on_step(self) -> bool:
                return not self.solved

            def _on_training_end(self) -> None:  # the final evaluation, as at the end of polyrl's learn()
                if not self.solved:
                    self.solved = clock.evaluate(run_eval)

        model.learn(spec["steps"], callback=EvalEvery())
        out.update(clock.summary())
        out["env_steps"] = model.num_timesteps
        out["updates"] = model._n_updates
    else:
        raise ValueError(f"unknown mode {spec['mode']!r}")
    env.close()
    emit(out)


if __name__ == "__main__":
    main()
