"""Offline -> online: Uni-O4's parts, the hand-off of every algorithm that continues online, and the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polyrl
from polyrl import algos
from polyrl.errors import ConfigError
from polyrl.models.dynamics import ModelStep
from tests.conftest import TINY

QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "eval_episodes": 1}
ONLINE_ABLE = sorted(n for n, c in algos.REGISTRY.items() if c.online_regime is not None)
OBS = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)


def test_online_able_algorithms():
    assert ONLINE_ABLE == ["iql", "mopo", "prdc", "td3bc", "unio4"]


@pytest.mark.parametrize("algo", ONLINE_ABLE)
def test_handoff_keeps_the_actor_and_continues_online(algo, tiny_datasets, tmp_path):
    agent = polyrl.make(algo, "Pendulum-v1", dataset=tiny_datasets["Pendulum-v1"], run_dir=tmp_path, seed=0, **TINY[algo])
    agent.learn(40, **QUIET)
    before = agent.act(OBS)
    agent.start_online()
    assert agent.phase == "online" and agent.algo.env_steps == 0
    np.testing.assert_array_equal(agent.act(OBS), before)  # the hand-off changes where data comes from, not the policy
    assert (tmp_path / "handoff").exists()
    agent.learn(96, **QUIET)
    assert agent.algo.env_steps >= 96
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert any(n.startswith("online_step_") for n in names) and (tmp_path / "checkpoints" / "LATEST").read_text().startswith("online_")
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["phase"] for r in rows] == sorted((r["phase"] for r in rows), key=lambda p: p != "offline")  # offline rows first
    assert {r["phase"] for r in rows} == {"offline", "online"}
    loaded = polyrl.load(tmp_path)
    assert loaded.phase == "online"
    np.testing.assert_array_equal(loaded.act(OBS), agent.act(OBS))
    offline = polyrl.load(tmp_path / "handoff", resume=False)
    np.testing.assert_array_equal(offline.act(OBS), before)


def test_online_resume_is_exact(tiny_datasets, tmp_path):
    def run(d, stop_at=None):
        a = polyrl.make("td3bc", "Pendulum-v1", dataset=tiny_datasets["Pendulum-v1"], run_dir=d, seed=3, **TINY["td3bc"])
        a.learn(30, **QUIET)
        a.start_online()
        a.learn(200, checkpoint_every=100, keep_checkpoints=5, **QUIET)
        return a

    a = run(tmp_path / "a")
    b = polyrl.load(tmp_path / "a" / "checkpoints" / "online_step_0000000100", run_dir=tmp_path / "b")
    assert b.phase == "online"
    b.learn(**QUIET)
    assert b.algo.env_steps == a.algo.env_steps
    for k, v in a.algo.weights().items():
        torch.testing.assert_close(b.algo.weights()[k], v, rtol=0, atol=0)


def test_algorithms_without_an_online_phase_say_so(tiny_datasets):
    agent = polyrl.make("bc", "Pendulum-v1", dataset=tiny_datasets["Pendulum-v1"], **TINY["bc"])
    with pytest.raises(ConfigError, match="no online phase; algorithms that continue online: .*unio4"):
        agent.start_online()


def test_finetune_batches_mix_dataset_and_online_data(tiny_datasets):
    from polyrl.train.sources import ReplaySource

    agent = polyrl.make("iql", "Pendulum-v1", dataset=tiny_datasets["Pendulum-v1"], online_offline_ratio=0.25,
                        online_warmup=10, **TINY["iql"])
    agent.start_online()
    agent.learn(20, **QUIET)
    source = agent.trainer.source
    assert isinstance(source, ReplaySource) and source.sched.random_steps == 0  # the offline policy acts from step 0
    batch = source._sample()
    assert len(batch) == 16
    data = agent.obs_norm(torch.as_tensor(np.asarray(agent.dataset.obs)))
    online = agent.obs_norm(source.buffer.obs[: source.buffer.pos, 0])

    def rows_in(x, pool):
        return int((torch.cdist(x, pool).min(1).values < 1e-5).sum())

    assert rows_in(batch.obs[:4], data) == 4 and rows_in(batch.obs[4:], online) == 12


def test_behaviour_term_decays_online(tiny_datasets):
    from polyrl.algos.td3bc import behaviour_weight

    agent = polyrl.make("td3bc", "Pendulum-v1", dataset=tiny_datasets["Pendulum-v1"], online_bc_decay=100, **TINY["td3bc"])
    assert behaviour_weight(agent.algo) == 1.0
    agent.start_online()
    agent.algo.env_steps = 25
    assert behaviour_weight(agent.algo) == pytest.approx(0.75)
    agent.algo.env_steps = 500
    assert behaviour_weight(agent.algo) == 0.0


# -- Uni-O4 ------------------------------------------------------------------------------------
def _unio4(tiny_datasets, **overrides):
    return polyrl.make("unio4", "Pendulum-v1", dataset=tiny_datasets["Pendulum-v1"], seed=0, **(TINY["unio4"] | overrides))


def _member_spread(agent) -> float:
    """Mean distance between the members' mean actions on the dataset's states."""
    obs = agent.obs_norm(torch.as_tensor(np.asarray(agent.dataset.obs[:200])))
    with torch.no_grad():
        mean = agent.algo.state.policies(obs).mean  # [N, B, A]
    return float(torch.cdist(mean.transpose(0, 1), mean.transpose(0, 1)).mean())


def test_ensemble_diversity_term_pushes_members_apart(tiny_datasets):
    spread = {}
    for diversity in ("none", "kl"):
        agent = _unio4(tiny_datasets, n_policies=3, diversity=diversity, diversity_alpha=1.0, bc_lr=1e-3)
        agent.learn(2000, **QUIET)  # bppo_fraction 0.2: 1600 pretraining updates
        spread[diversity] = _member_spread(agent)
    assert spread["kl"] > 1.5 * spread["none"], spread


def test_ope_gate_replaces_a_reference_only_on_improvement(tiny_datasets, monkeypatch):
    agent = _unio4(tiny_datasets)
    algo, s = agent.algo, agent.algo.state
    with torch.no_grad():
        for p in s.policies.parameters():
            p.add_(0.1)  # members differ from their references
    s.best_score.copy_(torch.tensor([0.0, 0.0]))
    monkeypatch.setattr(algo, "gate_scores", lambda net: torch.tensor([1.0, -1.0]))
    ref_before = [p.clone() for p in s.references.parameters()]
    metrics = algo._gate()
    assert float(metrics["train/gate_replaced"]) == 1
    for ref, pol, old in zip(s.references.parameters(), s.policies.parameters(), ref_before):
        torch.testing.assert_close(ref[0], pol[0])  # improved: replaced
        torch.testing.assert_close(ref[1], old[1])  # not improved: kept
    torch.testing.assert_close(s.best_score, torch.tensor([1.0, 0.0]))
    assert int(s.selected) == 0  # the deployed actor follows the best reference
    np.testing.assert_array_equal(agent.act(OBS), polyrl.Agent.act(agent, OBS))


def _gate_agent(tiny_datasets, gate_score):
    """A Uni-O4 agent past pretraining whose reference member 0 acts 0 and member 1 acts tanh(2) ~ 0.96."""
    agent = _unio4(tiny_datasets, gate_score=gate_score)
    agent.learn(10, **QUIET)  # fits the model and starts behaviour PPO
    s = agent.algo.state
    with torch.no_grad():
        for p in s.references.net.net[-1].parameters():
            p.zero_()
        s.references.net.net[-1].bias[1].fill_(2.0)
    return agent, s


def test_q_gate_scores_follow_the_critic(tiny_datasets, monkeypatch):
    """gate_score="q" with Q(s, a) = -|a|^2: the member acting nearer 0 scores higher."""
    agent, s = _gate_agent(tiny_datasets, "q")
    monkeypatch.setattr(s.critic, "forward", lambda obs, action, members=None: -(action ** 2).sum(-1).expand(2, -1))
    scores = agent.algo.gate_scores(s.references)
    assert scores[0] > scores[1]


def test_return_gate_counts_model_rewards_until_a_fall(tiny_datasets, monkeypatch):
    """gate_score="return": reward 1 per step, a fall when the first action exceeds 0.5; Q = 0."""
    agent, s = _gate_agent(tiny_datasets, "return")
    monkeypatch.setattr(s.critic, "forward", lambda obs, action, members=None: torch.zeros(2, obs.shape[0]))
    monkeypatch.setattr(s.dynamics, "sample", lambda obs, action, gen=None, termination=None: ModelStep(
        obs, torch.ones(obs.shape[0]), action[:, 0] > 0.5, torch.zeros(obs.shape[0])))
    scores = agent.algo.gate_scores(s.references)
    gamma, horizon, scale = agent.cfg.gamma, agent.cfg.gate_horizon, float(s.reward_scale)
    torch.testing.assert_close(scores, torch.tensor([scale * sum(gamma ** t for t in range(horizon)), scale]))


def test_gate_rollouts_fall_by_the_tasks_known_rule(tmp_path):
    """termination="auto" on Hopper: the gate ends a rollout by Hopper's healthy rule, read on raw observations
    (the model predicts normalised ones); "learned" leaves it to the model's termination head."""
    from polyrl.data.collect import collect

    data = collect("Hopper-v5", 300, seed=0).save(tmp_path / "hopper")
    agent = polyrl.make("unio4", "Hopper-v5", dataset=data, seed=0, run_dir=tmp_path / "run", **TINY["unio4"])
    raw = torch.zeros(2, 11)
    raw[:, 0] = torch.tensor([1.25, 0.5])  # torso height: healthy, fallen
    stats = agent.obs_norm
    norm = (raw - stats.mean.float()) / torch.sqrt(stats.var.float() + stats.eps)  # unclipped, like model predictions
    fell = agent.algo.termination(norm, torch.zeros(2, 3), norm)
    assert fell.tolist() == [False, True]
    learned = polyrl.make("unio4", "Hopper-v5", dataset=data, seed=0, run_dir=tmp_path / "run2", termination="learned",
                          **TINY["unio4"])
    assert learned.algo.termination is None


