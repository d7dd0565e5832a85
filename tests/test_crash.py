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
