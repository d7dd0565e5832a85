"""D4RL-style dataset recipes built with polyrl's own SAC (Fu et al. 2020, section 5).

* ``random``: uniformly random actions.
* ``expert``: the best SAC snapshot of a training run (by deterministic
  evaluation), rolled out stochastically.
* ``medium``: the first snapshot of the same run whose evaluation return
  reaches a third of the way from the random to the expert return, rolled
  out stochastically.
* ``medium-replay``: the run's replay buffer up to the moment the medium
  snapshot was taken.
* ``medium-expert``: medium and expert rollouts of equal size, back to back.

The SAC run is shared by the recipes of one env, seed and budget: it is kept
under ``<out>/../.polyrl-sources/`` and reused. Every dataset records its
provenance (recipe, policy return, training budget, seed, polyrl version).

``shipped=True`` (CLI ``--shipped``) takes the medium and expert policies from
the SAC snapshots polyrl ships for the env (``polyrl/data/sources/<env>/``:
a SAC run with observation normalisation, its checkpoints evaluated as for
``source_run`` and cut to the medium and expert by :func:`ship_snapshots`;
``scripts/make_shipped_sources.py`` remakes them), so a medium
or expert dataset costs only its rollouts. polyrl ships no replay buffer:
a shipped ``medium-replay`` re-runs the shipped SAC's recipe (algorithm,
config, seed and checkpoint interval, as ``snapshots.json`` records them) up
to the medium snapshot's step and takes that run's replay buffer
(:func:`_shipped_replay`; about 12 minutes on one core for Hopper-v5's 80k
steps). CPU runs are deterministic, so where torch computes as on the machine
that made the snapshots the re-run ends on the shipped medium policy bit for
bit; the dataset's ``meta.json`` says whether it did (``replay_check``).

``source_run=RUN_DIR`` (CLI ``--from-run``) takes the policies from a run you
already trained instead (any algorithm on the env, with periodic checkpoints):
each checkpoint is a snapshot, evaluated once (the evaluations are cached
beside the sources), and ``medium-replay`` reads the replay buffer saved in the
run's latest checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from polyrl import seeding
from polyrl.data.collect import collect
from polyrl.data.dataset import Dataset
from polyrl.errors import ConfigError
from polyrl.io import write_text_atomic

RECIPES = ("random", "medium", "medium-replay", "expert", "medium-expert")
SHIPPED_SOURCES = Path(__file__).parent.parent / "data" / "sources"  # package data beside the storage code
TRAIN_HINT = "train the run instead (drop --shipped / use recipe_source='train')"
ALIASES = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5"}


def parse(name: str) -> tuple[str, str]:
    """``"hopper-medium-replay" -> ("Hopper-v5", "medium-replay")``; the env part may be any Gymnasium id."""
    for recipe in sorted(RECIPES, key=len, reverse=True):
        if name.endswith("-" + recipe):
            env = name[: -len(recipe) - 1]
            return ALIASES.get(env.lower(), env), recipe
    raise ConfigError(f"unknown recipe in {name!r}; use <env>-<{'|'.join(RECIPES)}>, e.g. hopper-medium")


def shipped_source(env_id: str) -> Path | None:
    """The directory of the SAC snapshots polyrl ships for ``env_id`` (its ``snapshots.json`` lists them with their
    evaluation returns and says how they were made), or ``None`` when it ships none."""
    path = SHIPPED_SOURCES / env_id.replace("/", "_")
    return path if (path / "snapshots.json").exists() else None


def _source_run(env_id: str, train_steps: int, eval_every: int, seed: int, root: Path, progress: bool) -> Path:
    """Train SAC once per (env, budget, seed), saving a deployable snapshot at every evaluation."""
    import polyrl

    run = root / f"{env_id.replace('/', '_')}-sac-{train_steps}-s{seed}"
    if (run / "snapshots.json").exists():
        return run
    if run.exists():
        shutil.rmtree(run)  # an interrupted run: start over
    agent = polyrl.make("sac", env_id, seed=seed, run_dir=run / "run", buffer_size=max(train_steps, 1000),
                        learning_starts=min(5000, max(train_steps // 10, 100)))
    snapshots = []
    while agent.algo.env_steps < train_steps:
        agent.learn(min(eval_every, train_steps - agent.algo.env_steps), progress=progress, eval_every=0,
                    eval_episodes=0, tensorboard=False, keep_checkpoints=1)
        step = agent.algo.env_steps
        ret = agent.evaluate(10, seed=seeding.stream(seed, "snapshot_eval")).mean_return
        agent.save(run / "snapshots" / f"step_{step:010d}", resume=False)
        snapshots.append({"step": step, "return": ret, "path": f"snapshots/step_{step:010d}"})
    buf = agent.trainer.source.buffer  # type: ignore[union-attr]
    n = len(buf)
    env = agent._env_for_actions()
    np.savez(run / "replay.npz", obs=buf.obs[:n, 0].cpu().numpy(), action=env.to_env_action(buf.action[:n, 0].cpu().numpy()),
             reward=buf.reward[:n, 0].cpu().numpy(), next_obs=buf.next_obs[:n, 0].cpu().numpy(),
             terminated=buf.terminated[:n, 0].cpu().numpy() > 0, truncated=buf.truncated[:n, 0].cpu().numpy() > 0)
    random_return = float(np.mean([r for r, _ in random_returns(env_id, seed)]))
    # written last and atomically: its presence marks a finished source run (a killed one is started over)
    write_text_atomic(run / "snapshots.json", json.dumps({"snapshots": snapshots, "random_return": random_return}, indent=2))
    agent.close()
    return run


def _snapshots_of_run(env_id: str, source_run: Path, seed: int, root: Path) -> Path:
    """A source directory whose ``snapshots.json`` lists the checkpoints of an existing run, each evaluated once."""
    import hashlib

    import polyrl
    from polyrl.train.checkpoint import list_checkpoints

    source_run = source_run.resolve()
    checkpoints = list_checkpoints(source_run)
    if not checkpoints:
        raise ConfigError(f"{source_run} has no checkpoints to take snapshots from; train it with checkpoint_every set")
    key = hashlib.sha1(str(source_run).encode()).hexdigest()[:10]
    out = root / f"{env_id.replace('/', '_')}-from-{source_run.name}-{key}-s{seed}"
    known = json.loads((out / "snapshots.json").read_text()) if (out / "snapshots.json").exists() else None
    if known is not None and [s["path"] for s in known["snapshots"]] == [str(c) for c in checkpoints]:
        return out
    snapshots = []
    for ckpt in checkpoints:
        agent = polyrl.load(ckpt, resume=False)
        if agent.env_id != env_id:
            raise ConfigError(f"{source_run} was trained on {agent.env_id}, not {env_id}; pass a run of {env_id}")
        snapshots.append({"step": int(agent.algo.env_steps), "return": agent.evaluate(10, seed=seeding.stream(seed, "snapshot_eval")).mean_return,
                          "path": str(ckpt), "algo": agent.algo_cls.name})
        agent.close()
    random_return = float(np.mean([r for r, _ in random_returns(env_id, seed)]))
    out.mkdir(parents=True, exist_ok=True)
    from polyrl.io import write_json_atomic

    write_json_atomic(out / "snapshots.json", {"snapshots": snapshots, "random_return": random_return, "source_run": str(source_run)})
    return out


def _replay_of_run(source_run: Path, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` transitions of the replay buffer saved in ``source_run``'s latest checkpoint (env actions)."""
    import polyrl
    from polyrl.train.checkpoint import read_checkpoint

    meta, _, resume = read_checkpoint(source_run, with_resume=True)
    try:
        buf = resume["trainer"]["source"]["buffer"]
    except (KeyError, TypeError):
        raise ConfigError(f"{source_run}'s latest checkpoint holds no replay buffer; medium-replay needs an off-policy run "
                          "saved with its resume state") from None
    # A buffer that filled up exactly at the last step (buffer_size == env steps) still holds every step in order.
    exactly_full = buf["full"] and int(buf["pos"]) == 0 and int(meta.get("env_steps", -1)) == buf["obs"].shape[0]
    if (buf["full"] and not exactly_full) or buf["obs"].shape[1] != 1:
        raise ConfigError(f"{source_run}'s replay buffer {'wrapped around' if buf['full'] else 'has several env columns'}, "
                          "so it no longer holds the run's data in order; medium-replay needs a single-env run whose buffer "
                          "kept every step")
    held = buf["obs"].shape[0] if exactly_full else int(buf["pos"])
    if n > held:
        raise ConfigError(f"{source_run}'s replay buffer holds {held} steps, fewer than the medium snapshot's {n}")
    env = polyrl.load(source_run, resume=False)._env_for_actions()
    out = {k: buf[k][:n, 0].cpu().numpy() for k in ("obs", "action", "reward", "next_obs")}
    out["action"] = env.to_env_action(out["action"])
    out |= {k: buf[k][:n, 0].cpu().numpy() > 0 for k in ("terminated", "truncated")}
    env.close()
    return out


