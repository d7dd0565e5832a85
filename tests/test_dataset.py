"""Datasets: native round trip, memory mapping, episodes, bad data, atomic writes, serving as a replay buffer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyrl.data import Dataset
from polyrl.data.collect import collect
from polyrl.envs import VecEnv
from polyrl.errors import DatasetError


def _hand_built(**over):
    fields = dict(obs=np.arange(10, dtype=np.float32).reshape(5, 2), action=np.zeros((5, 1), np.float32),
                  reward=np.array([1, 2, 3, 4, 5], np.float32), next_obs=np.arange(2, 12, dtype=np.float32).reshape(5, 2),
                  terminated=np.array([0, 1, 0, 0, 0], bool), truncated=np.array([0, 0, 0, 1, 0], bool))
    fields.update(over)
    meta = fields.pop("meta", {"env_id": "Pendulum-v1"})
    return Dataset(**fields, meta=meta, name="hand")


def test_episode_boundaries_and_returns():
    ds = _hand_built()
    assert ds.episode_ends().tolist() == [1, 3, 4]  # the last, cut episode still counts
    assert ds.episode_returns().tolist() == [3.0, 7.0, 5.0]
    info = ds.info()
    assert (info["transitions"], info["episodes"], info["mean_return"]) == (5, 3, 5.0)
    assert info["obs_shape"] == [2] and info["action_shape"] == [1]


def test_round_trip_is_memory_mapped(tmp_path):
    ds = collect("Pendulum-v1", 300, seed=4)
    path = ds.save(tmp_path / "pend")
    back = Dataset.load(path)
    assert isinstance(back.obs, np.memmap)
    for field in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(back, field), getattr(ds, field))
    assert back.meta["env_id"] == "Pendulum-v1" and back.meta["policy"] == "random" and back.meta["seed"] == 4
    assert back.episode_returns().tolist() == pytest.approx(ds.episode_returns().tolist())
    assert (ds.truncated.sum(), ds.terminated.sum()) == (2, 0)  # the 200-step limit and the budget cut; never terminal


def test_collection_is_consistent_with_the_env():
    ds = collect("CartPole-v1", 200, seed=0)
    ends = ds.terminated | ds.truncated
    # within an episode, next_obs is the following obs
    cont = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(ds.next_obs[cont], ds.obs[cont + 1])
    assert ds.action.dtype == np.int64 and set(np.unique(ds.action)) <= {0, 1}


def test_truncated_file_names_file_and_field(tmp_path):
    path = collect("Pendulum-v1", 50, seed=0).save(tmp_path / "d")
    data = (path / "reward.npy").read_bytes()
    (path / "reward.npy").write_bytes(data[:-40])
    with pytest.raises(DatasetError, match=r"reward\.npy: field 'reward' is unreadable"):
        Dataset.load(path)


def test_missing_and_foreign_directories(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset"):
        Dataset.load(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="not a polyrl dataset"):
        Dataset.load(tmp_path / "other")


def test_row_count_mismatch_with_meta(tmp_path):
    path = collect("Pendulum-v1", 50, seed=0).save(tmp_path / "d")
    meta = json.loads((path / "meta.json").read_text())
    meta["transitions"] = 51
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="the dataset is corrupt"):
        Dataset.load(path)


def test_bad_values_and_shapes():
    with pytest.raises(DatasetError, match="field 'reward' has a non-finite value at row 2"):
        _hand_built(reward=np.array([1, 2, np.nan, 4, 5], np.float32))
    with pytest.raises(DatasetError, match="field 'action' has 4 rows but obs has 5"):
        _hand_built(action=np.zeros((4, 1), np.float32))
    cartpole = VecEnv("CartPole-v1").spec
    with pytest.raises(DatasetError, match=r"obs shape \(2,\) does not match the env's \(4,\)"):
        _hand_built().check_spec(cartpole)
    pendulum = VecEnv("Pendulum-v1").spec
    with pytest.raises(DatasetError, match=r"obs shape \(2,\) does not match the env's \(3,\)"):
        _hand_built().check_spec(pendulum)


def test_interrupted_write_leaves_nothing_partial(tmp_path, monkeypatch):
    ds = collect("Pendulum-v1", 50, seed=0)
    first = ds.save(tmp_path / "d")
    real_save = np.save

    def failing_save(file, *args, **kwargs):  # interrupted halfway: after obs, action and reward
        if str(getattr(file, "name", file)).endswith("next_obs.npy"):
            raise KeyboardInterrupt
        return real_save(file, *args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        collect("Pendulum-v1", 80, seed=1).save(tmp_path / "d")
    with pytest.raises(KeyboardInterrupt):
        ds.save(tmp_path / "fresh")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary or partial directories
    assert len(Dataset.load(first)) == 50


def test_buffer_rescales_actions_and_shares_memory():
    obs = np.arange(15, dtype=np.float32).reshape(5, 3)
    ds = _hand_built(obs=obs, next_obs=obs + 2, action=np.array([[-2.0], [0.0], [1.0], [2.0], [0.5]], np.float32))
    buf = ds.buffer(VecEnv("Pendulum-v1").spec)  # Pendulum's Box is [-2, 2]
    assert buf.action[:, 0, 0].tolist() == [-1.0, 0.0, 0.5, 1.0, 0.25]
    assert len(buf) == 5
    ds.obs[0, 0] = 42.0
    assert buf.obs[0, 0, 0].item() == 42.0  # same memory, no copy
    ds.obs[0, 0] = 0.0
    b = buf.sample(32, torch.Generator().manual_seed(0), gamma=0.9)
    torch.testing.assert_close(b.next_obs, b.obs + 2)  # hand-built: next_obs = obs + 2


def test_saco_counts_unique_discretised_pairs():
    obs = np.array([[0, 0], [0, 0], [10, 10], [-10, -10]], np.float32)
    ds = Dataset(obs, np.array([[0.0], [0.0], [1.0], [-1.0]], np.float32), np.ones(4), obs, np.zeros(4, bool), np.zeros(4, bool))
    assert ds.saco() == 0.75  # the first two transitions fall in one cell
    discrete = Dataset(obs, np.array([0, 1, 1, 1]), np.ones(4), obs, np.zeros(4, bool), np.zeros(4, bool))
    assert discrete.saco() == 1.0  # same state, different discrete action


def test_tq_uses_reference_returns():
    from polyrl.data.scores import Reference, reference

    ds = _hand_built(meta={"env_id": "Hopper-v4"})  # episode returns 3, 7, 5 -> mean 5; polyrl measured only v5
    ref = reference("Hopper-v4")
    assert (ref.random, ref.expert, ref.source) == (-20.272305, 3234.3, "d4rl")
    assert ds.tq() == pytest.approx((5 + 20.272305) / (3234.3 + 20.272305))
    assert ds.tq(Reference(0.0, 10.0, "mine")) == pytest.approx(0.5)
    assert ds.info()["normalized_mean_return"] == pytest.approx(100 * (5 + 20.272305) / (3234.3 + 20.272305))
    assert _hand_built(meta={"env_id": "Pendulum-v1"}).tq() is None  # no references for Pendulum


def test_collection_is_reproducible_and_concatenation_keeps_episodes_apart(tmp_path):
    import polyrl

    agent = polyrl.make("sac", "Pendulum-v1", hidden=(8, 8), run_dir=tmp_path / "r")
    a, b = (collect("Pendulum-v1", 250, agent=agent, seed=3) for _ in range(2))  # stochastic policy
    np.testing.assert_array_equal(a.action, b.action)
    assert a.truncated[-1]  # the budget cut ends an episode
    joined = Dataset.concatenate([collect("Pendulum-v1", 50, seed=0), collect("Pendulum-v1", 50, seed=1)])
    assert joined.episode_ends().tolist() == [49, 99]
    path = joined.save(tmp_path / "j")
    assert oct(path.stat().st_mode & 0o777) != oct(0o700)  # readable by others, like any directory the user makes
