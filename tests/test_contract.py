"""One contract, every registered algorithm: update, act, save -> load, config round-trip, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polyrl
from polyrl import algos
from tests.conftest import TINY, agent_kwargs

ALGOS = algos.names()
QUIET = {"progress": False, "tensorboard": False, "eval_episodes": 2, "eval_every": 0}


@pytest.fixture
def make_agent(tiny_datasets):
    def make(name: str, run_dir, **kw):
        return polyrl.make(name, seed=3, run_dir=run_dir / name, **agent_kwargs(name, tiny_datasets), **kw)

    return make


def _weights(agent):
    return {k: v.clone() for k, v in agent.algo.weights().items()}


def test_every_algorithm_has_tiny_config():
    assert set(TINY) == set(ALGOS)


@pytest.mark.parametrize("name", ALGOS)
def test_learn_updates_and_acts_in_env_space(name, tmp_path, make_agent):
    agent = make_agent(name, tmp_path)
    before = _weights(agent)
    agent.learn(256, **QUIET)
    assert agent.algo.n_updates > 0
    assert (agent.algo.n_updates if agent.algo.regime == "offline" else agent.algo.env_steps) >= 256
    assert any(not torch.equal(before[k], v) for k, v in agent.algo.weights().items())
    obs = np.random.default_rng(0).normal(size=(5, *agent.spec.obs_shape)).astype(np.float32)
    actions = agent.act(obs)
    if agent.spec.action_kind == "box":
        assert actions.shape == (5, agent.spec.action_dim)
        assert np.all(actions >= np.array(agent.spec.action_low)) and np.all(actions <= np.array(agent.spec.action_high))
    else:
        assert actions.shape == (5,) and set(actions.tolist()) <= set(range(agent.spec.action_dim))
    assert agent.act(obs[0]).shape == actions.shape[1:]
    run = agent.run_dir
    assert (run / "run.json").exists() and (run / "metrics.jsonl").exists() and (run / "metrics.csv").exists()
    meta = json.loads((run / "run.json").read_text())
    assert meta["polyrl_version"] == polyrl.__version__ and meta["algo"] == name


@pytest.mark.parametrize("name", ALGOS)
def test_save_load_gives_identical_actions(name, tmp_path, make_agent):
    agent = make_agent(name, tmp_path, normalize_obs=True)
    agent.learn(200, **QUIET)
    path = agent.save(tmp_path / "saved")
    loaded = polyrl.load(path)
    obs = np.random.default_rng(1).normal(size=(8, *agent.spec.obs_shape)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs), loaded.act(obs))
    assert loaded.cfg == agent.cfg and loaded.algo.env_steps == agent.algo.env_steps
    assert loaded.obs_norm.count.item() == agent.obs_norm.count.item() > 0
    # the run directory resolves to its latest checkpoint too
    np.testing.assert_array_equal(polyrl.load(agent.run_dir).act(obs), agent.act(obs))


@pytest.mark.parametrize("name", ALGOS)
def test_config_round_trip(name):
    cls = algos.get(name)
    cfg = cls.Config.from_dict(TINY[name])
    assert cls.Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    docs = cls.Config.field_docs()
    assert all(docs.get(f) for f in cfg.to_dict()), "every config field needs a one-line docstring"


@pytest.mark.parametrize("name", ALGOS)
def test_resume_continues_identically(name, tmp_path, make_agent):
    a = make_agent(name, tmp_path, normalize_obs=True)
    a.learn(400, checkpoint_every=200, keep_checkpoints=5, **QUIET)
    mid = sorted((a.run_dir / "checkpoints").glob("step_*"))[0]
    assert int(mid.name.split("_")[1]) < a.trainer.progress()
    b = polyrl.load(mid, run_dir=tmp_path / "resumed")
    b.learn(**QUIET)  # continues to the saved target
    assert b.algo.env_steps == a.algo.env_steps and b.algo.n_updates == a.algo.n_updates
    wa, wb = a.algo.weights(), b.algo.weights()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=f"{name}: {k} differs after resume")
    torch.testing.assert_close(a.obs_norm.mean, b.obs_norm.mean, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALGOS)
def test_same_seed_same_result(name, tmp_path, make_agent):
    a = make_agent(name, tmp_path / "a")
    b = make_agent(name, tmp_path / "b")
    a.learn(200, **QUIET)
    b.learn(200, **QUIET)
    for k, v in a.algo.weights().items():
        assert torch.equal(v, b.algo.weights()[k]), k
