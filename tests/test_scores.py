"""Reference returns: the shipped and user tables, D4RL's fallback, measuring references, and the CLI."""

from __future__ import annotations

import json

import pytest

import polyrl
from polyrl.cli import main
from polyrl.data.scores import Reference, measure_reference, reference, write_references
from polyrl.errors import ConfigError, DatasetError

QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "eval_episodes": 1}


def test_d4rl_fallback_and_explicit_sources(monkeypatch):
    monkeypatch.delenv("POLYRL_REFERENCES", raising=False)
    d4rl = reference("HalfCheetah-v5", source="d4rl")
    assert d4rl is not None and d4rl.source == "d4rl" and d4rl.expert == 12135.0
    assert reference("CartPole-v1") is None and reference("CartPole-v1", source="polyrl") is None
    assert d4rl.score(d4rl.random) == 0.0 and d4rl.score(d4rl.expert) == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="unknown reference source"):
        reference("Hopper-v5", source="mine")


def test_user_table_overrides_and_is_validated(tmp_path, monkeypatch):
    path = tmp_path / "refs.json"
    write_references(path, {"Hopper-v5": Reference(-10.0, 1000.0, "polyrl", {"note": "test"})})
    write_references(path, {"CartPole-v1": Reference(20.0, 500.0, "polyrl")})  # merges, keeps Hopper
    monkeypatch.setenv("POLYRL_REFERENCES", str(path))
    hop = reference("Hopper-v5")
    assert hop is not None and (hop.source, hop.random, hop.expert, hop.provenance) == ("polyrl", -10.0, 1000.0, {"note": "test"})
    assert reference("Hopper-v5", source="d4rl").expert == 3234.3  # the published constants stay reachable
    assert reference("CartPole-v1").score(260.0) == pytest.approx(50.0)
    path.write_text('{"Hopper-v5": {"random": "low"}}')
    with pytest.raises(DatasetError, match="Hopper-v5"):
        reference("Hopper-v5")
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="refs.json"):
        reference("Hopper-v5")


def test_measure_reference_and_cli(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    agent = polyrl.make("ppo", "CartPole-v1", seed=0, run_dir=run, n_steps=64, batch_size=32, hidden=(16, 16))
    agent.learn(128, **QUIET)
    agent.close()
    ref = measure_reference("CartPole-v1", run, episodes=4, seed=1)
    assert 8.0 < ref.random < 60.0 and ref.expert > 0 and ref.provenance["episodes"] == 4
    assert "ppo after 128 env steps" in ref.provenance["expert_policy"]
    with pytest.raises(ConfigError, match="trained on CartPole-v1, not Pendulum-v1"):
        measure_reference("Pendulum-v1", run, episodes=1)

    out = tmp_path / "refs.json"
    assert main(["dataset", "reference", "CartPole-v1", "--expert", str(run), "--episodes", "4", "--seed", "1",
                 "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["env_id"] == "CartPole-v1" and printed["random"] == pytest.approx(ref.random)
    monkeypatch.setenv("POLYRL_REFERENCES", str(out))
    got = reference("CartPole-v1")
    assert got is not None and got.source == "polyrl" and got.expert == pytest.approx(ref.expert)