def test_selection_modes(tiny_datasets):
    for mode in ("ope", "ope_eval"):
        agent = _unio4(tiny_datasets, selection=mode)
        agent.learn(30, **QUIET)
        rows = agent.algo.end_offline(agent.evaluate_policy)
        assert rows["select/member"] == int(agent.algo.state.selected) % agent.cfg.n_policies
        assert any(k.startswith("select/return_") for k in rows) == (mode == "ope_eval")
        assert any(k.startswith("select/bc_return_") for k in rows) == (mode == "ope_eval")
        if mode == "ope":
            assert rows["select/member"] == int(agent.algo.state.best_score.argmax()) and rows["select/bc"] == 0.0


def test_selection_deploys_a_bc_start_that_beats_every_reference(tiny_datasets):
    """Behaviour PPO made every reference worse in the env: "ope_eval" deploys the BC policy it started from."""
    agent = _unio4(tiny_datasets, selection="ope_eval", selection_top_k=2)
    agent.learn(30, **QUIET)
    algo, s = agent.algo, agent.algo.state
    with torch.no_grad():  # make the references differ from their BC starting points
        for p in s.references.parameters():
            p.add_(0.5)
    policies = algo.candidates()
    assert list(policies)[-1] == f"bc {agent.cfg.n_policies - 1}"

    class Result:
        def __init__(self, r: float) -> None:
            self.mean_return = r

    obs = torch.zeros(1, agent.spec.obs_dim)
    wanted = {name: policies[name](obs) for name in policies}

    def evaluate(policy, episodes):  # real return: 10 for a BC start, 0 for a reference
        out = policy(obs)
        name = next(n for n, a in wanted.items() if torch.equal(a, out))
        return Result(10.0 if name.startswith("bc") else 0.0)

    rows = algo.end_offline(evaluate)
    assert rows["select/bc"] == 1.0 and algo.deployed_candidate() == f"bc {rows['select/member']}"
    torch.testing.assert_close(s.actor(obs).mode()[0], wanted[algo.deployed_candidate()])


