"""Model-based RL: the dynamics ensemble's fitting and sampling, MBPO's and MOPO's data source, and a learning test."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import polyrl
from polyrl.data.collect import collect
from polyrl.models.dynamics import (
    DynamicsConfig,
    DynamicsEnsemble,
    known_termination,
    layer_weight_decays,
    train_dynamics,
)
from polyrl.train.model_source import ModelSource, rollout_schedule
from tests.conftest import TINY

QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "eval_episodes": 0}


@pytest.fixture(scope="module")
def pendulum():
    """1000 random-policy Pendulum transitions as tensors (actions in [-1, 1])."""
    ds = collect("Pendulum-v1", 1000, seed=0)
    t = {k: torch.as_tensor(np.asarray(getattr(ds, k)), dtype=torch.float32) for k in ("obs", "action", "reward", "next_obs", "terminated")}
    t["action"] = t["action"] / 2.0
    return t


def _target(t):
    return torch.cat([t["next_obs"] - t["obs"], t["reward"].unsqueeze(-1)], -1)


@pytest.mark.parametrize("standardize", [False, True])
def test_ensemble_nll_decreases_with_fitting(pendulum, standardize):
    t = pendulum
    cfg = DynamicsConfig(n_members=3, n_elites=2, hidden=(32, 32), max_epochs=1, holdout=0.2,
                         weight_decays=layer_weight_decays(2), standardize_targets=standardize)
    torch.manual_seed(0)
    model = DynamicsEnsemble(3, 1, cfg)
    opt = model.make_optimizer()
    args = (t["obs"], t["action"], t["reward"], t["next_obs"], t["terminated"])
    first = train_dynamics(model, opt, *args, generator=torch.Generator().manual_seed(0))  # one epoch
    nll_start = model.nll(t["obs"], t["action"], _target(t)).mean().item()
    model.cfg = dataclasses.replace(cfg, max_epochs=40)
    summary = train_dynamics(model, opt, *args, generator=torch.Generator().manual_seed(1))  # continues (warm start)
    nll_end = model.nll(t["obs"], t["action"], _target(t)).mean().item()
    assert nll_end < nll_start - 1.0, (nll_start, nll_end)
    assert summary["holdout_nll"] < first["holdout_nll"] and summary["holdout_mse"] < 0.5 * first["holdout_mse"]


@pytest.mark.parametrize("batch_size, min_updates, epochs", [(256, 0, 1), (256, 30, 30), (16, 30, 6), (16, 3, 1)])
def test_min_updates_raises_the_epoch_cap_on_small_data(pendulum, batch_size, min_updates, epochs):
    # 100 transitions, 80 for training: one step per epoch at batch 256, five at batch 16; max_epochs=1 alone stops
    # after one epoch, min_updates lifts the cap to ceil(min_updates / steps per epoch) epochs (no early stop here).
    t = {k: v[:100] for k, v in pendulum.items()}
    cfg = DynamicsConfig(n_members=2, n_elites=1, hidden=(8,), max_epochs=1, min_updates=min_updates, batch_size=batch_size,
                         holdout=0.2, patience=1000)
    model = DynamicsEnsemble(3, 1, cfg)
    summary = train_dynamics(model, model.make_optimizer(), t["obs"], t["action"], t["reward"], t["next_obs"], t["terminated"],
                             generator=torch.Generator().manual_seed(0))
    assert summary["epochs"] == epochs


def test_per_layer_weight_decay_groups():
    model = DynamicsEnsemble(3, 1, DynamicsConfig(hidden=(8, 8, 8, 8), weight_decays=layer_weight_decays(4)))
    opt = model.make_optimizer()
    decays = [g["weight_decay"] for g in opt.param_groups]
    assert decays == [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4, 0.0]  # MBPO's, then biases and log-variance bounds undecayed
    assert opt.param_groups[-1]["params"][-1] is not None and sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert len(layer_weight_decays(2)) == 3 and layer_weight_decays(2)[0] == 2.5e-5 and layer_weight_decays(2)[-1] == 1e-4
    with pytest.raises(ValueError, match="one value per linear layer"):
        DynamicsConfig(hidden=(8, 8), weight_decays=(1e-5,))


def _constant_model(obs_dim: int, means: list[float], logvars: list[list[float]], n_elites: int | None = None) -> DynamicsEnsemble:
    """An ensemble whose member i predicts mean ``means[i]`` on every output and log-variances ``logvars[i]``, whatever the input."""
    n = len(means)
    model = DynamicsEnsemble(obs_dim, 1, DynamicsConfig(n_members=n, n_elites=n_elites or n, hidden=(4,)))
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        last = model.net.net[-1]
        out = obs_dim + 1
        for i in range(n):
            last.bias[i, 0, :out] = means[i]
            last.bias[i, 0, out:2 * out] = torch.tensor(logvars[i])
        model.max_logvar.fill_(10.0)  # wide soft bounds: the log-variances come out as set (to ~1e-4)
        model.min_logvar.fill_(-30.0)
    return model


def test_elites_are_the_members_with_lowest_holdout_error():
    model = _constant_model(2, means=[0.3, -2.0, 0.1, 1.0, -0.5], logvars=[[0.0] * 3] * 5, n_elites=3)
    obs, action, target = torch.zeros(10, 2), torch.zeros(10, 1), torch.zeros(10, 3)
    err = model.select_elites(obs, action, target)
    torch.testing.assert_close(err, torch.tensor([0.09, 4.0, 0.01, 1.0, 0.25]))
    assert sorted(model.elites.tolist()) == [0, 2, 4]


def test_fit_picks_elites_by_holdout_error(pendulum):
    t = pendulum
    cfg = DynamicsConfig(n_members=4, n_elites=2, hidden=(32, 32), max_epochs=5, holdout=0.2, standardize_targets=True)
    model = DynamicsEnsemble(3, 1, cfg)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    train_dynamics(model, model.make_optimizer(), t["obs"], t["action"], t["reward"], t["next_obs"], t["terminated"], generator=gen)
    gen.set_state(state)  # the holdout split is the first draw of the generator
    hold = torch.randperm(len(t["obs"]), generator=gen)[:200]
    err = model.holdout_error(t["obs"][hold], t["action"][hold], _target(t)[hold])
    assert sorted(model.elites.tolist()) == sorted(torch.argsort(err)[:2].tolist())


def test_sample_draws_one_elite_per_input_and_reports_the_uncertainty():
    # members 0 and 2 are elites; member 1 (huge variance) must never be sampled nor count in the uncertainty
    logvars = [[math.log(4.0), math.log(4.0), math.log(1e-8)], [math.log(100.0)] * 3, [math.log(1.0), math.log(1.0), math.log(1e-8)]]
    model = _constant_model(2, means=[1.0, 50.0, 3.0], logvars=logvars)
    model.elites = torch.tensor([0, 2])
    obs = torch.zeros(4000, 2)
    out = model.sample(obs, torch.zeros(4000, 1), torch.Generator().manual_seed(0))
    # reward is (almost) noise-free: exactly the chosen member's mean
    picked = out.reward.round()
    assert set(picked.tolist()) == {1.0, 3.0} and abs((picked == 1.0).float().mean().item() - 0.5) < 0.05
    # uncertainty = max over elites of the norm of their standard deviations = sqrt(4 + 4 + 1e-8)
    torch.testing.assert_close(out.uncertainty, torch.full((4000,), math.sqrt(8.0)), rtol=1e-3, atol=1e-3)
    # next_obs = obs + delta sampled around the member's mean with its std
    from_0 = out.next_obs[picked == 1.0]
    assert abs(from_0.mean().item() - 1.0) < 0.1 and abs(from_0.std().item() - 2.0) < 0.1
    assert not out.terminated.any() or out.terminated.dtype == torch.bool


def test_known_terminations():
    hopper = known_termination("Hopper-v5")
    nxt = torch.zeros(4, 11)
    nxt[:, 0] = torch.tensor([1.25, 0.5, 1.25, 1.25])  # height
    nxt[:, 1] = torch.tensor([0.0, 0.0, 0.3, 0.0])  # torso angle
    nxt[3, 5] = 150.0  # a state entry out of range
    assert hopper(nxt, torch.zeros(4, 3), nxt).tolist() == [False, True, True, True]
    pend = known_termination("Pendulum-v1")
    assert not pend(torch.zeros(3, 3), torch.zeros(3, 1), torch.zeros(3, 3)).any()
    assert known_termination("CartPole-v1") is None and known_termination("gymnasium/Walker2d-v4") is not None


def test_rollout_schedule_is_mbpos_linear_ramp():
    k = [rollout_schedule(e, min_length=1, max_length=15, min_epoch=20, max_epoch=100) for e in (0, 20, 40, 60, 99, 100, 500)]
    assert k == [1, 1, 4, 8, 14, 15, 15]
    assert rollout_schedule(3, min_length=5, max_length=5, min_epoch=0, max_epoch=0) == 5


def _source(agent) -> ModelSource:
    """The agent's data source, without training (what ``learn`` would create)."""
    from polyrl.train.trainer import Trainer, TrainSettings

    agent.trainer = agent.trainer or Trainer(agent, TrainSettings(**QUIET))
    return agent.trainer.source


