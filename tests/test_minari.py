"""Minari interchange both ways, on local directories only."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from polyrl.cli import main
from polyrl.data.collect import collect
from polyrl.data.minari_io import load_any, load_minari, save_minari

minari = pytest.importorskip("minari")


def test_polyrl_dataset_opens_in_minari_and_round_trips(tmp_path, monkeypatch):
    ds = collect("Pendulum-v1", 450, seed=0)  # two full episodes and a cut one
    path = save_minari(ds, "pendulum/random-v0", tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    opened = minari.load_dataset("pendulum/random-v0")
    episodes = list(opened.iterate_episodes())
    assert [len(e.actions) for e in episodes] == [200, 200, 50] and opened.total_steps == 450
    np.testing.assert_allclose(episodes[1].observations[:-1], ds.obs[200:400])
    assert opened.spec.env_spec.id == "Pendulum-v1"
    back = load_minari(path)
    for field in ("obs", "action", "reward", "next_obs", "terminated"):
        np.testing.assert_array_equal(getattr(back, field), getattr(ds, field))
    assert back.truncated[-1] and back.truncated.sum() == 3  # the cut episode is marked truncated for Minari
    assert back.env_id == "Pendulum-v1"


def test_dataset_written_by_minari_itself_trains_in_polyrl(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = minari.DataCollector(gym.make("CartPole-v1"))
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(300):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.create_dataset(dataset_id="cartpole/random-v0", algorithm_name="random")
    ds = load_any(tmp_path / "cartpole" / "random-v0")
    assert ds.env_id == "CartPole-v1" and ds.action.dtype == np.int64 and ds.obs.shape[1:] == (4,)
    assert ds.terminated.sum() >= 5
    ends = ds.terminated | ds.truncated
    cont = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(ds.next_obs[cont], ds.obs[cont + 1])
    run = tmp_path / "run"
    assert main(["train", "bc", "--dataset", str(tmp_path / "cartpole" / "random-v0"), "--steps", "50", "--run-dir", str(run),
                 "--hidden", "8,8", "--no-progress", "--no-tensorboard", "--eval-episodes", "1"]) == 0


def test_cli_export_and_info(tmp_path, capsys):
    src = collect("Pendulum-v1", 100, seed=0).save(tmp_path / "native")
    assert main(["dataset", "export", str(src), "--minari-id", "pend-v0", "--root", str(tmp_path / "store")]) == 0
    assert main(["dataset", "info", str(tmp_path / "store" / "pend-v0"), "--json"]) == 0
    assert '"transitions": 100' in capsys.readouterr().out
    assert main(["dataset", "export", str(src), "--minari-id", "pend-v0", "--root", str(tmp_path / "store")]) == 2
    assert "exists; Minari datasets are immutable" in capsys.readouterr().err


def test_export_to_a_relative_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = save_minari(collect("Pendulum-v1", 100, seed=2), "pendulum/rel-v0", root="stores")
    assert path == tmp_path / "stores" / "pendulum" / "rel-v0"
    assert len(load_minari(str(path))) == 100
