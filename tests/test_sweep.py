"""``polyrl sweep``: parsing, the across-seed statistics, and tiny sweeps on both backends.

The sweeps train PPO on CartPole for a few hundred steps. Two test-only
environments, importable as ``tests.test_sweep:<id>`` from the trial
processes, make a trial crash (seed 1 raises in ``step``) or slow enough to
kill mid-run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

import polyrl.sweep as sweep_module
from polyrl.cli import main
from polyrl.errors import ConfigError
from polyrl.sweep import (
    config_label,
    expand,
    iqm,
    parse_grid,
    parse_seeds,
    read_result,
    run_sweep,
    seed_stats,
    summarize,
    trial_name,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"n_steps": 64, "batch_size": 32, "hidden": (16, 16)}
FAST = {"eval_every": 0, "eval_episodes": 2, "tensorboard": False, "quiet": True}


class CrashingCartPole(CartPoleEnv):
    """CartPole whose copy seeded 1 raises in ``step``, and whose copy seeded 2 ends its process (exit code 3).

    A trial's training env is seeded with the trial's seed; evaluation envs with seed + 10000.
    """

    seed_given = None

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.seed_given = seed
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.seed_given == 1:
            raise RuntimeError("PolyrlSweepCrash: seed 1 crashes on purpose")
        if self.seed_given == 2:
            os._exit(3)
        return super().step(action)


class SlowCartPole(CartPoleEnv):
    """CartPole taking 1 ms a step, so a sweep can be killed between two checkpoints."""

    def step(self, action):
        time.sleep(0.001)
        return super().step(action)


for _id, _cls in (("PolyrlSweepCrash-v0", CrashingCartPole), ("PolyrlSweepSlow-v0", SlowCartPole)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls, max_episode_steps=200)
CRASH_ENV = "tests.test_sweep:PolyrlSweepCrash-v0"
SLOW_ENV = "tests.test_sweep:PolyrlSweepSlow-v0"


def _with_repo_on_pythonpath() -> str | None:
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved]))
    return saved


@pytest.fixture(scope="module")
def backend():
    """``"ray"`` with one local Ray instance (2 CPUs) shared by this module's Ray sweeps when Ray is installed, else ``"local"``.

    ``run_sweep`` uses a running instance and leaves it running; started here once, it saves a start per sweep.
    """
    try:
        import ray
    except ImportError:
        yield "local"
        return
    saved = _with_repo_on_pythonpath()  # the workers import the test envs
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield "ray"
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture
def importable_tests(monkeypatch):
    """Trial processes (and Ray workers) import the test envs from this repository."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


# -- parsing and expansion --------------------------------------------------------------------------
def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    for bad in ("3-1", "a", "1-", ""):
        with pytest.raises(ConfigError, match="seed"):
            parse_seeds(bad)


def test_parse_grid_types_values_and_expands_in_order():
    grid = parse_grid(["learning_rate=3e-4,1e-3", "hidden=16,16;32", "anneal-lr=true,false"], "ppo")
    assert grid == {"learning_rate": [3e-4, 1e-3], "hidden": [[16, 16], [32]], "anneal_lr": [True, False]}
    configs = expand(grid)
    assert len(configs) == 8 and configs[0] == {"learning_rate": 3e-4, "hidden": [16, 16], "anneal_lr": True}
    assert configs[1]["anneal_lr"] is False and configs[4]["learning_rate"] == 1e-3  # first field varies slowest
    assert config_label(configs[0]) == "learning_rate=0.0003,hidden=16x16,anneal_lr=True"
    assert trial_name(configs[0], 3) == "learning_rate=0.0003,hidden=16x16,anneal_lr=True,seed=3"
    assert expand({}) == [{}] and config_label({}) == "default"
    long = trial_name({"x" * 200: 1}, 0)
    assert len(long) < 130 and long.endswith(",seed=0")