def test_mbpo_rollouts_start_from_real_states_and_follow_the_schedule(tmp_path):
    cfg = {**TINY["mbpo"], "rollout_batch_size": 16, "epoch_length": 50, "rollout_min_length": 1, "rollout_max_length": 4,
           "rollout_min_epoch": 2, "rollout_max_epoch": 5, "model_retain_rounds": 2}
    agent = polyrl.make("mbpo", "Pendulum-v1", seed=0, run_dir=tmp_path, **cfg)
    agent.learn(120, **QUIET)
    src = agent.trainer.source
    assert isinstance(src, ModelSource) and agent.algo.state.model_fitted.item() == 1
    real = src.real_buffer.obs[: src.real_buffer.pos, 0]
    for steps, k in ((120, 1), (149, 1), (200, 3), (260, 4)):
        agent.algo.env_steps = steps
        assert agent.algo.rollout_horizon(steps) == k
        pos = src.model.pos
        added = src.rollout()
        assert added == 16 * k  # Pendulum never terminates: every rollout runs the full k steps
        idx = (pos + torch.arange(added)) % src.model.steps
        obs, nxt = src.model.obs[idx, 0].view(k, 16, 3), src.model.next_obs[idx, 0].view(k, 16, 3)
        # the first step of every rollout starts from a stored real state; later steps continue the model's own chain
        assert all((real == s).all(1).any() for s in obs[0])
        torch.testing.assert_close(obs[1:], nxt[:-1], rtol=0, atol=0)
        assert src.window == min(2 * 16 * k, len(src.model))
    batch = next(iter(src.batches()))
    assert len(batch) == cfg["batch_size"]


