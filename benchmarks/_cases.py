"""Library-neutral hyperparameters read by more than one harness (plain data).

``online.py`` (polyrl vs Stable-Baselines3) builds its ``CASES`` from the
online dicts and ``offline.py`` (polyrl vs d3rlpy) runs ``OFFLINE_HP`` (its
``ALGOS``); ``floor.py`` measures the same updates at the same settings. The
runners (``_polyrl_runner.py``, ``_sb3_runner.py``, ``_polyrl_offline_runner.py``,
``_d3rlpy_runner.py``) map them onto each library.
"""

from __future__ import annotations

from typing import Any

# -- online.py: said once, for both libraries ----------------------------------------------------
OFF_POLICY = dict(learning_starts=1000, batch_size=256, buffer_size=1_000_000, train_freq=1, gradient_steps=1,
                  learning_rate=3e-4, tau=0.005, gamma=0.99, hidden=[256, 256])
SAC_HP = dict(OFF_POLICY)
TD3_HP = dict(OFF_POLICY, policy_delay=2, target_noise=0.2, noise_clip=0.5, exploration_noise=0.1)
# RL Zoo's CartPole-v1 DQN. SB3 updates the target every 10 env steps; with 128 gradient steps every 256 env
# steps that is one copy per round of updates, i.e. polyrl's target_update_interval=128 (it counts gradient
# updates). SB3's DQN uses the plain max target, so polyrl's double-Q is switched off to run the same algorithm.
DQN_HP = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
              target_update_env_steps=10, target_update_gradient_steps=128, train_freq=256, gradient_steps=128,
              exploration_fraction=0.16, exploration_final_eps=0.04, max_grad_norm=10.0, double_q=False,
              hidden=[256, 256])
# RL Zoo's CartPole-v1 PPO; 64x64 tanh, separate actor and critic (SB3's default MlpPolicy).
PPO_HP = dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98, ent_coef=0.0,
              learning_rate=1e-3, clip_range=0.2, anneal=True, vf_coef=0.5, max_grad_norm=0.5,
              hidden=[64, 64], activation="tanh")
# Every online case of an algorithm uses its one set of hyperparameters, whatever the env.
ONLINE_HP: dict[str, dict[str, Any]] = {"sac": SAC_HP, "td3": TD3_HP, "dqn": DQN_HP, "ppo": PPO_HP}

# -- offline.py: said once, for both libraries (polyrl's defaults) -------------------------------
OFFLINE_COMMON = dict(batch_size=256, hidden=[256, 256], gamma=0.99, tau=0.005, n_critics=2, normalize_obs=True)
OFFLINE_TD3 = dict(actor_lr=3e-4, critic_lr=3e-4, policy_delay=2, target_noise=0.2, noise_clip=0.5, alpha=2.5)
OFFLINE_HP: dict[str, dict[str, Any]] = {
    "td3bc": dict(OFFLINE_COMMON, **OFFLINE_TD3),
    "iql": dict(OFFLINE_COMMON, actor_lr=3e-4, critic_lr=3e-4, value_lr=3e-4, expectile=0.7, beta=3.0, max_weight=100.0,
                cosine_actor_lr=True, return_scaled_reward=True),
    "cql": dict(OFFLINE_COMMON, actor_lr=1e-4, critic_lr=3e-4, temperature_lr=1e-4, init_temperature=1.0, cql_weight=5.0,
                n_action_samples=10, auto_cql_alpha=False, backup_entropy=False),
    "prdc": dict(OFFLINE_COMMON, **OFFLINE_TD3, beta=2.0),
}