@pytest.mark.parametrize("items, message", [
    (["learnin_rate=1,2"], "unknown config field 'learnin_rate' for PPOConfig; did you mean 'learning_rate'?"),
    (["n_steps=64,x"], "--grid n_steps: config field 'n_steps' expects int, got 'x'"),
    (["n_steps"], "--grid expects FIELD=VALUE"),
    (["n_steps=1", "n_steps=2"], "--grid n_steps is given twice"),
])
def test_bad_grid_is_one_clear_line(items, message):
    with pytest.raises(ConfigError) as e:
        parse_grid(items, "ppo")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_invalid_grid_stops_before_any_trial(tmp_path, capsys):
    code = main(["sweep", "ppo", "--env", "CartPole-v1", "--grid", "n_steps=64,abc", "--run-dir", str(tmp_path / "sw")])
    assert code == 2 and "error: --grid n_steps: config field 'n_steps' expects int, got 'abc'" in capsys.readouterr().err
    assert not (tmp_path / "sw").exists()
    with pytest.raises(ConfigError, match="both fixed"):
        run_sweep("ppo", "CartPole-v1", grid={"n_steps": [64]}, config={"n_steps": 32}, run_dir=tmp_path / "sw")
    with pytest.raises(ConfigError, match="learns from a dataset"):
        run_sweep("iql", "Pendulum-v1", run_dir=tmp_path / "sw")
    with pytest.raises(ConfigError, match="--search optuna needs --trials"):
        run_sweep("ppo", "CartPole-v1", grid={"n_steps": [64]}, search="optuna", run_dir=tmp_path / "sw")
    assert not (tmp_path / "sw").exists()


