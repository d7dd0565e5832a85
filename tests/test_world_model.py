"""World-model agent: sequence backbones, scans, DreamSmooth, two-hot, DFS, sequence sampling, end-to-end runs."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import polyrl
from polyrl.data.replay import ReplayBuffer
from polyrl.data.sequence import (
    SequenceBatch,
    dfs_imagination_weights,
    dfs_model_weights,
    gather_windows,
    sample_windows,
)
from polyrl.envs.pixels import PixelPendulum
from polyrl.models.smoothing import smooth_rewards
from polyrl.nets.sequence import KINDS, make_sequence_model, ssd_scan
from polyrl.returns import percentile_scale, symexp, symlog, twohot, twohot_mean

QUIET = {"progress": False, "tensorboard": False, "eval_episodes": 1, "eval_every": 0}
TINY = {"learning_starts": 40, "buffer_size": 600, "batch_size": 3, "seq_len": 8, "train_freq": 8, "d_model": 16,
        "latent_groups": 4, "latent_classes": 4, "hidden": (16,), "imag_batch": 6, "imag_context": 3, "imag_horizon": 4,
        "cnn_depth": 4}


# -- sequence models ---------------------------------------------------------------------------------
def test_ssd_scan_equals_the_recurrence():
    """The chunked parallel scan against s_t = exp(log_a_t) s_{t-1} + x_t b_t^T, y_t = s_t c_t, with resets."""
    g = torch.Generator().manual_seed(0)
    bsz, t, h, p, n = 2, 23, 3, 4, 5
    x = torch.randn(bsz, t, h, p, generator=g)
    log_a = -torch.rand(bsz, t, h, generator=g) * 2
    b, c = torch.randn(bsz, t, n, generator=g), torch.randn(bsz, t, n, generator=g)
    reset = torch.zeros(bsz, t, dtype=torch.bool)
    reset[0, 7] = reset[1, 8] = reset[1, 9] = True  # inside a chunk, at a chunk start, twice in a row
    s0 = torch.randn(bsz, h, p, n, generator=g)
    y, final = ssd_scan(x, log_a, b, c, reset, s0, chunk=8)
    s, ys = s0.clone(), []
    for i in range(t):
        s = s * (~reset[:, i]).float()[:, None, None, None]
        s = torch.exp(log_a[:, i])[..., None, None] * s + x[:, i, :, :, None] * b[:, i, None, None, :]
        ys.append((s * c[:, i, None, None, :]).sum(-1))
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final, s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_parallel_forward_equals_step_by_step(kind):
    torch.manual_seed(0)
    model = make_sequence_model(kind, 5, 16, 2, context=6, chunk=4, head_dim=8, n_heads=2)
    x = torch.randn(3, 13, 5)
    reset = torch.zeros(3, 13, dtype=torch.bool)
    reset[0, 4] = reset[2, 1] = reset[2, 11] = True
    y, state = model(x, None, reset)
    s, ys = None, []
    for t in range(13):
        h, s = model.step(x[:, t], s, reset[:, t])
        ys.append(h)
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-5, atol=1e-5)
    # continuing from the parallel pass's state equals continuing the recurrence
    x2 = torch.randn(3, 5)
    torch.testing.assert_close(model.step(x2, state)[0], model.step(x2, s)[0], rtol=1e-5, atol=1e-5)
    # a reset makes the history irrelevant
    fresh, _ = model.step(x2, None)
    torch.testing.assert_close(model.step(x2, state, torch.ones(3, dtype=torch.bool))[0], fresh, rtol=1e-5, atol=1e-5)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="gru, transformer, ssm"):
        make_sequence_model("lstm", 3, 8)
    with pytest.raises(polyrl.errors.ConfigError, match="backbone"):
        polyrl.make("dreamer", env="CartPole-v1", backbone="lstm")
    with pytest.raises(polyrl.errors.ConfigError, match="normalize_obs=False"):
        polyrl.make("dreamer", env="polyrl/PixelCartPole-v0", normalize_obs=True)


# -- pure functions ------------------------------------------------------------------------------
def test_dreamsmooth_kernels_match_hand_computed_values():
    impulse = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0], dtype=np.float32)
    # gaussian, sigma 1: weights exp(-k^2/2) for |k| <= 4 (scipy truncates at 4 sigma), normalised
    norm = 1 + 2 * (math.exp(-0.5) + math.exp(-2) + math.exp(-4.5) + math.exp(-8))
    out = smooth_rewards(impulse, "gaussian", 1.0)
    np.testing.assert_allclose(out[4], 1 / norm, rtol=1e-6)
    np.testing.assert_allclose(out[3], math.exp(-0.5) / norm, rtol=1e-6)
    np.testing.assert_allclose(out[2], math.exp(-2) / norm, rtol=1e-6)
    np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-6)
    # 'nearest' edges: a constant episode stays constant
    np.testing.assert_allclose(smooth_rewards(np.full(5, 2.0), "gaussian", 3.0), np.full(5, 2.0), rtol=1e-6)
    # uniform window 3, edges repeat the end values
    np.testing.assert_allclose(smooth_rewards(np.array([0, 0, 9, 0, 0]), "uniform", 3), [0, 3, 3, 3, 0], atol=1e-6)
    np.testing.assert_allclose(smooth_rewards(np.array([3, 0, 0]), "uniform", 3), [2, 1, 0], atol=1e-6)
    # causal EMA, alpha 0.5: r~0 = r0, r~t = 0.5 r_t + 0.5 r~_{t-1}
    np.testing.assert_allclose(smooth_rewards(np.array([2, 0, 4, 0]), "ema", 0.5), [2, 1, 2.5, 1.25], atol=1e-6)
    for kind in ("gaussian", "uniform", "ema", "none"):  # zero amount = off
        np.testing.assert_array_equal(smooth_rewards(impulse, kind, 0), impulse)
    with pytest.raises(ValueError, match="gaussian"):
        smooth_rewards(impulse, "median", 3)


def test_symlog_and_twohot():
    x = torch.tensor([-1000.0, -3.5, -0.2, 0.0, 0.7, 42.0, 1e4])
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(symlog(torch.tensor([math.e - 1, 0.0, -(math.e - 1)])), torch.tensor([1.0, 0.0, -1.0]))
    bins = torch.tensor([0.0, 1.0, 2.0])
    torch.testing.assert_close(twohot(torch.tensor([0.25, 2.0, 5.0, -1.0]), bins),
                               torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    bins = torch.linspace(-20, 20, 255)
    enc = twohot(symlog(x), bins)
    torch.testing.assert_close(enc.sum(-1), torch.ones(len(x)))
    torch.testing.assert_close((enc * bins).sum(-1), symlog(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(twohot_mean(torch.log(enc + 1e-30), bins), x, rtol=1e-4, atol=1e-4)  # decode round trip


def test_percentile_scale():
    r = torch.arange(101.0)  # P5 = 5, P95 = 95
    torch.testing.assert_close(percentile_scale(r, torch.tensor(1.0), decay=0.5), torch.tensor(0.5 * 1 + 0.5 * 90))


def test_dfs_probabilities_follow_the_formula():
    n = torch.tensor([[0.0, 10.0], [20.0, 5.0]])
    p = dfs_model_weights(n)
    expected = torch.exp(-n / 10) / torch.exp(-n / 10).sum()
    torch.testing.assert_close(p, expected)
    m = torch.tensor([[64.0, 0.0], [640.0, 64.0]])
    score = torch.tensor([[-1.0, 0.0], [0.0, 0.0]]) / 10  # min(0, n - m/64) / 10
    q = dfs_imagination_weights(n, m)
    torch.testing.assert_close(q, torch.softmax(score.flatten(), 0).view(2, 2))


# -- sequence sampling -------------------------------------------------------------------------------
def _filled_buffer(total: int, steps: int = 20, n_envs: int = 2, episode: int = 7) -> ReplayBuffer:
    buf = ReplayBuffer(steps * n_envs, (1,), (), n_envs=n_envs, discrete=True)
    for k in range(total):  # obs = global step; episodes of env i end every `episode + i` steps
        ends = np.array([(k + 1) % (episode + i) == 0 for i in range(n_envs)])
        buf.add(np.full((n_envs, 1), k), np.zeros(n_envs), np.zeros(n_envs), np.full((n_envs, 1), k + 1), ends, np.zeros(n_envs))
    return buf


@pytest.mark.parametrize("total", [13, 20, 47])  # partly filled, exactly full, wrapped around
def test_windows_never_cross_the_write_head_and_flag_episode_starts(total):
    buf = _filled_buffer(total)
    g = torch.Generator().manual_seed(0)
    t0, e = sample_windows(buf, 500, 6, g)
    b = gather_windows(buf, t0, e, 6)
    steps = b.obs[..., 0]
    assert torch.all(steps[:, 1:] - steps[:, :-1] == 1), "a window jumped in time (crossed the write head)"
    assert steps.min() >= max(0, total - 20) and steps.max() <= total - 1
    # is_first exactly where the previous step ended an episode (or the oldest stored step)
    for i in range(len(e)):
        period = 7 + int(e[i])
        for k in range(1, 6):
            assert bool(b.is_first[i, k]) == (int(steps[i, k]) % period == 0)
        if int(steps[i, 0]) == max(0, total - 20):
            assert b.is_first[i, 0] == 1
    assert set(e.tolist()) == {0, 1}


def test_weighted_sampling_uses_the_weights():
    buf = _filled_buffer(30)
    w = torch.zeros(20 - 6 + 1, 2)
    w[3, 1] = 1.0  # only the 4th oldest start of env 1
    t0, e = sample_windows(buf, 10, 6, torch.Generator().manual_seed(0), w)
    assert torch.all(e == 1)
    assert torch.all(buf.obs[t0, e][:, 0] == 30 - 20 + 3)


# -- the agent ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_each_backbone_trains_and_acts_on_a_vector_task(kind, tmp_path):
    agent = polyrl.make("dreamer", env="CartPole-v1", seed=0, backbone=kind, run_dir=tmp_path, **TINY)
    before = {k: v.clone() for k, v in agent.algo.weights().items()}
    agent.learn(96, **QUIET)
    assert agent.algo.n_updates == (96 - 40) // 8 + 1
    changed = [k for k, v in agent.algo.weights().items() if not torch.equal(before[k], v)]
    assert any(k.startswith("seq.") for k in changed) and any(k.startswith("actor.") for k in changed)
    assert agent.act(np.zeros(4, np.float32)) in (0, 1)
    assert len(agent.evaluate(2).returns) == 2


def test_pixel_task_and_cnn_encoder(tmp_path):
    env = gym.make("polyrl/PixelPendulum-v0", size=16)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16, 16, 1) and obs.dtype == np.uint8 and obs.max() == 255
    right = PixelPendulum(size=16).draw(np.array([np.pi / 2, 0.0]))  # rod pointing right: the right half lights up
    assert right[:, 9:].sum() > right[:, :7].sum()
    agent = polyrl.make("dreamer", env="polyrl/PixelPendulum-v0", env_kwargs={"size": 16}, seed=0, backbone="ssm",
                        run_dir=tmp_path, **TINY)
    agent.learn(64, **QUIET)
    assert agent.algo.n_updates > 0
    action = agent.act(obs)
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
    cart = gym.make("polyrl/PixelCartPole-v0")
    assert cart.reset(seed=0)[0].shape == (32, 32, 1)


def test_recurrent_acting_resets_at_episode_starts(tmp_path):
    agent = polyrl.make("dreamer", env="CartPole-v1", seed=0, backbone="transformer", run_dir=tmp_path, **TINY)
    algo = agent.algo
    obs = torch.randn(5, 7, 4)
    carry, first = None, torch.ones(5, dtype=torch.bool)
    for t in range(6):
        _, carry = algo.act_recurrent(obs[:, t], first, carry, deterministic=True)
        first = torch.zeros(5, dtype=torch.bool)
    assert carry.h.abs().sum() > 0
    restarted, _ = algo.act_recurrent(obs[:, 6], torch.ones(5, dtype=torch.bool), carry, deterministic=True)
    torch.testing.assert_close(restarted, algo.act(obs[:, 6], deterministic=True))


def test_dfs_and_dreamsmooth_in_the_source(tmp_path):
    agent = polyrl.make("dreamer", env="CartPole-v1", seed=0, sampling="dfs", reward_smoothing="gaussian", run_dir=tmp_path, **TINY)
    agent.learn(120, **QUIET)
    src = agent.trainer.source
    assert src.model_counts.sum() == agent.algo.n_updates * TINY["batch_size"]
    assert src.imag_counts.sum() == agent.algo.n_updates * TINY["imag_batch"]
    # a finished CartPole episode (reward 1 every step) stays 1 under the 'nearest' gaussian; the raw rewards are kept
    assert torch.allclose(src.smoothed[: src.added, 0], torch.ones(src.added))
    assert torch.equal(src.buffer.reward[: src.added, 0], torch.ones(src.added))
    with pytest.raises(polyrl.errors.ConfigError, match="sampling"):
        polyrl.make("dreamer", env="CartPole-v1", sampling="prioritised")


def test_resume_with_dfs_and_dreamsmooth_continues_identically(tmp_path):
    kw = dict(env="CartPole-v1", seed=1, backbone="ssm", sampling="dfs", reward_smoothing="ema", **TINY)
    a = polyrl.make("dreamer", run_dir=tmp_path / "a", **kw)
    a.learn(160, checkpoint_every=80, keep_checkpoints=5, **QUIET)
    mid = sorted((a.run_dir / "checkpoints").glob("step_*"))[0]
    b = polyrl.load(mid, run_dir=tmp_path / "b")
    b.learn(**QUIET)
    assert b.algo.n_updates == a.algo.n_updates
    for k, v in a.algo.weights().items():
        torch.testing.assert_close(v, b.algo.weights()[k], rtol=0, atol=0, msg=k)
    torch.testing.assert_close(a.trainer.source.model_counts, b.trainer.source.model_counts, rtol=0, atol=0)


def test_agent_policy_carries_memory_across_calls(tmp_path):
    agent = polyrl.make("dreamer", env="Pendulum-v1", seed=0, backbone="gru", run_dir=tmp_path / "wm", **TINY)
    obs = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    pi = agent.policy()
    first = pi(obs)  # the first call starts episodes
    np.testing.assert_allclose(first, agent.act(obs), atol=1e-6)
    second = pi(obs)  # same observations, with one step of memory: different actions
    assert not np.allclose(second, first)
    np.testing.assert_allclose(pi(obs, episode_start=[True, False, True])[[0, 2]], first[[0, 2]], atol=1e-6)
    pi.reset()
    np.testing.assert_allclose(pi(obs[0]), first[0], atol=1e-6)  # a single observation works too
    ppo = polyrl.make("ppo", env="Pendulum-v1", seed=0, n_steps=16)  # memoryless agents: the same as act
    np.testing.assert_allclose(ppo.policy()(obs), ppo.act(obs))


def test_pixel_latents_learn_the_pole_angle(tmp_path):
    """The CNN world model's latents carry the state: a linear probe reads the pole angle from them and the
    reconstruction beats the mean image after 150 updates (without the CNN's layer norms it stayed at the mean image)."""
    env = gym.make("polyrl/PixelCartPole-v0", size=16)
    rng = np.random.default_rng(0)
    frames, first, theta = [], [], []
    obs, _ = env.reset(seed=0)
    start = 1.0
    for _ in range(1500):
        frames.append(obs)
        first.append(start)
        theta.append(env.unwrapped.state[2])
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        start = 0.0
        if terminated or truncated:
            obs, _ = env.reset()
            start = 1.0
    images, is_first, theta = torch.tensor(np.stack(frames), dtype=torch.float32), torch.tensor(first), np.array(theta)
    agent = polyrl.make("dreamer", env="polyrl/PixelCartPole-v0", env_kwargs={"size": 16}, seed=0, run_dir=tmp_path,
                        d_model=32, hidden=(64,), latent_groups=8, latent_classes=8, cnn_depth=8, seq_len=8, model_lr=1e-3)
    algo, gen = agent.algo, torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, len(images) - 8, (16,), generator=gen)[:, None] + torch.arange(8)
        batch = SequenceBatch(images[idx], torch.zeros(16, 8, dtype=torch.long), torch.ones(16, 8), torch.zeros(16, 8),
                              is_first[idx], idx)
        loss, _ = algo.world_model_loss(batch)
        algo.state.model_opt.zero_grad()
        loss.backward()
        algo.state.model_opt.step()
    with torch.no_grad():
        z = algo._latent(algo.state.encoder(images), "mode")
        recon = algo.state.decoder.loss(z, images).mean().item()
    centred = images / 255 - 0.5
    mean_image = (centred - centred.mean(0)).pow(2).flatten(1).sum(-1).mean().item()
    assert recon < 0.9 * mean_image
    x = np.c_[z.numpy(), np.ones(len(z))]
    w = np.linalg.lstsq(x[:1000], theta[:1000], rcond=None)[0]  # fit on the first 1000 frames, score on the rest
    r2 = 1 - ((x[1000:] @ w - theta[1000:]) ** 2).mean() / theta[1000:].var()
    assert r2 > 0.3
