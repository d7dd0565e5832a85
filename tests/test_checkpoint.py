"""Checkpoints: atomic writes, corrupt files, divergence keeps the last good checkpoint, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polyrl
from polyrl.errors import (
    CheckpointError,
    ConfigError,
    DivergenceError,
    UnknownAlgorithmError,
    UnsupportedSpaceError,
)
from polyrl.train import checkpoint as ckpt
from tests.conftest import TINY

QUIET = {"progress": False, "tensorboard": False, "eval_episodes": 0, "eval_every": 0}


def test_flatten_round_trip():
    tree = {"a": [torch.arange(3), {"b": np.ones(2), 3: (1.5, None, "x")}], "rng": {"state": 2**100}}
    flat, tensors = ckpt.flatten(tree, "r")
    back = ckpt.unflatten(json.loads(json.dumps(flat)), tensors)
    assert torch.equal(back["a"][0], torch.arange(3)) and np.array_equal(back["a"][1]["b"], np.ones(2))
    assert back["a"][1][3] == (1.5, None, "x") and back["rng"]["state"] == 2**100


def test_interrupted_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    ckpt.write_checkpoint(path, {"v": 1}, {"w": torch.ones(2)}, None)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "write_json", boom)
    with pytest.raises(KeyboardInterrupt):
        ckpt.write_checkpoint(path, {"v": 2}, {"w": torch.zeros(2)}, {"x": 1})
    meta, weights, _ = ckpt.read_checkpoint(path)
    assert meta == {"v": 1} and torch.equal(weights["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary directories left behind


def test_corrupt_weights_name_the_file(tmp_path):
    agent = polyrl.make("dqn", "CartPole-v1", run_dir=tmp_path / "run", **TINY["dqn"])
    path = agent.save(tmp_path / "ck")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is unreadable"):
        polyrl.load(path)


def test_missing_checkpoint_and_corrupt_meta(tmp_path):
    with pytest.raises(CheckpointError, match="no such run"):
        polyrl.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        polyrl.load(tmp_path / "empty")
    agent = polyrl.make("dqn", "CartPole-v1", run_dir=tmp_path / "run", **TINY["dqn"])
    path = agent.save(tmp_path / "ck")
    (path / "agent.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="agent.json is unreadable"):
        polyrl.load(path)


def test_mismatched_weights_are_rejected(tmp_path):
    small = polyrl.make("dqn", "CartPole-v1", **TINY["dqn"]).save(tmp_path / "small")
    meta = json.loads((small / "agent.json").read_text())
    meta["config"]["hidden"] = [32, 32]
    (small / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match"):
        polyrl.load(small)


def test_bad_input_errors_are_one_line():
    cases = [
        (UnknownAlgorithmError, "did you mean 'ppo'", lambda: polyrl.make("ppp", "CartPole-v1")),
        (UnsupportedSpaceError, "sac cannot handle discrete actions", lambda: polyrl.make("sac", "CartPole-v1")),
        (ConfigError, "did you mean 'learning_rate'", lambda: polyrl.make("ppo", "CartPole-v1", learning_rat=1.0)),
        (ConfigError, "expects int", lambda: polyrl.make("ppo", "CartPole-v1", n_steps="many")),
    ]
    for exc, text, fn in cases:
        with pytest.raises(exc, match=text) as info:
            fn()
        assert "\n" not in str(info.value)


def test_nan_reward_stops_the_run(tmp_path):
    agent = polyrl.make("dqn", "PolyrlNaN-v0", run_dir=tmp_path / "run", **TINY["dqn"])
    with pytest.raises(DivergenceError, match="non-finite reward"):
        agent.learn(100, **QUIET)


def test_divergence_keeps_last_good_checkpoint(tmp_path):
    agent = polyrl.make("sac", "Pendulum-v1", run_dir=tmp_path / "run", **TINY["sac"])
    agent.learn(100, checkpoint_every=100, **QUIET)
    good = agent.latest_checkpoint()
    good_weights = ckpt.read_checkpoint(good)[1]
    with torch.no_grad():
        for p in agent.algo.state.critic.parameters():
            p.fill_(float("nan"))
    with pytest.raises(DivergenceError, match="last good checkpoint is .*step_"):
        agent.learn(200, log_every=50, checkpoint_every=100, **QUIET)
    assert agent.latest_checkpoint() == good
    reloaded = ckpt.read_checkpoint(agent.run_dir)[1]
    assert all(torch.equal(reloaded[k], v) for k, v in good_weights.items())
