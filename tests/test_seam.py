"""The seam between algorithms and the loop: one clock, protocols checked when the run is built, the layer rule."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import polyrl
from polyrl import algos
from polyrl.algos.base import (
    Algorithm,
    OnPolicyLearner,
    RecurrentLearner,
    candidates,
    deployed_candidate,
    env_copies,
)
from polyrl.cli import main
from polyrl.config import AlgoConfig
from polyrl.errors import ConfigError
from polyrl.train.trainer import RunParts
from tests.conftest import TINY

FAST = ["--no-progress", "--no-tensorboard", "--eval-every", "0", "--eval-episodes", "1"]
ROOT = Path(__file__).resolve().parents[1] / "polyrl"


def test_offline_resume_counts_updates_towards_steps(tmp_path, capsys, tiny_datasets):
    """``--resume RUN --steps N`` on an offline run trains up to N updates in all, not N more."""
    run = tmp_path / "run"
    data = str(tiny_datasets["Pendulum-v1"])
    assert main(["train", "bc", "--dataset", data, "--steps", "300", "--checkpoint-every", "100", "--hidden", "16,16",
                 "--batch-size", "16", "--run-dir", str(run), *FAST]) == 0
    assert main(["train", "--resume", str(run), "--steps", "500", *FAST]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--json", "--episodes", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["updates"] == 500 and out["env_steps"] == 0
    assert main(["train", "--resume", str(run), "--steps", "400", *FAST]) == 0
    assert "already has 500 updates; nothing to do" in capsys.readouterr().out


def test_one_clock_shared_by_algorithm_source_and_trainer(tmp_path):
    agent = polyrl.make("dqn", "CartPole-v1", seed=0, run_dir=tmp_path, **TINY["dqn"])
    agent.learn(120, progress=False, tensorboard=False, eval_every=0, eval_episodes=1)
    clock = agent.algo.clock
    assert agent.trainer.clock is clock and agent.trainer.source.clock is clock
    assert (clock.env_steps, clock.updates, clock.budget) == (agent.algo.env_steps, agent.algo.n_updates, 120)
    assert agent.progress == agent.trainer.progress() == 120


def test_run_parts_are_composed_in_one_place(tmp_path):
    agent = polyrl.make("ppo", "CartPole-v1", seed=0, run_dir=tmp_path, **TINY["ppo"])
    parts = agent.run_parts()
    assert isinstance(parts, RunParts) and parts.algo is agent.algo and parts.env.num_envs == env_copies(agent.algo)
    assert parts.seed == 0 and parts.title == "ppo CartPole-v1"
    parts.env.close()


@dataclass(frozen=True)
class _Cfg(AlgoConfig):
    pass


class _NoRollouts(Algorithm):
    """Claims the on-policy regime but has no policy_step/value: the run must refuse it when it is built."""

    name = "norollouts"
    Config = _Cfg
    action_kinds = ("discrete",)
    regime = "on_policy"

    def build(self):
        @dataclass
        class S:
            net: torch.nn.Module

        return S(torch.nn.Linear(4, 2))

    def act(self, obs, deterministic=False):
        return self.state.net(obs).argmax(-1)

    def update(self, batch):
        return {}


def test_a_source_names_the_members_an_algorithm_lacks(monkeypatch, tmp_path):
    monkeypatch.setitem(algos.REGISTRY, "norollouts", _NoRollouts)
    agent = polyrl.make("norollouts", "CartPole-v1", run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"norollouts cannot be fed on-policy rollouts: it lacks policy_step, value \(OnPolicyLearner\)"):
        agent.learn(10, progress=False, tensorboard=False)


def test_single_algorithm_hooks_are_opt_in():
    assert not hasattr(Algorithm, "candidates") and not hasattr(Algorithm, "end_round") and not hasattr(Algorithm, "env_copies")
    assert isinstance(polyrl.make("ppo", "CartPole-v1", **TINY["ppo"]).algo, OnPolicyLearner)
    assert isinstance(polyrl.make("dreamer", "Pendulum-v1", **TINY["dreamer"]).algo, RecurrentLearner)
    sac = polyrl.make("sac", "Pendulum-v1", **TINY["sac"]).algo
    assert list(candidates(sac)) == ["policy"] and deployed_candidate(sac) == "policy"


# -- the layer rule -------------------------------------------------------------------------------------------
# A module may import only from its own layer or a lower one (docs/architecture.md). Lazy imports inside
# functions count; imports under ``if TYPE_CHECKING:`` do not (they are annotations only).

LAYERS: list[tuple[str, ...]] = [
    ("errors", "types", "io", "_version", "clock", "runs", "seeding"),
    ("returns", "losses", "nets", "envs", "optim", "morl"),
    ("data", "models"),
    ("config", "families"),
    ("algos",),
    ("train",),
    ("agent", "ope", "report"),
    ("jobs", "pipeline", "sweep"),
    ("cli", "__init__", "_aliases"),
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "polyrl"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "polyrl" and not node.level:
            if node.module == "polyrl":  # from polyrl import x: x is a module of the package, or the package API
                out += [(node.lineno, f"polyrl.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1 and parts[:-1] != ["polyrl"]:
        parts = parts[:-1]
    return ".".join(parts)


def test_no_module_imports_from_a_higher_layer():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        mod = _module(path)
        here = _layer(mod)
        for line, target in _imports(path):
            if target == "polyrl" and here < _layer("polyrl.agent"):
                bad.append(f"{mod}:{line} imports the package API (polyrl) from below the agent")
            elif target != "polyrl" and _layer(target) > here:
                bad.append(f"{mod}:{line} imports {target} (layer {_layer(target)} > {here})")
    assert not bad, "imports against the layer rule:\n" + "\n".join(bad)


def test_no_algorithm_file_imports_another():
    files = [p for p in (ROOT / "algos").glob("*.py") if p.stem not in ("__init__", "base")]
    bad = [f"{p.stem}:{line} imports {t}" for p in files for line, t in _imports(p)
           if t.startswith("polyrl.algos.") and t not in ("polyrl.algos.base",)]
    assert not bad, bad


# -- configs of earlier releases ------------------------------------------------------------------------------

LEGACY = json.loads((Path(__file__).parent / "data" / "configs_0.1.0.json").read_text())
"""Every algorithm's default config as release 0.1.0 saved it (flat, before the source sections)."""


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_configs_of_earlier_releases_load_to_the_same_values(name):
    cls = algos.get(name).Config
    assert cls.from_dict(LEGACY[name]) == cls(), f"{name}: a 0.1.0 config does not load to today's defaults"
    current = cls().to_dict()
    for key, value in LEGACY[name].items():
        if key in cls.RETIRED:
            continue
        assert current[cls.resolve(key)] == value, f"{name}.{key}"


