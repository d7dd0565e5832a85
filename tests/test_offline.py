"""Offline training end to end: CLI, dataset-derived normalisation, and a learning test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from polyrl.data.recipes import make_dataset

import polyrl
from polyrl.cli import main
from polyrl.data import Dataset, recipes
from polyrl.data.collect import collect
from polyrl.errors import ConfigError

FAST = ["--no-progress", "--no-tensorboard", "--eval-every", "0", "--eval-episodes", "2"]


def test_cli_collect_info_train_eval(tmp_path, capsys):
    data = tmp_path / "pend"
    assert main(["collect", "--env", "Pendulum-v1", "--policy", "random", "--steps", "400", "--out", str(data)]) == 0
    assert main(["dataset", "info", str(data), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["transitions"] == 400 and info["episodes"] == 2 and info["obs_shape"] == [3] and info["action_shape"] == [1]
    run = tmp_path / "run"
    # the env comes from the dataset's metadata
    assert main(["train", "td3bc", "--dataset", str(data), "--steps", "300", "--run-dir", str(run), "--hidden", "16,16", *FAST]) == 0
    out = capsys.readouterr().out
    assert "final evaluation" in out
    assert main(["eval", str(run), "--json", "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["env"] == "Pendulum-v1"
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert any("time/updates_per_s" in r for r in rows)
    # a policy run can collect in turn
    assert main(["collect", "--policy", str(run), "--steps", "50", "--out", str(tmp_path / "again"), "--noise", "0.1"]) == 0
    assert Dataset.load(tmp_path / "again").meta["policy_algo"] == "td3bc"


def test_offline_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="td3bc learns from a dataset"):
        polyrl.make("td3bc", "Pendulum-v1", run_dir=tmp_path / "r").learn(10, progress=False)
    data = collect("Pendulum-v1", 50, seed=0).save(tmp_path / "pend")
    with pytest.raises(ConfigError, match="sac learns online and takes no dataset"):
        polyrl.make("sac", dataset=data)
    assert main(["train", "iql", "--dataset", str(data), "--env", "MountainCarContinuous-v0"]) == 2
    assert "obs shape (3,) does not match the env's (2,)" in capsys.readouterr().err
    assert main(["dataset", "info", str(tmp_path / "missing")]) == 2
    assert "no such dataset" in capsys.readouterr().err


def test_dataset_statistics_normalise_observations(tmp_path):
    ds = collect("Pendulum-v1", 400, seed=2)
    agent = polyrl.make("iql", dataset=ds, hidden=(8, 8))
    mean, var = ds.obs_stats()
    np.testing.assert_allclose(agent.obs_norm.mean.numpy(), mean)
    np.testing.assert_allclose(agent.obs_norm.var.numpy(), var)
    assert agent.obs_norm.frozen
    spread = ds.episode_returns().max() - ds.episode_returns().min()
    assert agent.algo.state.reward_scale.item() == pytest.approx(1000.0 / spread)


@pytest.mark.slow
def test_td3bc_beats_the_behaviour_policy(tmp_path):
    # behaviour: a half-trained SAC policy (deterministic return about -260) with heavy action noise
    behaviour = polyrl.make("sac", "Pendulum-v1", seed=0, run_dir=tmp_path / "sac", learning_starts=1000)
    behaviour.learn(4_000, progress=False, tensorboard=False, eval_every=0, eval_episodes=0)
    data = collect("Pendulum-v1", 20_000, agent=behaviour, seed=1, noise=0.5)
    behaviour_return = data.info()["mean_return"]  # about -545
    agent = polyrl.make("td3bc", dataset=data, seed=0, run_dir=tmp_path / "td3bc")
    agent.learn(8_000, progress=False, tensorboard=False, eval_every=0, eval_episodes=0)
    learned = agent.evaluate(20, seed=123).mean_return  # about -290
    assert learned > behaviour_return + 100, (learned, behaviour_return)


def test_prdc_nearest_neighbour_matches_brute_force():
    ds = collect("Pendulum-v1", 500, seed=3)
    agent = polyrl.make("prdc", dataset=ds, hidden=(8, 8))
    algo, norm = agent.algo, agent.obs_norm
    buf = ds.buffer(agent.spec)
    keys = torch.cat([algo.cfg.beta * norm(buf.obs[:, 0]), buf.action[:, 0]], dim=-1)
    gen = torch.Generator().manual_seed(0)
    obs, act = torch.randn(64, 3, generator=gen), torch.rand(64, 1, generator=gen) * 2 - 1
    query = torch.cat([algo.cfg.beta * obs, act], dim=-1)
    brute = buf.action[:, 0][torch.cdist(query.double(), keys.double()).argmin(1)]
    torch.testing.assert_close(algo.nearest_actions(obs, act), brute)


def test_cql_values_dataset_actions_above_unseen_ones(tmp_path):
    # every dataset action is near +1.0 (in Pendulum's [-2, 2] units: 0.5 normalised); rewards are zero
    rng = np.random.default_rng(0)
    n = 512
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    ds = Dataset(obs, 1.0 + 0.05 * rng.normal(size=(n, 1)), np.zeros(n), rng.normal(size=(n, 3)), np.zeros(n, bool),
                 np.zeros(n, bool), meta={"env_id": "Pendulum-v1"})
    agent = polyrl.make("cql", dataset=ds, hidden=(32, 32), seed=0, run_dir=tmp_path)
    agent.learn(400, progress=False, tensorboard=False, eval_episodes=0)
    x = agent.obs_norm(torch.as_tensor(obs[:64]))
    with torch.no_grad():
        q_data = agent.algo.state.critic(x, torch.full((64, 1), 0.5)).mean()
        q_unseen = agent.algo.state.critic(x, torch.full((64, 1), -0.9)).mean()
    assert q_data > q_unseen + 1.0, (q_data, q_unseen)


@pytest.mark.slow
def test_recipes_share_one_sac_run_and_record_provenance(tmp_path, capsys):
    base = ["--train-steps", "4000", "--eval-every", "1000", "--steps", "400", "--sources", str(tmp_path / "src")]
    for recipe in ("random", "medium", "expert", "medium-expert", "medium-replay"):
        assert main(["dataset", "make", f"Pendulum-v1-{recipe}", "--out", str(tmp_path / recipe), *base]) == 0
    assert len(list((tmp_path / "src").iterdir())) == 1  # one SAC run behind every recipe
    snaps = json.loads(next((tmp_path / "src").iterdir()).joinpath("snapshots.json").read_text())["snapshots"]
    assert [s["step"] for s in snaps] == [1000, 2000, 3000, 4000]
    sets = {r: Dataset.load(tmp_path / r) for r in ("random", "medium", "expert", "medium-expert", "medium-replay")}
    assert len(sets["medium-expert"]) == 400 and len(sets["expert"]) == 400
    medium_step = sets["medium-expert"].meta["medium_step"]
    assert len(sets["medium-replay"]) == medium_step
    for recipe, ds in sets.items():
        assert ds.meta["recipe"] == recipe and ds.meta["env_id"] == "Pendulum-v1" and "polyrl_version" in ds.meta
    assert sets["expert"].meta["policy_eval_return"] == max(s["return"] for s in snaps)
    assert sets["expert"].meta["policy_eval_return"] > sets["random"].info()["mean_return"]


@pytest.mark.parametrize("buffer_size", [400, 300])  # filled exactly at the last step; wrapped around
def test_replay_of_a_run_needs_every_step_in_order(tmp_path, buffer_size):
    run = tmp_path / "run"
    agent = polyrl.make("sac", "Pendulum-v1", seed=0, run_dir=run, learning_starts=100, batch_size=32, hidden=(16, 16),
                        buffer_size=buffer_size)
    agent.learn(400, progress=False, tensorboard=False, eval_every=0, eval_episodes=0, checkpoint_every=200)
    agent.close()
    if buffer_size < 400:
        with pytest.raises(ConfigError, match="wrapped around"):
            recipes._replay_of_run(run, 200)
        return
    fields = recipes._replay_of_run(run, 400)
    assert len(fields["obs"]) == 400
    inside = ~(fields["terminated"] | fields["truncated"])[:-1]  # steps whose successor is the next stored step
    np.testing.assert_array_equal(fields["next_obs"][:-1][inside], fields["obs"][1:][inside])
    with pytest.raises(ConfigError, match="holds 400 steps"):
        recipes._replay_of_run(run, 401)

def test_cql_bc_warmup_imitates_the_dataset(tiny_datasets):
    """During the warm-up the actor maximises the dataset actions' likelihood instead of Q."""
    data = tiny_datasets["Pendulum-v1"]
    likelihood = {}
    for warmup in (0, 1000):
        agent = polyrl.make("cql", "Pendulum-v1", dataset=data, seed=0, batch_size=64, hidden=(32, 32), n_action_samples=4,
                            bc_warmup_steps=warmup, actor_lr=1e-3)
        agent.learn(300, progress=False, tensorboard=False, eval_episodes=0, eval_every=0)
        buf = agent.dataset.buffer(agent.spec)
        with torch.no_grad():
            likelihood[warmup] = float(agent.algo.state.actor(agent.obs_norm(buf.obs[:, 0])).log_prob(buf.action[:, 0]).mean())
    assert likelihood[1000] > likelihood[0] + 0.02, likelihood


