"""CLI smoke runs and error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from polyrl.cli import main

FAST = ["--no-progress", "--no-tensorboard", "--eval-every", "0", "--eval-episodes", "2"]


def test_list(capsys):
    assert main(["list", "--json"]) == 0
    rows = {r["algo"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ppo"]["action_spaces"] == ["box", "discrete"] and rows["dqn"]["action_spaces"] == ["discrete"]


def test_train_then_eval_json(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "ppo", "CartPole-v1", "--steps", "256", "--run-dir", str(run), "--n-steps", "64",
                 "--batch-size", "32", "--hidden", "16,16", "--no-anneal-lr", *FAST])
    assert code == 0
    out = capsys.readouterr().out
    assert f"run directory: {run}" in out and "final evaluation" in out
    saved = json.loads((run / "run.json").read_text())
    assert saved["config"]["hidden"] == [16, 16] and saved["config"]["anneal_lr"] is False
    assert main(["eval", str(run), "--episodes", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3 and {"mean_return", "std_return"} <= set(result)


def test_resume_from_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "dqn", "--env", "CartPole-v1", "--steps", "200", "--run-dir", str(run),
                 "--learning-starts", "50", "--hidden", "16,16", *FAST]) == 0
    assert main(["train", "--resume", str(run), "--steps", "400", *FAST]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--json", "--episodes", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["env_steps"] == 400


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "ppo", "CartPol-v1"], "unknown environment id 'CartPol-v1'; did you mean CartPole-v1"),
        (["train", "sac", "CartPole-v1"], "sac cannot handle discrete actions"),
        (["train", "ppo", "CartPole-v1", "--learnin-rate", "1"], "unknown option --learnin-rate for ppo; did you mean --learning-rate?"),
        (["train", "ppo", "CartPole-v1", "--n-steps", "x"], "config field 'n_steps' expects int"),
        (["train", "pp", "CartPole-v1"], "unknown algorithm 'pp'; did you mean 'ppo'?"),
        (["train", "ppo"], "no environment given"),
        (["eval", "/nonexistent/run"], "no such run or checkpoint directory"),
        (["pipeline", "--algo", "cql"], "the pipeline fine-tunes online, which cql cannot; use one of: td3bc, iql"),
        (["pipeline", "--set", "n_polices=2"], "unknown config field 'n_polices' for UniO4Config; did you mean 'n_policies'?"),
        (["report", "/nonexistent/run"], "/nonexistent/run does not exist"),
    ],
)
def test_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "polyrl.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("polyrl ")


def test_eval_reports_normalised_score_on_mujoco(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mujoco")
    import polyrl
    from polyrl.data.scores import polyrl_references

    monkeypatch.delenv("POLYRL_REFERENCES", raising=False)
    path = polyrl.make("td3", "Hopper-v5", hidden=(8, 8), run_dir=tmp_path / "r").save(tmp_path / "ck")
    assert main(["eval", str(path), "--episodes", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    shipped = polyrl_references()["Hopper-v5"]  # polyrl's own measurement of Hopper-v5 wins over D4RL's constants
    assert out["reference"] == "polyrl" and shipped.expert > 3000
    assert out["normalized_score"] == pytest.approx(100 * (out["mean_return"] - shipped.random) / (shipped.expert - shipped.random))


def test_offline_to_online_from_the_cli(tiny_datasets, tmp_path, capsys):
    data = str(tiny_datasets["Pendulum-v1"])
    run = tmp_path / "td3bc"
    assert main(["train", "td3bc", "--dataset", data, "--steps", "30", "--online-steps", "64", "--run-dir", str(run),
                 "--batch-size", "16", "--hidden", "16,16", "--online-warmup", "16", *FAST]) == 0
    assert "online_step_0000000064" in capsys.readouterr().out
    assert (run / "handoff").exists()

    pipe = tmp_path / "pipe"
    tiny = ["--set", "batch_size=16", "--set", "q_hidden=16,16", "--set", "v_hidden=16,16", "--set", "actor_hidden=16,16",
            "--set", "n_policies=2", "--set", "gate_every=5", "--set", "gate_states=16", "--set", "gate_horizon=3",
            "--set", "model_hidden=16,16", "--set", "model_epochs=2", "--set", "selection=ope", "--set", "n_steps=32",
            "--set", "online_minibatch=16", "--set", "online_epochs=1"]
    argv = ["pipeline", "--env", "Pendulum-v1", "--dataset", data, "--offline-steps", "20", "--online-steps", "64",
            "--eval-every", "32", "--eval-episodes", "1", "--ope-rollouts", "4", "--run-dir", str(pipe), "--no-progress", *tiny]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"report: {pipe / 'report.html'}" in out and "offline -> online: offline return " in out
    assert main(argv) == 0  # everything done: every stage is skipped
    assert "(done, skipped)" in capsys.readouterr().err
    assert main(["report", str(pipe), str(run), "--out", str(tmp_path / "both.html")]) == 0
    assert "Comparison of runs" in (tmp_path / "both.html").read_text()


@pytest.mark.parametrize("name", __import__("polyrl").algos.names())
def test_every_algorithm_gets_a_train_parser_without_option_clashes(name):
    """Config fields become options next to the run settings (--steps, --eval-every, ...): no name may collide."""
    from polyrl.cli import _train_parser

    parser = _train_parser(name)
    assert parser.format_help()


def test_help_of_every_algorithm_renders(capsys):
    # the options come from Config docstrings; argparse %-formats help, so a stray % would break --help
    from polyrl import algos

    for name in algos.names():
        with pytest.raises(SystemExit) as exit_info:
            main(["train", name, "--help"])
        assert exit_info.value.code == 0, name
        assert "config (from" in capsys.readouterr().out
