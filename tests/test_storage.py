"""Replay and rollout storage."""

from __future__ import annotations

import numpy as np
import torch

from polyrl.data import ReplayBuffer, RolloutBuffer


def _fill(buf: ReplayBuffer, steps: int, done_at: dict[int, str] | None = None) -> None:
    done_at = done_at or {}
    for t in range(steps):
        obs = np.full((buf.n_envs, 2), t, np.float32)
        buf.add(obs, np.zeros((buf.n_envs, 1), np.float32), np.full(buf.n_envs, float(t), np.float32), obs + 1,
                np.full(buf.n_envs, done_at.get(t) == "term"), np.full(buf.n_envs, done_at.get(t) == "trunc"))


def test_replay_one_step_sample_is_consistent():
    buf = ReplayBuffer(100, (2,), (1,), n_envs=2)
    _fill(buf, 10)
    assert len(buf) == 20
    b = buf.sample(64, torch.Generator().manual_seed(0), gamma=0.9)
    torch.testing.assert_close(b.reward, b.obs[:, 0])  # reward t stored with obs t
    torch.testing.assert_close(b.next_obs, b.obs + 1)
    assert torch.all(b.discount == 0.9)


def test_replay_sample_rows_are_the_sampled_indices():
    """``sample`` gathers row ``t * n_envs + e`` of every field, the transition its ``index`` names."""
    buf = ReplayBuffer(60, (2,), (1,), n_envs=3)
    _fill(buf, 12)
    buf.action.copy_(torch.arange(buf.steps * 3, dtype=torch.float32).view(buf.steps, 3, 1))
    b = buf.sample(50, torch.Generator().manual_seed(1), gamma=0.9)
    t, e = buf.sample_index(50, torch.Generator().manual_seed(1))
    torch.testing.assert_close(b.index, t * 3 + e)
    torch.testing.assert_close(b.obs, buf.obs[t, e])
    torch.testing.assert_close(b.next_obs, buf.next_obs[t, e])
    torch.testing.assert_close(b.action[:, 0], b.index.float())
    torch.testing.assert_close(b.terminated, buf.terminated[t, e])

def test_replay_wraps_around():
    buf = ReplayBuffer(5, (2,), (1,))
    _fill(buf, 8)
    assert len(buf) == 5 and buf.full
    b = buf.sample(200, torch.Generator().manual_seed(0), gamma=0.9)
    assert set(b.reward.tolist()) == {3.0, 4.0, 5.0, 6.0, 7.0}


def test_replay_nstep_stops_at_termination():
    buf = ReplayBuffer(50, (2,), (1,))
    _fill(buf, 10, {4: "term"})
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        b = buf.sample(32, g, gamma=0.5, n_step=3)
        for i in range(32):
            t = int(b.obs[i, 0])
            k = min(3, 4 - t + 1) if t <= 4 else min(3, 10 - t)  # window cut by termination at 4, by newest at 9
            expected = sum(0.5**j * (t + j) for j in range(k))
            assert abs(b.reward[i].item() - expected) < 1e-5
            assert b.discount[i].item() == 0.5**k
            assert b.next_obs[i, 0].item() == t + k  # next_obs of step t+k-1
            assert b.terminated[i].item() == float(t <= 4 and t + k - 1 == 4)


def test_replay_state_round_trip():
    buf = ReplayBuffer(20, (2,), (1,))
    _fill(buf, 7)
    other = ReplayBuffer(20, (2,), (1,))
    other.load_state_dict(buf.state_dict())
    assert other.pos == buf.pos and len(other) == len(buf)
    torch.testing.assert_close(other.obs, buf.obs)


def test_rollout_next_value_filled_from_following_value_except_at_ends():
    rb = RolloutBuffer(3, 1, (1,), (), discrete=True)
    values = [1.0, 2.0, 3.0]
    dones = [0.0, 1.0, 0.0]
    for t in range(3):
        rb.add(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1), torch.tensor([values[t]]),
               torch.zeros(1), torch.zeros(1), torch.tensor([dones[t]]), torch.tensor([10.0 * (t + 1)]))
    r = rb.finish(torch.tensor([7.0]))
    assert r.next_value[:, 0].tolist() == [2.0, 20.0, 7.0]