def test_mopo_penalises_model_rewards(tiny_datasets, tmp_path):
    rewards = {}
    for coef in (0.0, 0.5):
        agent = polyrl.make("mopo", dataset=tiny_datasets["Pendulum-v1"], seed=0, run_dir=tmp_path / str(coef),
                            **{**TINY["mopo"], "penalty_coef": coef, "rollout_batch_size": 8, "rollout_length": 2})
        s = agent.algo.state
        model = _constant_model(3, means=[1.0, 1.0], logvars=[[math.log(4.0)] * 3 + [math.log(1e-8)],
                                                             [math.log(9.0)] * 3 + [math.log(1e-8)]])
        model.elites = torch.tensor([0, 1])
        s.dynamics = model
        s.model_fitted.fill_(1.0)
        src = _source(agent)
        src.rollout()
        rewards[coef] = src.model.reward[: src.model.pos, 0]
    torch.testing.assert_close(rewards[0.0], torch.ones(16), atol=1e-3, rtol=0)
    u = math.sqrt(3 * 9.0)  # the larger member's standard deviations: ||(3, 3, 3, ~0)||
    torch.testing.assert_close(rewards[0.5], torch.full((16,), 1.0 - 0.5 * u), atol=1e-3, rtol=0)


def test_mopo_fits_once_and_a_reloaded_agent_does_not_refit(tiny_datasets, tmp_path, monkeypatch):
    import polyrl.train.model_source as ms

    calls = []
    real_train = ms.train_dynamics
    monkeypatch.setattr(ms, "train_dynamics", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    agent = polyrl.make("mopo", dataset=tiny_datasets["Pendulum-v1"], seed=0, run_dir=tmp_path / "a", **TINY["mopo"])
    agent.learn(120, **QUIET)
    assert calls == [1] and agent.algo.n_updates == 120
    assert agent.trainer.source.last_rollout == 100  # a round at the start and one every rollout_freq=50 updates
    loaded = polyrl.load(agent.save(tmp_path / "saved"), run_dir=tmp_path / "b")
    for k, v in agent.algo.state.dynamics.state_dict().items():
        assert torch.equal(v, loaded.algo.state.dynamics.state_dict()[k]), k
    loaded.learn(40, **QUIET)
    assert calls == [1]


def test_mopo_continues_online_as_sac_on_mixed_replay(tiny_datasets, tmp_path):
    agent = polyrl.make("mopo", dataset=tiny_datasets["Pendulum-v1"], seed=0, run_dir=tmp_path, **{**TINY["mopo"], "online_warmup": 20})
    agent.learn(30, **QUIET)
    agent.start_online()
    agent.learn(60, **QUIET)
    assert type(agent.trainer.source).__name__ == "ReplaySource" and agent.algo.env_steps >= 60
    assert "train/model_epochs" not in agent.trainer.last_metrics


# MBPO on Pendulum-v1 (docs/algorithms/mbpo.md, note 8): 64-wide nets, 1-step rollouts, a refit and a rollout
# round every 250 env steps, G = 5 SAC updates per env step, and half of every batch real (real_ratio=0.5): with 95% model
# data MBPO lags SAC at the same G even on the true dynamics, and the small model's reward error at the bottom of the
# swing adds to that.
PENDULUM_COMMON = {"learning_starts": 300, "batch_size": 128, "hidden": (64, 64)}
PENDULUM_MBPO = {**PENDULUM_COMMON, "gradient_steps": 5, "real_ratio": 0.5, "model_hidden": (64, 64), "model_max_epochs": 100,
                 "model_train_freq": 250, "rollout_freq": 250, "rollout_batch_size": 2000, "rollout_max_length": 1}
PENDULUM_STEPS = 2000


def _pendulum_return(algo: str, seed: int, run_dir: str) -> float:
    """Deterministic return (10 episodes) after ``PENDULUM_STEPS`` env steps of ``algo`` on Pendulum-v1 (one torch thread)."""
    torch.set_num_threads(1)
    cfg = PENDULUM_MBPO if algo == "mbpo" else PENDULUM_COMMON
    agent = polyrl.make(algo, "Pendulum-v1", seed=seed, run_dir=run_dir, **cfg)
    agent.learn(PENDULUM_STEPS, **QUIET)
    return agent.evaluate(10).mean_return


@pytest.mark.slow
def test_mbpo_beats_sac_at_equal_env_steps_on_pendulum(tmp_path):
    # MBPO (5 SAC updates per env step, half the batch from model rollouts) vs SAC's defaults (1 update per step on
    # real data) after the same 2000 env steps, seeds 0 and 1; each seed in its own process so the two use both cores.
    # About 100 CPU-seconds for the four runs (two per core: ~50 s wall on 2 idle cores; 100-150 s measured on a
    # 2-core machine shared with other jobs). Measured: seed 0, MBPO -686 vs SAC -1393.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    runs = [(algo, seed) for seed in (0, 1) for algo in ("mbpo", "sac")]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {run: pool.submit(_pendulum_return, *run, str(tmp_path / f"{run[0]}{run[1]}")) for run in runs}
        returns = {run: f.result() for run, f in futures.items()}
    for seed in (0, 1):
        r_mbpo, r_sac = returns["mbpo", seed], returns["sac", seed]
        assert r_mbpo > r_sac + 300, (seed, r_mbpo, r_sac)