def test_sections_flatten_and_take_every_spelling():
    cfg = algos.get("sac").Config.from_dict({"batch_size": 64, "replay_learning_starts": 10, "replay": {"n_step": 3}})
    assert (cfg.replay.batch_size, cfg.replay.learning_starts, cfg.replay.n_step) == (64, 10, 3)
    assert cfg.to_dict()["replay_batch_size"] == 64 and "batch_size" not in cfg.to_dict()
    with pytest.raises(ConfigError, match="config field 'replay_batch_size' given twice"):
        algos.get("sac").Config.from_dict({"batch_size": 64, "replay_batch_size": 32})
    with pytest.raises(ConfigError, match="unknown config field 'replay_batch_sise' for SACConfig; did you mean 'replay_batch_size'"):
        algos.get("sac").Config.from_dict({"replay_batch_sise": 1})
    mopo = algos.get("mopo").Config
    assert mopo.from_dict({"learning_starts": 5000}) == mopo()  # retired at its old value: an old checkpoint loads
    with pytest.raises(ConfigError, match="MOPOConfig has no field 'learning_starts' any more"):
        mopo.from_dict({"learning_starts": 10})


def test_a_whole_section_in_one_option(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "sac", "Pendulum-v1", "--steps", "60", "--replay", "batch_size=8,learning_starts=40,buffer_size=500",
                 "--hidden", "8,8", "--run-dir", str(run), *FAST]) == 0
    saved = json.loads((run / "run.json").read_text())["config"]
    assert (saved["replay_batch_size"], saved["replay_learning_starts"], saved["replay_buffer_size"]) == (8, 40, 500)


def test_shipped_snapshots_of_earlier_releases_load():
    shipped = Path(polyrl.__file__).parent / "data" / "sources" / "Hopper-v5"
    snapshot = next(p for p in sorted(shipped.iterdir()) if (p / "agent.json").exists())
    agent = polyrl.load(snapshot, resume=False)
    assert agent.cfg.replay.batch_size == 256 and agent.act(torch.zeros(agent.spec.obs_shape).numpy()).shape == (3,)
