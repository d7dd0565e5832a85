"""Learning tests with fixed seeds: each algorithm solves a small task within a small budget."""

from __future__ import annotations

import json

import pytest

import polyrl

pytestmark = pytest.mark.slow
QUIET = {"progress": False, "tensorboard": False, "eval_every": 0}


def test_ppo_solves_cartpole(tmp_path):
    # RL Zoo CartPole hyperparameters
    agent = polyrl.make("ppo", "CartPole-v1", seed=0, run_dir=tmp_path, n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8,
                        gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=1e-3, anneal_clip=True)
    agent.learn(50_000, eval_episodes=10, **QUIET)
    assert agent.evaluate(20, seed=123).mean_return >= 475


def test_sac_solves_pendulum(tmp_path):
    agent = polyrl.make("sac", "Pendulum-v1", seed=0, run_dir=tmp_path, learning_starts=1000)
    agent.learn(7_000, eval_episodes=10, **QUIET)
    assert agent.evaluate(10, seed=123).mean_return >= -250


def test_dqn_solves_cartpole(tmp_path):
    # RL Zoo CartPole hyperparameters (target update every 128 gradient updates = SB3's 10 env steps at this ratio)
    agent = polyrl.make("dqn", "CartPole-v1", seed=0, run_dir=tmp_path, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                        learning_starts=1000, target_update_interval=128, train_freq=256, gradient_steps=128,
                        exploration_fraction=0.16, exploration_final_eps=0.04)
    agent.learn(40_000, eval_episodes=10, progress=False, tensorboard=False, eval_every=5_000)
    # DQN on CartPole oscillates after solving it (so does SB3's with these settings): the test asks that it
    # reaches the threshold during training, read from the run's own evaluation log.
    evals = [json.loads(line)["eval/return"] for line in open(tmp_path / "metrics.jsonl") if "eval/return" in line]
    assert len(evals) == 8 and max(evals) >= 195


def test_td3_improves_on_pendulum(tmp_path):
    agent = polyrl.make("td3", "Pendulum-v1", seed=0, run_dir=tmp_path, learning_starts=1000)
    agent.learn(8_000, eval_episodes=10, **QUIET)
    assert agent.evaluate(10, seed=123).mean_return >= -300