def test_recipes_from_an_existing_run_use_its_checkpoints_and_replay(tmp_path):
    run = tmp_path / "run"
    agent = polyrl.make("sac", "Pendulum-v1", seed=0, run_dir=run, learning_starts=100, batch_size=32, hidden=(32, 32))
    agent.learn(600, progress=False, tensorboard=False, eval_every=0, eval_episodes=0, checkpoint_every=200, keep_checkpoints=10)
    agent.close()
    src = tmp_path / "src"
    base = ["--steps", "300", "--sources", str(src), "--from-run", str(run)]
    for recipe in ("medium", "medium-replay", "expert"):
        assert main(["dataset", "make", f"Pendulum-v1-{recipe}", "--out", str(tmp_path / recipe), *base]) == 0
    (snap_dir,) = list(src.iterdir())  # evaluated once, reused by every recipe
    snaps = json.loads((snap_dir / "snapshots.json").read_text())["snapshots"]
    assert [s["step"] for s in snaps] == [200, 400, 600] and all(s["algo"] == "sac" for s in snaps)
    expert, replay = Dataset.load(tmp_path / "expert"), Dataset.load(tmp_path / "medium-replay")
    assert expert.meta["policy_eval_return"] == max(s["return"] for s in snaps)
    assert expert.meta["source_run"] == str(run.resolve()) and "train_steps" not in expert.meta
    medium_step = Dataset.load(tmp_path / "medium").meta["policy"].split("@")[1]
    assert len(replay) == int(medium_step) and replay.truncated[-1]
    # the replay's first transitions are the run's own random warm-up, stored as env actions in [-2, 2]
    assert np.abs(replay.action).max() > 1.0 and np.abs(replay.action).max() <= 2.0
    with pytest.raises(ConfigError, match="no checkpoints"):
        make_dataset("Pendulum-v1-medium", 10, sources=src, source_run=tmp_path)


