"""Crashes lose at most one checkpoint interval: kill -9 a run, resume it bare, get the uninterrupted run's weights.

Each run is a child process killed with SIGKILL (no clean-up of any kind runs), at a checkpoint boundary or in the
middle of writing a checkpoint; ``polyrl train --resume RUN`` with no other option must finish it with the run's
own settings and end on the weights of a run that was never interrupted, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import polyrl
from polyrl.cli import main
from polyrl.train.checkpoint import list_checkpoints
from polyrl.train.lock import LOCK_NAME, RunLock, RunLockedError

QUIET = ["--no-progress", "--no-tensorboard"]
SAC = ["train", "sac", "Pendulum-v1", "--steps", "900", "--learning-starts", "100", "--batch-size", "16", "--hidden",
       "16,16", "--checkpoint-every", "150", "--eval-every", "300", "--eval-episodes", "1", "--seed", "3"]
BC = ["train", "bc", "--steps", "900", "--batch-size", "16", "--hidden", "16,16", "--checkpoint-every", "150",
      "--eval-every", "0", "--eval-episodes", "1", "--seed", "3"]


def _child(argv: list[str], crash_on_write: int | None = None) -> subprocess.Popen:
    """``polyrl`` in a fresh interpreter; with ``crash_on_write=N`` it dies (``os._exit``, like SIGKILL: nothing is
    cleaned up) halfway through writing its N-th checkpoint, after the weights and before ``agent.json``."""
    code = "import sys; from polyrl.cli import main\n"
    if crash_on_write is not None:
        code += ("import os, polyrl.train.checkpoint as ck\n"
                 "real, calls = ck.save_file, [0]\n"
                 "def save_file(*a, **k):\n"
                 "    real(*a, **k); calls[0] += 1\n"
                 f"    if calls[0] == 2 * {crash_on_write} - 1: os._exit(137)\n"  # model.safetensors of write N is on disk
                 "ck.save_file = save_file\n")
    code += "sys.exit(main(sys.argv[1:]))\n"
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1])


def _kill_after_checkpoint(proc: subprocess.Popen, run: Path, n: int, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``run`` holds ``n`` complete checkpoints (or let it end)."""
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        if len(list_checkpoints(run)) >= n:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=timeout)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    agent = polyrl.load(run, resume=False)
    return {k: v.clone() for k, v in agent.algo.weights().items()} | {f"norm.{k}": v for k, v in agent.obs_norm.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs from the uninterrupted run's")


def _no_partial_checkpoints(run: Path) -> None:
    for ck in (run / "checkpoints").iterdir():
        if ck.is_dir():
            assert not ck.name.startswith("."), f"a partial write was left behind: {ck.name}"
            assert {"agent.json", "model.safetensors", "resume.json", "resume.safetensors"} <= {p.name for p in ck.iterdir()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_datasets):
    root = tmp_path_factory.mktemp("uninterrupted")
    data = ["--dataset", str(tiny_datasets["Pendulum-v1"])]
    assert main([*SAC, "--run-dir", str(root / "sac"), *QUIET]) == 0
    assert main([*BC, *data, "--run-dir", str(root / "bc"), *QUIET]) == 0
    return {"sac": _weights(root / "sac"), "bc": _weights(root / "bc"), "data": data}


@pytest.mark.parametrize("kind", ["sac", "bc"])
@pytest.mark.parametrize("when", ["after the 2nd checkpoint", "while writing the 3rd checkpoint"])
def test_kill_then_bare_resume_ends_on_the_uninterrupted_weights(kind, when, tmp_path, uninterrupted):
    run = tmp_path / "run"
    argv = (SAC if kind == "sac" else [*BC, *uninterrupted["data"]]) + ["--run-dir", str(run), *QUIET]
    if when.startswith("after"):
        proc = _child(argv)
        _kill_after_checkpoint(proc, run, 2)
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed: raise its --steps"
    else:
        proc = _child(argv, crash_on_write=3)
        proc.wait(timeout=120)
        assert proc.returncode == 137, proc.stderr.read().decode()[-2000:]
        assert any(p.name.startswith(".") for p in (run / "checkpoints").iterdir()), "the crash left no partial write"
    assert 1 <= len(list_checkpoints(run)) < 6  # killed before the end: 900 steps make 6 checkpoints
    assert main(["train", "--resume", str(run), *QUIET]) == 0  # bare: the run's own settings, to its own target
    _no_partial_checkpoints(run)
    _assert_same(uninterrupted[kind], _weights(run))
    assert not (run / LOCK_NAME).exists()  # the resumed run released the lock it took over from the killed one


def test_resume_keeps_the_runs_settings_and_warns_on_a_change(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*SAC[:4], "300", *SAC[5:], "--run-dir", str(run), *QUIET]) == 0
    agent = polyrl.load(run)
    assert (agent.settings.checkpoint_every, agent.settings.eval_every, agent.settings.eval_episodes) == (150, 300, 1)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "450", "--checkpoint-every", "100", "--keep-checkpoints", "9", *QUIET]) == 0
    err = capsys.readouterr().err
    assert "resuming with checkpoint_every=100 instead of the run's 150" in err and "keep_checkpoints" not in err