def test_sarsa_critics_and_mc_online_critic(tiny_datasets):
    agent = _unio4(tiny_datasets, critic="sarsa", online_critic="mc", mc_fit_steps=500, critic_lr=1e-2, normalize_reward=False)
    agent.learn(30, **QUIET)
    data = agent.algo.data
    assert data is not None and torch.isfinite(data["mc_return"]).all()
    def mc_error():
        with torch.no_grad():
            return float((agent.algo.state.value(data["obs"]) - data["mc_return"]).pow(2).mean())

    before = mc_error()
    agent.start_online()  # re-fits V on the Monte-Carlo returns
    assert mc_error() < 0.5 * before
    agent.learn(64, **QUIET)


# -- pipeline ----------------------------------------------------------------------------------
def _pipeline_cfg(tiny_datasets):
    from polyrl.pipeline import PipelineConfig

    return PipelineConfig(env="Pendulum-v1", dataset=str(tiny_datasets["Pendulum-v1"]), offline_steps=40, online_steps=128,
                          eval_every=64, eval_episodes=2, ope_rollouts=4, algo_config=dict(TINY["unio4"]))


def test_pipeline_runs_end_to_end_and_writes_a_report(tiny_datasets, tmp_path):
    from polyrl.pipeline import STAGES, Pipeline

    state = Pipeline(_pipeline_cfg(tiny_datasets), tmp_path, progress=False).run()
    assert [state["stages"][s]["status"] for s in STAGES] == ["done"] * len(STAGES)
    ope = json.loads((tmp_path / "ope.json").read_text())
    assert len(ope["candidates"]) == 4 and sum(c["selected"] for c in ope["candidates"]) == 1  # 2 members: references and BC starts
    assert all(c["ci_low"] <= c["estimate"] <= c["ci_high"] for c in ope["candidates"])
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert [p["name"] for p in scores["phases"]] == ["offline", "online"]
    html = (tmp_path / "report.html").read_text()
    assert "Learning curve" in html and "OPE estimates vs real returns" in html
    assert polyrl.load(tmp_path).phase == "online"