# -- statistics against hand-computed values --------------------------------------------------------
def test_iqm_hand_values():
    assert iqm([7.0]) == 7.0
    assert iqm([1.0, 5.0]) == 3.0                                        # cut 1/2 of an observation each side
    assert iqm([0.0, 1.0, 10.0]) == pytest.approx((0.25 * 0 + 1 + 0.25 * 10) / 1.5)
    assert iqm([4.0, 1.0, 3.0, 2.0]) == 2.5                              # n = 4: mean of the middle two
    assert iqm([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx((0.75 * 2 + 3 + 0.75 * 4) / 2.5)
    assert iqm([0.0, 1.0, 2.0, 3.0, 4.0, 1000.0]) == pytest.approx((0.5 * 1 + 2 + 3 + 0.5 * 4) / 3)
    assert iqm([-50.0, 1, 2, 3, 4, 7, 8, 100]) == 4.0                    # (2 + 3 + 4 + 7) / 4
    with pytest.raises(ValueError):
        iqm([])


def test_seed_stats_hand_values():
    s = seed_stats([2.0, 4, 4, 4, 5, 5, 7, 9])
    assert s["n"] == 8 and s["mean"] == 5.0 and s["min"] == 2.0 and s["max"] == 9.0
    assert s["std"] == pytest.approx(math.sqrt(32 / 7))                 # sample std: squared deviations sum to 32
    assert s["iqm"] == 4.5                                               # (4 + 4 + 5 + 5) / 4
    assert 2.0 < s["ci_low"] < 5.0 < s["ci_high"] < 9.0
    # two seeds: resampled means are a (1/4), (a+b)/2 (1/2), b (1/4), so the 95% interval is [a, b]
    two = seed_stats([10.0, 30.0])
    assert (two["mean"], two["iqm"], two["ci_low"], two["ci_high"]) == (20.0, 20.0, 10.0, 30.0)
    assert two["std"] == pytest.approx(math.sqrt(200))
    one = seed_stats([3.0])
    assert one["std"] is None and (one["ci_low"], one["ci_high"]) == (3.0, 3.0)
    assert seed_stats([])["mean"] is None


# -- sweeps -----------------------------------------------------------------------------------------
def test_sweep_2_configs_x_2_seeds_completes_and_summarises(tmp_path, capsys, backend):
    """On Ray when it is installed (the CI default), else in local processes."""
    sweep_dir = tmp_path / "sweep"
    summary = run_sweep("ppo", "CartPole-v1", seeds="0-1", grid={"learning_rate": [3e-4, 1e-3]}, config=TINY, steps=128,
                        run_dir=sweep_dir, checkpoint_every=64, backend=backend, **FAST)
    assert summary["n_trials"] == 4 and summary["n_finished"] == 4 and summary["n_failed"] == 0
    rows = {r["label"]: r for r in summary["configs"]}
    assert list(rows) == ["learning_rate=0.0003", "learning_rate=0.001"]
    for label, row in rows.items():
        finals = []
        for seed in (0, 1):
            trial = sweep_dir / "trials" / f"{label},seed={seed}"
            result = read_result(trial)
            assert result["status"] == "finished" and result["step"] == 128
            last_eval = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines() if "eval/return" in line][-1]
            assert result["value"] == last_eval["eval/return"]
            finals.append(result["value"])
        a, b = finals
        assert row["seeds"] == {"0": a, "1": b}
        assert row["mean"] == pytest.approx((a + b) / 2) and row["iqm"] == pytest.approx((a + b) / 2)
        assert row["std"] == pytest.approx(abs(a - b) / math.sqrt(2))
        assert (row["ci_low"], row["ci_high"]) == (min(a, b), max(a, b))
    assert json.loads((sweep_dir / "summary.json").read_text())["configs"][0]["mean"] == rows["learning_rate=0.0003"]["mean"]
    csv_lines = (sweep_dir / "summary.csv").read_text().splitlines()
    assert csv_lines[0] == "config,learning_rate,n,failed,unfinished,mean,std,iqm,ci_low,ci_high,min,max"
    assert csv_lines[1].startswith("learning_rate=0.0003,0.0003,2,0,0,")
    assert (sweep_dir / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # trials are ordinary run directories
    trial = sweep_dir / "trials" / "learning_rate=0.001,seed=1"
    capsys.readouterr()
    assert main(["eval", str(trial), "--episodes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["env_steps"] == 128
    assert main(["report", str(trial), "--out", str(tmp_path / "r.html")]) == 0 and (tmp_path / "r.html").is_file()
    # a rerun finds everything finished and only rewrites the summary; other training options are refused
    assert run_sweep("ppo", "CartPole-v1", seeds="0-1", grid={"learning_rate": [3e-4, 1e-3]}, config=TINY, steps=128,
                     run_dir=sweep_dir, backend=backend, **FAST)["configs"] == summary["configs"]
    with pytest.raises(ConfigError, match="holds a sweep with other steps"):
        run_sweep("ppo", "CartPole-v1", seeds="0-1", config=TINY, steps=256, run_dir=sweep_dir, **FAST)


def test_crashing_trial_is_recorded_and_the_others_finish(tmp_path, capsys, importable_tests, monkeypatch):
    """Without Ray, ``--backend auto`` falls back to local processes and says so."""
    monkeypatch.setattr(sweep_module, "ray_available", lambda: False)
    sweep_dir = tmp_path / "sweep"
    code = main(["sweep", "ppo", "--env", CRASH_ENV, "--seeds", "0-2", "--steps", "128",
                 "--set", "n_steps=64", "--set", "batch_size=32", "--set", "hidden=16,16", "--eval-every", "0",
                 "--eval-episodes", "1", "--no-tensorboard", "--run-dir", str(sweep_dir)])
    out = capsys.readouterr().out
    assert code == 1  # some trial failed
    assert "Ray is not installed (pip install 'polyrl[ray]'): running the trials one after another in local processes" in out
    assert "[2/3] default seed 1: FAILED: RuntimeError: PolyrlSweepCrash" in out
    assert "[3/3] default seed 2: FAILED: trial process exited with code 3" in out
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["n_finished"] == 1 and summary["n_failed"] == 2
    assert [f["seed"] for f in summary["failed"]] == [1, 2]
    assert summary["failed"][0]["error"] == "RuntimeError: PolyrlSweepCrash: seed 1 crashes on purpose"
    assert summary["failed"][1]["error"].startswith("trial process exited with code 3")
    assert list(summary["configs"][0]["seeds"]) == ["0"] and summary["configs"][0]["failed"] == 2
    failed = read_result(sweep_dir / "trials" / "default,seed=1")
    assert failed["status"] == "failed" and "step" in failed["traceback"]


def test_killed_sweep_restarts_skipping_finished_trials(tmp_path, importable_tests):
    """SIGKILL the whole sweep (driver and trial process) mid-trial; the rerun skips seed 0 and resumes seed 1."""
    sweep_dir = tmp_path / "sweep"
    argv = ["--env", SLOW_ENV, "--seeds", "0,1", "--steps", "256", "--checkpoint-every", "64", "--eval-every", "0",
            "--eval-episodes", "1", "--no-tensorboard", "--backend", "local", "--run-dir", str(sweep_dir),
            "--set", "n_steps=64", "--set", "batch_size=32", "--set", "hidden=16,16"]
    proc = subprocess.Popen([sys.executable, "-m", "polyrl.cli", "sweep", "ppo", *argv], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seed0, seed1 = sweep_dir / "trials" / "default,seed=0", sweep_dir / "trials" / "default,seed=1"
    deadline = time.time() + 60
    try:
        while not (seed1 / "checkpoints" / "LATEST").is_file():
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = read_result(seed0)
    assert first["status"] == "finished" and read_result(seed1) is None
    stamp = (seed0 / "result.json").stat().st_mtime_ns
    summary = run_sweep("ppo", SLOW_ENV, seeds=[0, 1], config=TINY, steps=256, run_dir=sweep_dir, checkpoint_every=64,
                        backend="local", **FAST | {"eval_episodes": 1})
    assert (seed0 / "result.json").stat().st_mtime_ns == stamp          # not run again
    resumed = read_result(seed1)
    assert resumed["status"] == "finished" and resumed["step"] == 256 and resumed["resumed_from"].startswith("step_")
    assert int(resumed["resumed_from"].split("_")[1]) >= 64
    assert summary["n_finished"] == 2 and summary["configs"][0]["n"] == 2


def test_ray_backend_records_failure_and_optuna_search(tmp_path, backend):
    if backend != "ray":
        pytest.skip("Ray is not installed (pip install 'polyrl[ray]')")
    pytest.importorskip("optuna")
    import ray

    sweep_dir = tmp_path / "grid"
    summary = run_sweep("ppo", CRASH_ENV, seeds=[0, 1], config=TINY, steps=64, backend="ray", run_dir=sweep_dir, **FAST)
    assert summary["n_finished"] == 1 and summary["n_failed"] == 1
    assert summary["failed"][0]["error"] == "RuntimeError: PolyrlSweepCrash: seed 1 crashes on purpose"
    assert summary["configs"][0]["seeds"].keys() == {"0"}
    assert (sweep_dir / ".ray").is_dir() and ray.is_initialized()  # Tune's state in the sweep dir; our Ray left running
    # Optuna picks 2 configurations of 3 (each a categorical choice); the objective is the mean over the seeds
    search_dir = tmp_path / "search"
    grid = {"learning_rate": [1e-4, 3e-4, 1e-3]}
    summary = run_sweep("ppo", "CartPole-v1", seeds=[0], grid=grid, config=TINY, steps=64, search="optuna", trials=2,
                        backend="ray", run_dir=search_dir, **FAST)
    assert 1 <= len(summary["configs"]) <= 2 and summary["n_failed"] == 0  # Optuna may pick one twice
    assert summary["n_finished"] == len(summary["configs"]) and summary["search"] == "optuna"
    # rerun: the finished configurations count towards --trials, nothing is trained again
    stamps = sorted(p.stat().st_mtime_ns for p in search_dir.glob("trials/*/result.json"))
    again = run_sweep("ppo", "CartPole-v1", seeds=[0], grid=grid, config=TINY, steps=64, search="optuna",
                      trials=len(summary["configs"]), backend="ray", run_dir=search_dir, **FAST)
    assert again["configs"] == summary["configs"]
    assert sorted(p.stat().st_mtime_ns for p in search_dir.glob("trials/*/result.json")) == stamps


def test_ray_init_starts_a_local_instance_or_joins_the_address(monkeypatch):
    ray = pytest.importorskip("ray")
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw["address"]))
    assert sweep_module._ray_init(None) and sweep_module._ray_init("ray://head:10001")
    assert calls == ["local", "ray://head:10001"]
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    assert not sweep_module._ray_init("ray://head:10001") and len(calls) == 2  # a running instance is used as it is


def test_summarize_needs_a_sweep_dir(tmp_path):
    with pytest.raises(ConfigError, match="is not a sweep directory"):
        summarize(tmp_path)
    np.testing.assert_equal(expand({"a": [1, 2]}), [{"a": 1}, {"a": 2}])
