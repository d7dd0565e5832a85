"""The main job: dataset -> offline training -> OPE -> online fine-tuning -> evaluation -> report.

One run directory holds everything, and one agent travels through it with one
checkpoint format:

* ``dataset/``: the training data (made from a D4RL-style recipe unless ``dataset`` is given);
* ``checkpoints/``, ``metrics.jsonl``, ``run.json``: the agent's run (offline rows, then online);
* ``handoff/``: the checkpoint at the end of offline training (the policy fine-tuning starts from);
* ``ope.json``: each candidate policy's model-based OPE estimate with its confidence interval,
  next to its real return;
* ``scores.json``: returns and normalised scores after offline training and after fine-tuning;
* ``report.html``; ``pipeline.json``: the settings and each stage's status and duration.

Every stage is skipped when ``pipeline.json`` marks it done, and the training stages
checkpoint as they go, so a killed pipeline rerun with the same command continues where
it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from polyrl import seeding
from polyrl.errors import ConfigError
from polyrl.io import write_json_atomic
from polyrl.runs import STAGES
from polyrl.train.lock import RunLock

RECIPE_SOURCES = ("auto", "shipped", "train")


@dataclass(frozen=True)
class PipelineConfig:
    """The pipeline's settings; the defaults finish in about 5 minutes (4 min 26 s measured on one core, one torch thread)."""

    env: str = "Hopper-v5"
    """Environment (evaluation, fine-tuning, and the recipe's data)."""
    dataset: str | None = None
    """Training data (polyrl or Minari); None: make it with ``recipe``."""
    recipe: str = "medium"
    """D4RL-style recipe used when no dataset is given (random, medium, medium-replay, expert, medium-expert)."""
    recipe_transitions: int = 20_000
    """Transitions in the recipe's dataset."""
    recipe_source: str = "auto"
    """Where the recipe's policies come from: "shipped" (the SAC snapshots polyrl ships for the env), "train" (a SAC
    run of recipe_train_steps), or "auto" (shipped when polyrl ships snapshots for the env, else train). A shipped
    medium-replay re-runs the shipped SAC up to its medium snapshot for the replay buffer (Hopper-v5: 80k env steps,
    about 12 minutes on one core)."""
    recipe_train_steps: int = 15_000
    """Env steps of the SAC run behind the recipe (when it is trained)."""
    algo: str = "unio4"
    """Offline-to-online algorithm: unio4, iql, td3bc or prdc."""
    offline_steps: int = 4_000
    """Offline gradient updates."""
    online_steps: int = 30_000
    """Online fine-tuning env steps."""
    eval_every: int = 5_000
    """Online env steps between evaluations (offline, ``offline_evals`` evaluations spread over the budget)."""
    offline_evals: int = 8
    """Evaluations during offline training (the learning curve's offline part)."""
    eval_episodes: int = 10
    """Episodes of each evaluation, and of the final one."""
    ope_rollouts: int = 50
    """Model rollouts per candidate in the OPE stage."""
    ope_model_epochs: int = 50
    """Maximum training epochs of the OPE stage's dynamics ensemble (holdout early stopping may end it sooner)."""
    seed: int = 0
    """Seed of everything (recipe, training, OPE)."""
    algo_config: dict[str, Any] = field(default_factory=dict)
    """Config fields of the algorithm (e.g. smaller networks)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EMBEDDED_ALGO_CONFIG: dict[str, dict[str, Any]] = {
    # CPU-sized defaults of the embedded pipeline: the algorithm's own defaults otherwise.
    "unio4": {"batch_size": 256, "gate_every": 100, "n_steps": 2048},
}


class Pipeline:
    """Runs (or resumes) the stages in ``run_dir``; see the module docstring."""

    def __init__(self, cfg: PipelineConfig, run_dir: str | Path, *, progress: bool = True, console: Console | None = None) -> None:
        from polyrl import algos

        cls = algos.get(cfg.algo)
        if cls.online_regime is None:
            able = ", ".join(n for n, c in algos.REGISTRY.items() if c.online_regime is not None)
            raise ConfigError(f"the pipeline fine-tunes online, which {cls.name} cannot; use one of: {able}")
        if cfg.recipe_source not in RECIPE_SOURCES:
            raise ConfigError(f"unknown recipe_source {cfg.recipe_source!r}; choose one of {', '.join(RECIPE_SOURCES)}")
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.console = console or Console(stderr=True)
        self.state_path = self.run_dir / "pipeline.json"
        config = json.loads(json.dumps(cfg.to_dict()))  # as stored (tuples become lists)
        self.state: dict[str, Any] = {"config": config, "stages": {}}
        if self.state_path.exists():
            saved = json.loads(self.state_path.read_text())
            if saved.get("config") != config:
                raise ConfigError(f"{self.run_dir} holds a pipeline with other settings; use another --run-dir, "
                                  "or rerun with the settings in its pipeline.json to resume it")
            self.state = saved

    # -- driver --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every stage not yet done; returns ``pipeline.json``'s content. Holds the run directory's lock while it
        runs (one writer per run directory; the agent it trains there shares it)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir):
            return self._run_stages()

    def _run_stages(self) -> dict[str, Any]:
        for i, name in enumerate(STAGES, 1):
            done = self.state["stages"].get(name, {}).get("status") == "done"
            self.console.print(f"[bold]stage {i}/{len(STAGES)}: {name}[/bold]" + (" (done, skipped)" if done else ""))
            if done:
                continue
            t0 = time.perf_counter()
            info = getattr(self, f"_{name}")() or {}
            self.state["stages"][name] = {"status": "done", "seconds": round(time.perf_counter() - t0, 2), **info}
            write_json_atomic(self.state_path, self.state)
        return self.state

    @property
    def dataset_path(self) -> str:
        return self.cfg.dataset if self.cfg.dataset is not None else str(self.run_dir / "dataset")

    def _settings(self, online: bool) -> dict[str, Any]:
        c = self.cfg
        every = c.eval_every if online else max(c.offline_steps // max(c.offline_evals, 1), 1)
        return {"eval_every": every, "eval_episodes": c.eval_episodes, "progress": self.progress, "checkpoint_every": every}

    # -- stages --------------------------------------------------------------------------------
    def _dataset(self) -> dict[str, Any]:
        from polyrl.data.minari_io import load_any
        from polyrl.jobs.recipes import make_dataset, shipped_source

        c = self.cfg
        if c.dataset is not None:
            data = load_any(c.dataset)
            return {"path": c.dataset, "transitions": len(data)}
        shipped = c.recipe_source == "shipped" or (
            c.recipe_source == "auto" and c.recipe != "random" and shipped_source(c.env) is not None)
        data = make_dataset(f"{c.env}-{c.recipe}", c.recipe_transitions, train_steps=c.recipe_train_steps,
                            eval_every=max(c.recipe_train_steps // 10, 500), seed=c.seed,
                            sources=self.run_dir / ".recipe-sources", progress=self.progress, shipped=shipped)
        data.save(self.dataset_path)
        return {"path": self.dataset_path, "transitions": len(data), "recipe": c.recipe,
                "policies": "shipped" if shipped else "trained"}

    def _offline(self) -> dict[str, Any]:
        import polyrl

        c = self.cfg
        if (self.run_dir / "checkpoints").exists():  # a killed offline stage: continue from its last checkpoint
            agent = polyrl.load(self.run_dir)
            if agent.algo.n_updates < c.offline_steps:
                agent.learn(**self._settings(online=False))
        else:
            overrides = EMBEDDED_ALGO_CONFIG.get(c.algo, {}) | c.algo_config
            agent = polyrl.make(c.algo, c.env, dataset=self.dataset_path, seed=c.seed, run_dir=self.run_dir, **overrides)
            agent.learn(c.offline_steps, **self._settings(online=False))
        agent.save(self.run_dir / "handoff")
        result = agent.evaluate(c.eval_episodes)
        agent.close()
        return {"updates": agent.algo.n_updates, "return": result.mean_return}

    def _ope(self) -> dict[str, Any]:
        import polyrl
        from polyrl import ope
        from polyrl.algos.base import candidates, deployed_candidate
        from polyrl.data.minari_io import load_any
        from polyrl.models.dynamics import DynamicsConfig

        c = self.cfg
        agent = polyrl.load(self.run_dir / "handoff", resume=False)
        data = load_any(self.dataset_path)
        model, fit = ope.fit_model(agent, data, cfg=DynamicsConfig(max_epochs=c.ope_model_epochs), seed=c.seed)
        selected = deployed_candidate(agent.algo)
        rows = []
        for name, policy in candidates(agent.algo).items():
            est = ope.model_based(agent, data, model=model, policy=policy, n_rollouts=c.ope_rollouts, seed=c.seed)
            real = agent.evaluate_policy(policy, c.eval_episodes)
            rows.append(est.to_json() | {"name": name, "real_return": real.mean_return, "real_return_std": real.std_return,
                                         "selected": name == selected})
        agent.close()
        write_json_atomic(self.run_dir / "ope.json", {"candidates": rows, "model": fit})
        return {"candidates": len(rows)}

    def _online(self) -> dict[str, Any]:
        import polyrl

        c = self.cfg
        agent = polyrl.load(self.run_dir, run_dir=self.run_dir)
        if agent.phase == "offline":  # no online checkpoint yet: start from the hand-off
            agent.close()
            agent = polyrl.load(self.run_dir / "handoff", run_dir=self.run_dir)
            agent.start_online()
            agent.learn(c.online_steps, **self._settings(online=True))
        elif agent.algo.env_steps < c.online_steps:
            agent.learn(**self._settings(online=True))
        agent.close()
        return {"env_steps": agent.algo.env_steps}

    def _evaluate(self) -> dict[str, Any]:
        import polyrl
        from polyrl.data.minari_io import load_any

        c = self.cfg
        meta = load_any(self.dataset_path).meta
        ref = reference_returns(meta, c.env)
        phases = []
        for name, path in (("offline", self.run_dir / "handoff"), ("online", self.run_dir)):
            agent = polyrl.load(path, resume=False)
            res = agent.evaluate(c.eval_episodes, seed=seeding.stream(c.seed, "final_eval"))
            agent.close()
            score = None if ref is None else 100.0 * (res.mean_return - ref["random"]) / (ref["expert"] - ref["random"])
            phases.append({"name": name, "return": res.mean_return, "return_std": res.std_return, "score": score})
        scores: dict[str, Any] = {"env": c.env, "reference": ref, "phases": phases}
        if (own := dataset_reference(meta)) is not None and own != ref:  # context: the data's own expert
            scores["dataset_reference"] = own
        write_json_atomic(self.run_dir / "scores.json", scores)
        return {p["name"]: p["score"] if p["score"] is not None else p["return"] for p in phases}

    def _report(self) -> dict[str, Any]:
        from polyrl.report import write_report

        return {"path": str(write_report([self.run_dir]))}


def reference_returns(meta: dict[str, Any], env_id: str) -> dict[str, Any] | None:
    """Random and expert returns for normalised scores: the task's own (:func:`polyrl.data.scores.reference`:
    polyrl's measurement of the exact env id, else D4RL's constants for its family), else those polyrl
    measured when it made the dataset (a recipe's random policy and best SAC snapshot), else None.

    The task's references come first so that a pipeline's score means what ``polyrl eval`` and the
    trainer's ``eval/normalized_score`` mean for the same env: a recipe made on a small budget has a weak
    "expert" (a Hopper recipe trained for 15k SAC steps: ~250, against 3429 for polyrl's 200k-step Hopper-v5
    reference), and scoring against it turned a policy that barely hops into ~80.
    """
    from polyrl.data.scores import reference

    ref = reference(env_id)
    if ref is not None:
        return {"random": ref.random, "expert": ref.expert, "source": ref.source}
    return dataset_reference(meta)


def dataset_reference(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The random and expert returns a recipe dataset's maker measured (``None`` for other datasets)."""
    if "random_return" in meta and "expert_return" in meta:
        return {"random": float(meta["random_return"]), "expert": float(meta["expert_return"]),
                "source": f"polyrl-measured ({meta.get('recipe', 'recipe')} dataset: random policy, best SAC snapshot)"}
    return None


def config_from_args(values: dict[str, Any]) -> PipelineConfig:
    """A :class:`PipelineConfig` from CLI values (``None`` keeps the default)."""
    known = {f.name for f in fields(PipelineConfig)}
    return PipelineConfig(**{k: v for k, v in values.items() if k in known and v is not None})
