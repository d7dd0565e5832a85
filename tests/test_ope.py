"""Off-policy evaluation and the dynamics ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polyrl
from polyrl import ope
from polyrl.cli import main
from polyrl.data import Dataset
from polyrl.data.collect import collect
from polyrl.models import DynamicsConfig, fit_dynamics


def test_bootstrap_ci():
    assert ope.bootstrap_ci(np.ones(5)) == (1.0, 1.0)
    lo, hi = ope.bootstrap_ci(np.random.default_rng(0).normal(3.0, 1.0, size=400))
    assert lo < 3.0 < hi and hi - lo < 0.3


def test_fqe_on_a_one_state_mdp_with_known_value(tmp_path):
    # one state, reward 1 forever: V = 1 / (1 - gamma) = 10 for any policy
    n = 256
    zeros = np.zeros((n, 3), np.float32)
    ds = Dataset(zeros, np.random.default_rng(0).uniform(-2, 2, (n, 1)), np.ones(n), zeros, np.zeros(n, bool), np.zeros(n, bool),
                 meta={"env_id": "Pendulum-v1"})
    agent = polyrl.make("bc", dataset=ds, hidden=(8, 8), run_dir=tmp_path)
    res = ope.fqe(agent, ds, steps=1500, gamma=0.9, tau=0.1, learning_rate=1e-3, hidden=(32, 32))
    assert res.estimate == pytest.approx(10.0, abs=0.3)
    assert res.quantity.startswith("discounted value")


def test_dynamics_ensemble_learns_and_picks_elites_by_holdout():
    torch.manual_seed(0)  # the ensemble's initial weights come from the global generator
    ds = collect("Pendulum-v1", 2000, seed=0)
    t = {k: torch.as_tensor(np.asarray(getattr(ds, k)), dtype=torch.float32) for k in ("obs", "action", "reward", "next_obs", "terminated")}
    cfg = DynamicsConfig(n_members=4, n_elites=2, hidden=(64, 64), max_epochs=100)
    model, summary = fit_dynamics(t["obs"], t["action"] / 2.0, t["reward"], t["next_obs"], t["terminated"], cfg=cfg)
    target = torch.cat([t["next_obs"] - t["obs"], t["reward"].unsqueeze(-1)], -1)
    err = model.holdout_error(t["obs"], t["action"] / 2.0, target)
    assert summary["holdout_mse"] < 0.2 * target.var(0).mean().item()  # far better than predicting the mean
    assert sorted(model.elites.tolist()) == sorted(torch.argsort(err)[:2].tolist()) or summary["holdout_mse"] <= summary["holdout_mse_all"]
    nxt, rew, term = model.step(t["obs"][:5], t["action"][:5] / 2.0, torch.Generator().manual_seed(0))
    assert nxt.shape == (5, 3) and rew.shape == (5,) and not term.any()


def test_model_rollouts_end_by_the_tasks_known_rule(tmp_path, monkeypatch):
    ds = collect("Pendulum-v1", 400, seed=0)
    agent = polyrl.make("bc", dataset=ds, hidden=(8, 8), run_dir=tmp_path, seed=0)
    model, _ = ope.fit_model(agent, ds, cfg=DynamicsConfig(n_members=3, n_elites=2, hidden=(16, 16), max_epochs=2))
    seen = []

    def every_step_is_a_fall(obs, action, next_obs):
        seen.append(obs)
        return torch.ones(len(obs), dtype=torch.bool)

    monkeypatch.setattr(polyrl.models.dynamics, "known_termination", lambda env_id: every_step_is_a_fall)
    auto = ope.model_based(agent, ds, model=model, n_rollouts=8, termination="auto")
    one_step = ope.model_based(agent, ds, model=model, n_rollouts=8, horizon=1, termination="learned")
    assert auto.estimate == one_step.estimate  # the rule ended every rollout after its first step
    starts = torch.as_tensor(ope.initial_states(ds))
    assert len(seen) == 1 and all((row == starts).all(1).any() for row in seen[0])  # once, on the raw start states
    ope.model_based(agent, ds, model=model, n_rollouts=8, termination="learned")
    assert len(seen) == 1  # the default, the learned head, never calls the rule
    with pytest.raises(ValueError, match="termination must be 'auto' or 'learned'"):
        ope.model_based(agent, ds, model=model, termination="head")


@pytest.mark.slow
def test_ope_ranks_policies_like_the_environment(tmp_path):
    # three snapshots of one SAC run on Pendulum, of clearly different quality (true returns about -1165, -560, -110)
    sac = polyrl.make("sac", "Pendulum-v1", seed=0, run_dir=tmp_path / "sac", learning_starts=500)
    paths = []
    for i, steps in enumerate((500, 2500, 3000)):
        sac.learn(steps, progress=False, tensorboard=False, eval_every=0, eval_episodes=0)
        paths.append(sac.save(tmp_path / f"snap{i}", resume=False))
    policies = [polyrl.load(p, resume=False) for p in paths]
    true = [p.evaluate(10, seed=5).mean_return for p in policies]
    assert true[0] < true[1] - 200 and true[1] < true[2] - 200, true
    data = Dataset.concatenate([collect("Pendulum-v1", 2000, agent=p, seed=10 + i, noise=0.3) for i, p in enumerate(policies)])
    model, _ = ope.fit_model(policies[0], data, cfg=DynamicsConfig(n_members=5, n_elites=3, hidden=(128, 128), max_epochs=60))
    mb = [ope.model_based(p, data, model=model, n_rollouts=30).estimate for p in policies]  # about -1300, -850, -670
    fq = [ope.fqe(p, data, steps=4000, hidden=(64, 64), learning_rate=1e-3).estimate for p in policies]  # about -560, -225, -120
    assert np.argsort(mb).tolist() == [0, 1, 2], (mb, true)
    assert np.argsort(fq).tolist() == [0, 1, 2], (fq, true)


def test_cli_ope(tmp_path, capsys):
    data = collect("Pendulum-v1", 400, seed=0).save(tmp_path / "d")
    run = tmp_path / "run"
    assert main(["train", "td3bc", "--dataset", str(data), "--steps", "50", "--run-dir", str(run), "--hidden", "8,8",
                 "--no-progress", "--no-tensorboard", "--eval-episodes", "1"]) == 0
    capsys.readouterr()
    assert main(["ope", str(run), "--dataset", str(data), "--fqe-steps", "50", "--rollouts", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["method"] for e in out["estimates"]] == ["fqe", "model"]
    assert all(e["ci_low"] <= e["estimate"] <= e["ci_high"] for e in out["estimates"])