def test_one_writer_per_run_directory(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom polyrl.train.lock import RunLock\n"
                               f"RunLock({str(run)!r}).acquire(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        agent = polyrl.make("sac", "Pendulum-v1", run_dir=run, learning_starts=10, batch_size=8, hidden=(8, 8))
        with pytest.raises(RunLockedError, match=rf"{run} is being written by pid {holder.pid} on .*; stop it or wait for it"):
            agent.learn(20, progress=False, tensorboard=False, eval_episodes=0)
        assert main(["train", "sac", "Pendulum-v1", "--steps", "20", "--run-dir", str(run), *QUIET]) == 2
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed: its lock is stale and the next writer takes it over
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder.pid
    with RunLock(run) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (run / LOCK_NAME).exists()


def test_offline_to_online_killed_in_its_online_phase_resumes_bare(tmp_path, tiny_datasets):
    """``--online-steps`` is part of the run's plan (``plan.json``): a bare resume also finishes the online phase."""
    data = ["--dataset", str(tiny_datasets["Pendulum-v1"])]
    o2o = ["train", "td3bc", *data, "--steps", "300", "--online-steps", "900", "--online-warmup", "50", "--batch-size", "16",
           "--hidden", "16,16", "--checkpoint-every", "150", "--eval-every", "0", "--eval-episodes", "1", "--seed", "3", *QUIET]
    assert main([*o2o, "--run-dir", str(tmp_path / "whole")]) == 0
    for when, run in (("offline", tmp_path / "offline-kill"), ("online", tmp_path / "online-kill")):
        # writes: offline checkpoints 150 and 300, the hand-off, then online ones every 150 env steps
        proc = _child([*o2o, "--run-dir", str(run)], crash_on_write=2 if when == "offline" else 5)
        proc.wait(timeout=120)
        assert proc.returncode == 137
        assert main(["train", "--resume", str(run), *QUIET]) == 0
        latest = list_checkpoints(run)[-1]
        assert latest.name.startswith("online_step_"), f"killed {when}: the resumed run did not finish its online phase"
        _assert_same(_weights(tmp_path / "whole"), _weights(run))


def test_pipeline_killed_in_its_online_stage_resumes_with_the_same_command(tmp_path, tiny_datasets):
    data = str(tiny_datasets["Pendulum-v1"])
    tiny = ["--set", "batch_size=16", "--set", "q_hidden=16,16", "--set", "v_hidden=16,16", "--set", "actor_hidden=16,16",
            "--set", "n_policies=2", "--set", "gate_every=5", "--set", "gate_states=16", "--set", "gate_horizon=3",
            "--set", "model_hidden=16,16", "--set", "model_epochs=2", "--set", "selection=ope", "--set", "n_steps=32",
            "--set", "online_minibatch=16", "--set", "online_epochs=1"]

    def argv(run: Path) -> list[str]:
        return ["pipeline", "--env", "Pendulum-v1", "--dataset", data, "--offline-steps", "20", "--online-steps", "640",
                "--eval-every", "64", "--eval-episodes", "1", "--ope-rollouts", "4", "--run-dir", str(run), "--no-progress", *tiny]

    assert main(argv(tmp_path / "whole")) == 0
    run = tmp_path / "killed"
    # checkpoint writes: offline ones (every 2 of 20 updates: 10), the hand-off, then online ones every 64 env steps
    proc = _child(argv(run), crash_on_write=14)
    proc.wait(timeout=300)
    assert proc.returncode == 137, proc.stderr.read().decode()[-2000:]
    assert json.loads((run / "pipeline.json").read_text())["stages"].get("online") is None
    assert main(argv(run)) == 0
    _no_partial_checkpoints(run)
    _assert_same(_weights(tmp_path / "whole"), _weights(run))


def test_a_killed_dataset_write_leaves_no_dataset_and_a_rerun_completes(tmp_path):
    out = tmp_path / "data"
    argv = ["collect", "--env", "Pendulum-v1", "--policy", "random", "--steps", "500", "--out", str(out)]
    code = ("import os, sys, numpy as np\nfrom polyrl.cli import main\n"
            "real, calls = np.save, [0]\n"
            "def save(*a, **k):\n    real(*a, **k); calls[0] += 1\n    if calls[0] == 3: os._exit(137)\n"
            "np.save = save\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 137
    assert not out.exists()  # only a hidden temporary directory, never a partial dataset under the name
    assert main(argv) == 0
    assert polyrl.data.Dataset.load(out).info()["transitions"] == 500


def test_a_killed_sweep_trial_resumes_with_its_own_settings(tmp_path, monkeypatch):
    """Kill a whole sweep (driver and trial) after the trial's first checkpoint; rerunning the sweep resumes the trial
    with the settings in its ``trial.json`` and ends on the uninterrupted trial's weights."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    argv = ["sweep", "ppo", "--env", "tests.test_sweep:PolyrlSweepSlow-v0", "--seeds", "0", "--steps", "256",
            "--checkpoint-every", "64", "--eval-every", "0", "--eval-episodes", "1", "--no-tensorboard", "--backend", "local",
            "--set", "n_steps=64", "--set", "batch_size=32", "--set", "hidden=16,16"]
    assert main([*argv, "--run-dir", str(tmp_path / "whole")]) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "polyrl.cli", *argv, "--run-dir", str(killed)], cwd=root,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trial = killed / "trials" / "default,seed=0"
    deadline = time.monotonic() + 120
    try:
        while not (trial / "checkpoints" / "LATEST").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert main([*argv, "--run-dir", str(killed)]) == 0
    assert json.loads((trial / "result.json").read_text())["resumed_from"].startswith("step_")  # resumed, not rerun
    _assert_same(_weights(tmp_path / "whole" / "trials" / "default,seed=0"), _weights(trial))