def test_ship_snapshots_keeps_the_medium_and_expert_policies(tmp_path):
    from polyrl.data.recipes import pick_snapshots, ship_snapshots

    src = tmp_path / "src"
    returns = {1000: 20.0, 2000: 60.0, 3000: 150.0, 4000: 300.0, 5000: 280.0}  # random 10: a third of the way is 106.7
    for step in returns:
        (src / "snapshots" / f"step_{step}").mkdir(parents=True)
        (src / "snapshots" / f"step_{step}" / "agent.json").write_text(str(step))
        (src / "snapshots" / f"step_{step}" / "model.safetensors").write_text("weights")
        (src / "snapshots" / f"step_{step}" / "resume.safetensors").write_text("optimiser and buffer")
    info = {"random_return": 10.0, "snapshots": [{"step": k, "return": v, "path": f"snapshots/step_{k}"} for k, v in returns.items()]}
    (src / "snapshots.json").write_text(json.dumps(info))
    medium, expert = pick_snapshots(info)
    assert (medium["step"], expert["step"]) == (3000, 4000)
    out = ship_snapshots(src, tmp_path / "shipped", {"made_by": "test"})
    shipped = json.loads((out / "snapshots.json").read_text())
    assert [s["step"] for s in shipped["snapshots"]] == [3000, 4000]
    assert [s["step"] for s in pick_snapshots(shipped)] == [3000, 4000]  # the selection gives the same two back
    assert (out / "step_3000" / "agent.json").read_text() == "3000" and not (out / "step_2000").exists()
    assert sorted(p.name for p in (out / "step_3000").iterdir()) == ["agent.json", "model.safetensors"]  # no resume state
    assert shipped["provenance"]["made_by"] == "test" and len(shipped["provenance"]["all_snapshots"]) == 5