def _shipped_replay(env_id: str, source: Path, info: dict[str, Any], medium: dict[str, Any], root: Path,
                   progress: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The replay buffer of the shipped snapshots' training run up to the medium snapshot, by re-running it.

    The run is rebuilt from ``info["provenance"]`` (algorithm, config, seed and checkpoint interval; checkpoints are
    episode boundaries, so the interval is part of the recipe) under ``root`` and reused, or resumed if interrupted.
    Returns the fields and a check of the re-run's policy at the medium step against the shipped one:
    ``{"matches_shipped_medium": bool, "max_abs_weight_diff": float, ...}``. A mismatch (another CPU's arithmetic,
    another torch release, or a changed default in the algorithm's config) leaves a valid medium-replay dataset of the
    same recipe, but not the history of the shipped medium policy.
    """
    import polyrl
    from polyrl.train.checkpoint import list_checkpoints

    prov = info.get("provenance") or {}
    missing = [k for k in ("algo", "config", "seed", "checkpoint_every") if k not in prov]
    if missing:
        raise ConfigError(f"{source / 'snapshots.json'} does not record how its run was made ({', '.join(missing)} "
                          f"missing), so its replay buffer cannot be re-made; {TRAIN_HINT}")
    n, algo, seed, every = int(medium["step"]), str(prov["algo"]), int(prov["seed"]), int(prov["checkpoint_every"])
    run = root / f"{env_id.replace('/', '_')}-shipped-{algo}-s{seed}" / "run"
    agent = polyrl.load(run) if list_checkpoints(run) else None
    if agent is not None and agent.algo.env_steps > n:  # a run taken past the medium step cannot give its buffer back
        agent.close()
        agent = None
    if agent is None:
        shutil.rmtree(run, ignore_errors=True)
        agent = polyrl.make(algo, env_id, seed=seed, run_dir=run, **prov["config"])
    if agent.algo.env_steps < n:
        agent.learn(n - agent.algo.env_steps, eval_every=0, eval_episodes=0, tensorboard=False, progress=progress,
                    checkpoint_every=every, keep_checkpoints=1)
    agent.close()
    return _replay_of_run(run, n), _same_weights(source / medium["path"], list_checkpoints(run)[-1])


def _same_weights(shipped: Path, made: Path) -> dict[str, Any]:
    """Compare two checkpoints' ``model.safetensors``: identical keys and values, and the largest difference."""
    from safetensors.torch import load_file

    a, b = load_file(str(shipped / "model.safetensors")), load_file(str(made / "model.safetensors"))
    same_keys = sorted(a) == sorted(b) and all(a[k].shape == b[k].shape for k in a)
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()) if same_keys else float("inf")
    return {"matches_shipped_medium": bool(same_keys and diff == 0.0), "max_abs_weight_diff": diff,
            "shipped": str(shipped), "rerun": str(made)}


def random_returns(env_id: str, seed: int, episodes: int = 10) -> list[tuple[float, int]]:
    """``(return, length)`` of ``episodes`` episodes of uniformly random actions (in the agent's action space)."""
    from polyrl.envs import VecEnv
    from polyrl.train.sources import random_actions

    env = VecEnv(env_id, 1, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset()
    done: list[tuple[float, int]] = []
    while len(done) < episodes:
        env.step(random_actions(rng, env.spec, 1))
        done += env.drain_episodes()
    env.close()
    return done[:episodes]


def pick_snapshots(info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(medium, expert)`` of a ``snapshots.json``: the best snapshot, and the first that reaches a third of the
    way from the random return to it (the expert itself if none beat random)."""
    snaps, r_random = info["snapshots"], info["random_return"]
    expert = max(snaps, key=lambda s: s["return"])
    third = r_random + (expert["return"] - r_random) / 3.0
    return next((s for s in snaps if s["return"] >= third), expert), expert


def ship_snapshots(source: str | Path, out: str | Path, provenance: dict[str, Any]) -> Path:
    """Copy a source run's medium and expert snapshots (:func:`pick_snapshots`) to ``out`` with a ``snapshots.json``
    that lists just those two (so the selection gives them back) and, under ``provenance``, how they were made and
    every snapshot's return. This is how ``polyrl/data/sources/<env>/`` is made (``scripts/make_shipped_sources.py``)."""
    from polyrl.io import write_json_atomic

    source, out = Path(source), Path(out)
    info = json.loads((source / "snapshots.json").read_text())
    medium, expert = pick_snapshots(info)
    kept = [medium] if medium is expert else [medium, expert]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    listed = []
    for snap in kept:
        name = Path(snap["path"]).name
        (out / name).mkdir()
        for file in ("agent.json", "model.safetensors"):  # the deployable policy; no resume state
            shutil.copy2(source / snap["path"] / file, out / name / file)
        listed.append({k: v for k, v in snap.items() if k != "path"} | {"path": name})
    curve = [{"step": s["step"], "return": s["return"]} for s in info["snapshots"]]
    write_json_atomic(out / "snapshots.json", {"snapshots": listed, "random_return": info["random_return"],
                                               "provenance": provenance | {"all_snapshots": curve}})
    return out


def make_dataset(name: str, steps: int, *, train_steps: int = 100_000, eval_every: int = 5_000, seed: int = 0,
                 sources: str | Path = ".polyrl-sources", progress: bool = False, source_run: str | Path | None = None,
                 shipped: bool = False) -> Dataset:
    """Build the dataset ``<env>-<recipe>`` with ``steps`` transitions (see the module docstring); the policies come
    from a SAC run trained here for ``train_steps``, from the checkpoints of ``source_run``, or (``shipped``) from
    the snapshots polyrl ships for the env."""
    import polyrl

    env_id, recipe = parse(name)
    base: dict[str, Any] = {"recipe": recipe, "dataset_name": name, "seed": seed}
    if recipe == "random":
        return _named(collect(env_id, steps, seed=seeding.stream(seed, "recipe_random"), provenance=base), name)
    if shipped:
        if source_run is not None:
            raise ConfigError("pass either shipped snapshots or a source run, not both")
        run = shipped_source(env_id)
        if run is None:
            have = sorted(p.name for p in SHIPPED_SOURCES.glob("*/snapshots.json")) if SHIPPED_SOURCES.exists() else []
            raise ConfigError(f"polyrl ships no SAC snapshots for {env_id} (it has: {', '.join(have) or 'none'}); {TRAIN_HINT}")
    elif source_run is not None:
        run = _snapshots_of_run(env_id, Path(source_run), seed, Path(sources))
    else:
        run = _source_run(env_id, train_steps, eval_every, seed, Path(sources), progress)
    info = json.loads((run / "snapshots.json").read_text())
    r_random = info["random_return"]
    medium, expert = pick_snapshots(info)
    base |= {"random_return": r_random, "expert_return": expert["return"]}
    if shipped:
        base |= {"source": f"polyrl's shipped {env_id} SAC snapshots", "source_provenance": info.get("provenance")}
    else:
        base |= {"source_run": info["source_run"]} if source_run is not None else {"train_steps": train_steps}

    def rollout(snap: dict[str, Any], n: int, collect_seed: int, tag: str) -> Dataset:
        agent = polyrl.load(run / snap["path"], resume=False)
        return collect(env_id, n, agent=agent, seed=collect_seed, provenance=base | {
            "recipe": tag, "policy": f"{snap.get('algo', 'sac')}@{snap['step']}", "policy_eval_return": snap["return"]})

    if recipe == "expert":
        return _named(rollout(expert, steps, seeding.stream(seed, "recipe_expert"), "expert"), name)
    if recipe == "medium":
        return _named(rollout(medium, steps, seeding.stream(seed, "recipe_medium"), "medium"), name)
    if recipe == "medium-expert":
        half = steps // 2
        parts = [rollout(medium, half, seeding.stream(seed, "recipe_medium"), "medium"),
                 rollout(expert, steps - half, seeding.stream(seed, "recipe_expert"), "expert")]
        return _named(Dataset.concatenate(parts, meta=parts[0].meta | {"recipe": "medium-expert", "policy": "medium+expert",
                                                                         "medium_step": medium["step"], "expert_step": expert["step"]}), name)
    # medium-replay: everything the run stored up to the medium snapshot
    n = medium["step"]
    if shipped:
        fields, check = _shipped_replay(env_id, run, info, medium, Path(sources), progress)
        base["replay_check"] = check
    elif source_run is not None:
        fields = _replay_of_run(Path(source_run), n)
    else:
        replay = np.load(run / "replay.npz")
        fields = {k: replay[k][:n] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
    fields["truncated"] = fields["truncated"].copy()
    fields["truncated"][-1] |= not fields["terminated"][-1]  # the cut ends an episode
    meta = collect_meta(env_id) | base | {"recipe": "medium-replay", "policy": f"{medium.get('algo', 'sac')} replay up to step {n}",
                                          "policy_eval_return": medium["return"]}
    return _named(Dataset(**fields, meta=meta), name)


def collect_meta(env_id: str) -> dict[str, Any]:
    """Env id, spec and version for datasets not produced by :func:`collect`."""
    import time

    from polyrl._version import __version__
    from polyrl.envs import VecEnv

    env = VecEnv(env_id, 1)
    spec = env.spec.to_json()
    env.close()
    return {"env_id": env_id, "spec": spec, "polyrl_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _named(ds: Dataset, name: str) -> Dataset:
    ds.name = name
    return ds