def test_pipeline_resumes_after_a_kill_without_redoing_stages(tiny_datasets, tmp_path, monkeypatch):
    from polyrl.pipeline import Pipeline
    from polyrl.train.trainer import Trainer

    cfg = _pipeline_cfg(tiny_datasets)
    original = Trainer.checkpoint

    def killed_after_first_online_checkpoint(self):
        original(self)
        if self.online:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "checkpoint", killed_after_first_online_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(cfg, tmp_path, progress=False).run()
    monkeypatch.setattr(Trainer, "checkpoint", original)
    first = json.loads((tmp_path / "pipeline.json").read_text())["stages"]
    assert set(first) == {"dataset", "offline", "ope"}
    killed_at = polyrl.load(tmp_path).algo.env_steps
    assert 0 < killed_at < cfg.online_steps
    handoff_mtime = (tmp_path / "handoff" / "agent.json").stat().st_mtime_ns

    state = Pipeline(cfg, tmp_path, progress=False).run()
    for name in ("dataset", "offline", "ope"):  # finished stages are skipped, not redone
        assert state["stages"][name] == first[name]
    assert (tmp_path / "handoff" / "agent.json").stat().st_mtime_ns == handoff_mtime
    assert polyrl.load(tmp_path).algo.env_steps == cfg.online_steps
    online_rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"online"' in line]
    assert min(r["step"] for r in online_rows) > 0


def test_pipeline_refuses_other_settings_in_the_same_directory(tiny_datasets, tmp_path):
    from dataclasses import replace

    from polyrl.pipeline import Pipeline

    cfg = _pipeline_cfg(tiny_datasets)
    (tmp_path / "pipeline.json").write_text(json.dumps({"config": replace(cfg, seed=5).to_dict(), "stages": {}}))
    with pytest.raises(ConfigError, match="other settings"):
        Pipeline(cfg, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="cannot"):
        Pipeline(replace(cfg, algo="bc"), tmp_path / "x", progress=False)


def test_pipeline_scores_against_the_tasks_references_before_the_datasets_own():
    """A recipe's weak 'expert' must not inflate the score: the task's references come first (as in polyrl eval)."""
    from polyrl.data.scores import reference
    from polyrl.pipeline import dataset_reference, reference_returns

    recipe_meta = {"recipe": "medium", "random_return": 29.0, "expert_return": 247.0}
    hopper = reference("Hopper-v5")
    assert reference_returns(recipe_meta, "Hopper-v5") == {"random": hopper.random, "expert": hopper.expert,
                                                            "source": hopper.source}
    # No references for the task: the dataset's own, named as such; neither: no score.
    own = reference_returns(recipe_meta, "Pendulum-v1")
    assert (own["random"], own["expert"]) == (29.0, 247.0) and "medium dataset" in own["source"]
    assert own == dataset_reference(recipe_meta)
    assert reference_returns({}, "Pendulum-v1") is None


def test_pipeline_dataset_stage_uses_the_shipped_snapshots_where_polyrl_has_them(tmp_path):
    from polyrl.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(PipelineConfig(env="Hopper-v5", recipe_transitions=200), tmp_path, progress=False)
    info = pipe._dataset()
    assert info["policies"] == "shipped" and info["transitions"] == 200
    assert not (tmp_path / ".recipe-sources").exists()  # no SAC was trained
    with pytest.raises(ConfigError, match="recipe_source"):
        Pipeline(PipelineConfig(recipe_source="download"), tmp_path / "x", progress=False)