def test_shipped_hopper_snapshots_make_medium_data_without_training(tmp_path):
    """The snapshots polyrl ships load with the current code (a format change would break them) and roll out."""
    from polyrl.data.recipes import pick_snapshots, shipped_source

    source = shipped_source("Hopper-v5")
    assert source is not None
    info = json.loads((source / "snapshots.json").read_text())
    medium, expert = pick_snapshots(info)
    assert info["random_return"] < medium["return"] < expert["return"]
    assert main(["dataset", "make", "hopper-medium", "--shipped", "--steps", "300", "--out", str(tmp_path / "m"),
                 "--sources", str(tmp_path / "src")]) == 0
    ds = Dataset.load(tmp_path / "m")
    assert len(ds) == 300 and ds.meta["env_id"] == "Hopper-v5" and ds.meta["policy_eval_return"] == medium["return"]
    assert "shipped" in ds.meta["source"] and ds.meta["source_provenance"]["algo"] == "sac"
    assert ds.meta["expert_return"] == expert["return"] and not (tmp_path / "src").exists()  # nothing trained
    with pytest.raises(ConfigError, match="ships no SAC snapshots for Pendulum-v1"):
        make_dataset("Pendulum-v1-medium", 10, shipped=True)


def test_shipped_medium_replay_reruns_the_shipped_recipe_to_the_medium_snapshot(tmp_path, monkeypatch):
    """A shipped medium-replay re-runs the snapshots' SAC from their recorded recipe: on one machine the re-run ends
    on the shipped medium policy bit for bit, and its buffer is the original run's history up to that step."""
    from polyrl.data.recipes import _snapshots_of_run, pick_snapshots, ship_snapshots

    config = {"learning_starts": 100, "batch_size": 32, "hidden": [32, 32]}
    run = tmp_path / "run"
    agent = polyrl.make("sac", "Pendulum-v1", seed=3, run_dir=run, **config)
    agent.learn(600, progress=False, tensorboard=False, eval_every=0, eval_episodes=0, checkpoint_every=200, keep_checkpoints=10)
    agent.close()
    source = _snapshots_of_run("Pendulum-v1", run, 3, tmp_path / "evals")
    shipped = tmp_path / "shipped"
    ship_snapshots(source, shipped / "Pendulum-v1", {"algo": "sac", "config": config, "seed": 3, "checkpoint_every": 200})
    monkeypatch.setattr(recipes, "SHIPPED_SOURCES", shipped)
    medium, _ = pick_snapshots(json.loads((shipped / "Pendulum-v1" / "snapshots.json").read_text()))

    sources = tmp_path / "sources"
    assert main(["dataset", "make", "Pendulum-v1-medium-replay", "--shipped", "--out", str(tmp_path / "mr"),
                 "--sources", str(sources)]) == 0
    ds = Dataset.load(tmp_path / "mr")
    assert ds.meta["replay_check"]["matches_shipped_medium"] and ds.meta["replay_check"]["max_abs_weight_diff"] == 0.0
    assert len(ds) == medium["step"] and ds.meta["policy_eval_return"] == medium["return"]
    # the same transitions the shipped run stored up to its medium snapshot
    original = recipes._replay_of_run(run, medium["step"])
    for field in ("obs", "action", "reward", "next_obs", "terminated"):
        assert np.array_equal(getattr(ds, field), original[field]), field
    # made once, then reused: a second dataset needs no training (the re-run's checkpoints are unchanged)
    (rerun,) = list(sources.iterdir())
    stamp = sorted((p.name, p.stat().st_mtime_ns) for p in (rerun / "run" / "checkpoints").iterdir())
    make_dataset("Pendulum-v1-medium-replay", 10, sources=sources, shipped=True)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (rerun / "run" / "checkpoints").iterdir()) == stamp
    # snapshots that do not say how their run was made cannot be re-run
    ship_snapshots(source, shipped / "Pendulum-v1", {"made_by": "hand"})
    with pytest.raises(ConfigError, match="does not record how its run was made"):
        make_dataset("Pendulum-v1-medium-replay", 10, sources=tmp_path / "other", shipped=True)
