"""Shared fixtures: tiny configs so every algorithm trains in a fraction of a second."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

TINY = {
    "cmorl": {"n_steps": 16, "n_minibatches": 2, "n_epochs": 2, "population": 2, "n_envs": 2, "hidden": (16, 16),
              "archive_every": 1, "archive_episodes": 1, "archive_size": 8},
    "ppo": {"n_steps": 32, "batch_size": 16, "n_epochs": 2, "hidden": (16, 16)},
    "sac": {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000, "hidden": (16, 16)},
    "td3": {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000, "hidden": (16, 16)},
    "dqn": {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000, "hidden": (16, 16), "target_update_interval": 20},
    "bc": {"batch_size": 16, "hidden": (16, 16)},
    "td3bc": {"batch_size": 16, "hidden": (16, 16)},
    "iql": {"batch_size": 16, "hidden": (16, 16)},
    "cql": {"batch_size": 16, "hidden": (16, 16), "n_action_samples": 4},
    "prdc": {"batch_size": 16, "hidden": (16, 16)},
    "unio4": {"batch_size": 16, "q_hidden": (16, 16), "v_hidden": (16, 16), "actor_hidden": (16, 16), "n_policies": 2,
              "gate_every": 5, "gate_states": 16, "gate_horizon": 3, "model_hidden": (16, 16), "model_epochs": 2,
              "selection_episodes": 1, "selection_top_k": 2, "n_steps": 32, "online_minibatch": 16, "online_epochs": 2},
    "mbpo": {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000, "hidden": (16, 16), "gradient_steps": 1,
             "model_hidden": (16, 16), "model_max_epochs": 2, "model_min_updates": 20, "model_train_freq": 100, "rollout_freq": 50,
             "rollout_batch_size": 32, "epoch_length": 50, "rollout_max_length": 3, "rollout_min_epoch": 1, "rollout_max_epoch": 4},
    "mopo": {"batch_size": 16, "hidden": (16, 16), "model_hidden": (16, 16), "model_max_epochs": 2, "model_min_updates": 20, "rollout_freq": 50,
             "rollout_batch_size": 32, "rollout_length": 2},
    "dreamer": {"learning_starts": 50, "buffer_size": 1000, "batch_size": 4, "seq_len": 8, "train_freq": 5, "d_model": 16,
                "latent_groups": 4, "latent_classes": 4, "hidden": (16,), "imag_batch": 8, "imag_context": 3, "imag_horizon": 4},
}


def env_for(algo: str) -> str:
    """A fast env whose action space the algorithm handles."""
    from polyrl import algos

    cls = algos.get(algo)
    if cls.vector_reward:
        return "deep-sea-treasure-concave-v0"
    return "Pendulum-v1" if "box" in cls.action_kinds else "CartPole-v1"


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory):
    """Saved random-policy datasets (600 transitions) for Pendulum-v1 and CartPole-v1, keyed by env id."""
    from polyrl.data.collect import collect

    root = tmp_path_factory.mktemp("datasets")
    return {env: collect(env, 600, seed=1).save(root / env) for env in ("Pendulum-v1", "CartPole-v1")}


def agent_kwargs(algo: str, datasets: dict | None = None) -> dict:
    """Keyword arguments that make a tiny agent of ``algo`` (with a dataset for offline algorithms)."""
    from polyrl import algos

    kw = {"env": env_for(algo), **TINY[algo]}
    if algos.get(algo).regime == "offline":
        kw["dataset"] = datasets[kw["env"]]
    return kw


class NaNRewardEnv(gym.Env):
    """Returns a NaN reward on the third step (for the bad-input tests)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t == 3 else 1.0
        return np.zeros(3, np.float32), reward, False, self.t >= 10, {}


if "PolyrlNaN-v0" not in gym.registry:
    gym.register("PolyrlNaN-v0", entry_point=NaNRewardEnv)


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny nets run fastest on one thread; learning tests (256-wide nets) use every core."""
    before = torch.get_num_threads()
    torch.set_num_threads(before if request.node.get_closest_marker("slow") else 1)
    yield
    torch.set_num_threads(before)
