"""polyrl vs d3rlpy on offline RL: gradient updates per second and normalised score at a fixed budget.

    python benchmarks/offline.py make-data                  # build the Hopper datasets (SAC, then collection)
    python benchmarks/offline.py                            # Hopper x {medium, medium-replay, medium-expert} x 4 algos
    python benchmarks/offline.py --task hopper-medium --algo td3bc
    python benchmarks/offline.py --env hopper,halfcheetah   # HalfCheetah too (run make-data --env halfcheetah first)
    python benchmarks/offline.py --quick                    # smoke run, a few minutes; writes under benchmarks/.work/
    python benchmarks/offline.py --render                   # only regenerate BENCHMARKS.md from the JSON

Both libraries train on the *same* dataset files (polyrl's native format,
made by ``make-data`` from polyrl SAC agents: no D4RL/Minari download) with
the same gradient-step budget, batch size, network sizes, hyperparameters and
seeds (``ALGOS`` below holds them once, library-neutral;
``_polyrl_offline_runner.py`` and ``_d3rlpy_runner.py`` map them onto each
library). Each measured run is a fresh subprocess with the same torch thread
count; runs alternate polyrl, d3rlpy, polyrl, d3rlpy, ... d3rlpy lives in
its own virtualenv (``benchmarks/.venvs/d3rlpy``, created here on first use).

Results merge into ``benchmarks/results/offline.json`` and the table between
``<!-- offline:start -->`` and ``<!-- offline:end -->`` in ``BENCHMARKS.md``
is regenerated from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _results import locked, merged_records, write_results, write_section

# Shared with the online harness: virtualenv helpers, CPU-contention measurement, machine description.
from online import BackgroundLoad, _fmt, _round, ensure_venv, machine_info, probe_venv, venv_python

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "offline.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
WORK = HERE / ".work"
DATA_DIR = WORK / "datasets"
QUICK_DATA_DIR = WORK / "datasets-quick"
D3RLPY_VENV = HERE / ".venvs" / "d3rlpy"
# gymnasium's MuJoCo envs also need imageio (its [mujoco] extra), which plain "gymnasium mujoco" lacks.
D3RLPY_PACKAGES = ("d3rlpy", "gymnasium[mujoco]", "mujoco")
START, END = "<!-- offline:start -->", "<!-- offline:end -->"
RUN_TIMEOUT_S = 3600
BUSY_WARNING = 0.25  # cores used by other processes during a run above which its timing is flagged

# -- environments, dataset recipes and reference returns ------------------------------------------
# Normalised score = 100 (R - R_random) / (R_expert - R_random), with the reference returns polyrl.data.reference()
# picks for the env id: polyrl's own measurement of that exact id when it ships one (Hopper-v5: a uniformly random
# policy and a 200k-step polyrl SAC), else D4RL's published constants for the family (measured on the v2 envs).
# Every record names the source it used.
ENVS: dict[str, dict[str, Any]] = {
    "hopper": {"env_id": "Hopper-v5"},
    "halfcheetah": {"env_id": "HalfCheetah-v5"},
}
KINDS = ("medium", "medium-replay", "medium-expert")
DEFAULT_ENVS = ("hopper",)

# make-data budgets: one polyrl SAC run per env; "medium" is its policy at medium_steps, "expert" at
# expert_steps; medium-replay is its replay buffer up to medium_steps; medium-expert = medium + expert.
MAKE_DATA = {"expert_steps": 60_000, "medium_steps": 20_000, "transitions": 100_000, "learning_starts": 1000}
MAKE_DATA_QUICK = {"expert_steps": 3_000, "medium_steps": 2_000, "transitions": 5_000, "learning_starts": 1000}
SAC_SEED, MEDIUM_COLLECT_SEED, EXPERT_COLLECT_SEED = 0, 1, 2

# -- the algorithms: hyperparameters said once, for both libraries (polyrl's defaults) ------------
COMMON = dict(batch_size=256, hidden=[256, 256], gamma=0.99, tau=0.005, n_critics=2, normalize_obs=True)
TD3 = dict(actor_lr=3e-4, critic_lr=3e-4, policy_delay=2, target_noise=0.2, noise_clip=0.5, alpha=2.5)
ALGOS: dict[str, dict[str, Any]] = {
    "td3bc": dict(COMMON, **TD3),
    "iql": dict(COMMON, actor_lr=3e-4, critic_lr=3e-4, value_lr=3e-4, expectile=0.7, beta=3.0, max_weight=100.0,
                cosine_actor_lr=True, return_scaled_reward=True),
    "cql": dict(COMMON, actor_lr=1e-4, critic_lr=3e-4, temperature_lr=1e-4, init_temperature=1.0, cql_weight=5.0,
                n_action_samples=10, auto_cql_alpha=False, backup_entropy=False),
    "prdc": dict(COMMON, **TD3, beta=2.0),
}
# Gradient steps per run, the same for both libraries. Sized for a full run of about 85 min on 2 cores (Hopper,
# 3 datasets x 4 algorithms x 3 seeds x 2 libraries, one thread each). CQL gets a tenth of the others' budget: its
# critic update scores 3 x 10 sampled actions per state, about 20x the matrix work of a TD3+BC update, and runs at
# ~10 updates/s on one CPU thread in either library.
STEPS = {"td3bc": 5_000, "iql": 5_000, "cql": 500, "prdc": 5_000}
QUICK_STEPS = {"td3bc": 300, "iql": 300, "cql": 30, "prdc": 300}
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 10_000
# Rough single-thread gradient updates/s on the reference machine (2 cores, idle), for the ETA only.
EST_RATE = {"polyrl": {"td3bc": 140.0, "iql": 100.0, "cql": 7.0, "prdc": 110.0},
            "d3rlpy": {"td3bc": 85.0, "iql": 60.0, "cql": 9.0, "prdc": 65.0}}
EST_OVERHEAD_S = {"polyrl": 10.0, "d3rlpy": 15.0}  # start-up, dataset set-up and the 10-episode evaluation


@dataclass(frozen=True)
class Case:
    env: str  # key of ENVS
    kind: str  # one of KINDS
    algo: str  # key of ALGOS

    @property
    def task(self) -> str:
        return f"{self.env}-{self.kind}"

    @property
    def env_id(self) -> str:
        return ENVS[self.env]["env_id"]


def all_cases(envs: tuple[str, ...] = tuple(ENVS)) -> list[Case]:
    return [Case(e, k, a) for e in envs for k in KINDS for a in ALGOS]


def env_reference(env: str) -> dict[str, Any]:
    """The reference returns of ``env``'s normalised scores and their source, as stored in records and metadata."""
    from polyrl.data.scores import reference

    ref = reference(ENVS[env]["env_id"])
    assert ref is not None, env
    source = ("polyrl-measured (polyrl/data/references.json: " + ref.provenance.get("expert_policy", "")
              + ")") if ref.source == "polyrl" else "D4RL published constants (v2 envs)"
    return {"random": ref.random, "expert": ref.expert, "source": source}


def normalized_score(env: str, ret: float) -> float:
    ref = env_reference(env)
    return 100.0 * (ret - ref["random"]) / (ref["expert"] - ref["random"])


NOTES = {
    "updates_per_s": "gradient updates / wall time of the learning phase (start of the first gradient update to the "
                     "end of the last; batch sampling, preprocessing and the libraries' own logging in between count; "
                     "dataset loading, statistics, PRDC's search-tree build and the final evaluation do not)",
    "normalized_score": f"100 (R - R_random) / (R_expert - R_random) of the mean return of {EVAL_EPISODES} "
                        f"deterministic episodes after training (env copies seeded seed + {EVAL_SEED_OFFSET} + i); "
                        "mean +- std over seeds; 'difference' = polyrl - peer; reference returns and their source in "
                        "reference_returns",
}


# -- the d3rlpy virtualenv ---------------------------------------------------------------------
def probe_d3rlpy(venv: Path) -> dict[str, Any] | None:
    """Versions inside the d3rlpy venv, or None if it is missing or broken."""
    # PRDC arrived in d3rlpy 2.x (PRDCConfig); an older d3rlpy still runs the other three comparisons.
    return probe_venv(venv, "import json, gymnasium, mujoco, d3rlpy, d3rlpy.algos, torch, sklearn; "
                            "gymnasium.make('Hopper-v5').close(); "
                            "print(json.dumps({'d3rlpy': d3rlpy.__version__, 'torch': torch.__version__, "
                            "'gymnasium': gymnasium.__version__, 'mujoco': mujoco.__version__, 'sklearn': sklearn.__version__, "
                            "'prdc': hasattr(d3rlpy.algos, 'PRDCConfig')}))")


# -- datasets ----------------------------------------------------------------------------------
def dataset_path(data_dir: Path, case: Case) -> Path:
    return data_dir / case.task


def make_data(envs: list[str], data_dir: Path, budget: dict[str, int], threads: int, force: bool) -> None:
    """Build ``<env>-{medium,medium-replay,medium-expert}`` under ``data_dir`` from one polyrl SAC run per env.

    The SAC agent learns for ``medium_steps`` env steps; its replay buffer so far
    is medium-replay and ``transitions`` steps of its stochastic policy are
    medium. It then learns on to ``expert_steps``, and ``transitions`` steps of
    that policy are expert (kept as ``<env>-expert``); medium-expert is medium
    followed by expert. The unfinished last episode of each collection is
    marked truncated (a cut bootstraps, like a time limit), so episodes stay
    separate when datasets are joined.
    """
    import numpy as np
    import torch

    import polyrl
    from polyrl.data import Dataset
    from polyrl.data.collect import collect

    torch.set_num_threads(threads)
    for env in envs:
        env_id = ENVS[env]["env_id"]
        outputs = [data_dir / f"{env}-{k}" for k in (*KINDS, "expert")]
        if not force and all((p / "meta.json").exists() for p in outputs):
            print(f"{env}: datasets exist in {data_dir} (--force to rebuild)", flush=True)
            continue
        medium_steps, expert_steps, n = budget["medium_steps"], budget["expert_steps"], budget["transitions"]
        sac_cfg = dict(learning_starts=budget["learning_starts"], buffer_size=expert_steps)
        run_dir = data_dir / "_sac" / env
        shutil.rmtree(run_dir, ignore_errors=True)
        base = {"made_by": "benchmarks/offline.py make-data", "sac": {"algo": "sac", "env_id": env_id,
                "seed": SAC_SEED, "config": sac_cfg, "run_dir": str(run_dir)}, "budget": dict(budget),
                "reference_returns": env_reference(env)}
        print(f"{env}: SAC {env_id} for {medium_steps} env steps (medium policy)", flush=True)
        t0 = time.perf_counter()
        agent = polyrl.make("sac", env=env_id, seed=SAC_SEED, run_dir=run_dir, **sac_cfg)
        agent.learn(medium_steps, progress=False, eval_every=0, eval_episodes=0, tensorboard=False)
        t_medium = time.perf_counter() - t0
        assert agent.trainer is not None
        buf = agent.trainer.source.buffer  # type: ignore[union-attr]
        size = len(buf)
        low, high = np.asarray(agent.spec.action_low), np.asarray(agent.spec.action_high)
        action = buf.action[:size, 0].cpu().numpy()
        action = (low + (action + 1.0) * 0.5 * (high - low)).astype(np.float32)  # [-1, 1] -> the env's space
        replay = Dataset(buf.obs[:size, 0].cpu().numpy(), action, buf.reward[:size, 0].cpu().numpy(),
                         buf.next_obs[:size, 0].cpu().numpy(), buf.terminated[:size, 0].cpu().numpy() > 0.5,
                         buf.truncated[:size, 0].cpu().numpy() > 0.5,
                         meta=base | {"env_id": env_id, "spec": agent.spec.to_json(), "recipe": "medium-replay",
                                      "source": f"SAC replay buffer, env steps 0..{medium_steps}",
                                      "sac_train_s": round(t_medium, 1)})
        _close_cut(replay)
        replay.save(data_dir / f"{env}-medium-replay")
        medium = _collect(collect, agent, env_id, n, MEDIUM_COLLECT_SEED, base | {"recipe": "medium",
                          "sac_steps": medium_steps, "sac_train_s": round(t_medium, 1)})
        medium.save(data_dir / f"{env}-medium")
        print(f"{env}: SAC on to {expert_steps} env steps (expert policy)", flush=True)
        t1 = time.perf_counter()
        agent.learn(expert_steps - medium_steps, progress=False, eval_every=0, eval_episodes=0, tensorboard=False)
        t_expert = t_medium + time.perf_counter() - t1
        expert = _collect(collect, agent, env_id, n, EXPERT_COLLECT_SEED, base | {"recipe": "expert",
                          "sac_steps": expert_steps, "sac_train_s": round(t_expert, 1)})
        expert.save(data_dir / f"{env}-expert")
        agent.close()
        both = Dataset.concatenate([medium, expert], meta=base | {
            "env_id": env_id, "spec": medium.meta["spec"], "recipe": "medium-expert",
            "parts": [medium.meta, expert.meta]})
        both.save(data_dir / f"{env}-medium-expert")
        for p in outputs:
            info = Dataset.load(p).info()
            print(f"  {p.name:26s} {info['transitions']:>8d} transitions {info['episodes']:>5d} episodes  "
                  f"return {info['mean_return']:8.1f} +- {info['std_return']:6.1f}  "
                  f"(score {normalized_score(env, info['mean_return']):5.1f})", flush=True)
        print(f"{env}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def make_data_from_run(envs: list[str], data_dir: Path, source_run: Path | None, transitions: int, threads: int,
                       force: bool) -> None:
    """Build ``<env>-{medium,medium-replay,medium-expert,expert}`` with polyrl's recipes from an existing run's
    checkpoints (``polyrl dataset make --from-run``): expert = the best checkpoint, medium = the first whose return
    reaches a third of the way from random to expert, medium-replay = the run's replay buffer up to it.
    ``source_run=None`` takes the SAC snapshots polyrl ships instead (``polyrl dataset make --shipped``; medium-replay
    re-runs the shipped SAC up to its medium snapshot), so the same datasets can be remade anywhere without a run."""
    import torch

    from polyrl.data.recipes import make_dataset

    torch.set_num_threads(threads)
    origin = "--shipped" if source_run is None else f"--from-run {source_run}"
    for env in envs:
        outputs = {k: data_dir / f"{env}-{k}" for k in (*KINDS, "expert")}
        if not force and all((p / "meta.json").exists() for p in outputs.values()):
            print(f"{env}: datasets exist in {data_dir} (--force to rebuild)", flush=True)
            continue
        base = {"made_by": f"benchmarks/offline.py make-data {origin}", "reference_returns": env_reference(env)}
        t0 = time.perf_counter()
        for kind, out in outputs.items():
            ds = make_dataset(f"{env}-{kind}", transitions, sources=data_dir / "_sources", source_run=source_run,
                              shipped=source_run is None)
            ds.meta.update(base)
            ds.save(out)
            info = ds.info()
            print(f"  {out.name:26s} {info['transitions']:>8d} transitions {info['episodes']:>5d} episodes  "
                  f"return {info['mean_return']:8.1f} +- {info['std_return']:6.1f}  "
                  f"(score {normalized_score(env, info['mean_return']):5.1f}; policy {ds.meta.get('policy')})", flush=True)
        print(f"{env}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


def _collect(collect: Any, agent: Any, env_id: str, n: int, seed: int, provenance: dict[str, Any]) -> Any:
    import torch

    print(f"  collecting {n} transitions ({provenance['recipe']}, stochastic policy, seed {seed})", flush=True)
    # collect() seeds the env and its NumPy draws, but the policy samples its actions from torch's global RNG:
    # seed that too, or the same command gives different datasets.
    torch.manual_seed(seed)
    ds = collect(env_id, n, agent=agent, seed=seed, provenance=provenance | {"torch_seed": seed})
    _close_cut(ds)
    return ds


def _close_cut(ds: Any) -> None:
    """Mark an unfinished final episode truncated (a cut: it bootstraps), recording that in meta."""
    if not (ds.terminated[-1] or ds.truncated[-1]):
        ds.truncated[-1] = True
        ds.meta["last_episode_cut"] = True


def missing_datasets(cases: list[Case], data_dir: Path) -> list[Path]:
    return sorted({dataset_path(data_dir, c) for c in cases if not (dataset_path(data_dir, c) / "meta.json").exists()})


# -- running ---------------------------------------------------------------------------------
def run_one(lib: str, case: Case, seed: int, steps: int, threads: int, data_dir: Path,
            d3rlpy_python: Path) -> dict[str, Any]:
    """One measured run in a fresh interpreter; returns the runner's result line."""
    run_dir = WORK / "runs" / f"offline-{case.algo}-{case.task}-{lib}-s{seed}-{os.getpid()}"
    spec = {"algo": case.algo, "dataset": str(dataset_path(data_dir, case)), "env_id": case.env_id, "seed": seed,
            "threads": threads, "steps": steps, "hp": ALGOS[case.algo], "eval_episodes": EVAL_EPISODES,
            "eval_seed_offset": EVAL_SEED_OFFSET, "run_dir": str(run_dir)}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), PYTHONHASHSEED="0")
    if lib == "polyrl":
        import polyrl

        python, script = sys.executable, "_polyrl_offline_runner.py"
        # The child imports the same polyrl as this process (a worktree on PYTHONPATH, or the installed one).
        env["PYTHONPATH"] = str(Path(polyrl.__file__).resolve().parent.parent)
    else:
        python, script = str(d3rlpy_python), "_d3rlpy_runner.py"
        env.pop("PYTHONPATH", None)
    log = WORK / "logs" / f"offline-{case.algo}-{case.task}-{lib}-s{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    load = BackgroundLoad()
    proc = subprocess.run([python, str(HERE / script), json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=str(HERE), timeout=RUN_TIMEOUT_S)
    background = load.cores()
    log.write_text(f"$ {python} {script} '{json.dumps(spec)}'\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{lib} run {case.algo}/{case.task} seed {seed} failed (exit {proc.returncode}); "
                           f"log: {log}\n{tail}")
    result = json.loads(lines[-1])
    result["background_load"] = background
    result["score"] = normalized_score(case.env, result["eval_return"])
    return result


def budget_text(steps: int) -> str:
    return f"{steps} gradient steps, batch 256"


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def make_records(case: Case, runs: dict[str, list[dict[str, Any]]], seeds: list[int], steps: int, command: str,
                 peer_name: str, date: str, threads: int, dataset_meta: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"task": case.task, "algo": case.algo, "peer_name": peer_name, "repeats": len(seeds), "seeds": seeds,
            "budget": budget_text(steps), "command": command, "date": date, "torch_threads": threads,
            "env_id": case.env_id, "dataset": {k: dataset_meta.get(k) for k in ("recipe", "transitions", "made_by")},
            "max_background_load": max((r.get("background_load") or 0.0 for lib in runs for r in runs[lib]),
                                       default=0.0)}
    ups = {lib: [r["updates_per_s"] for r in runs[lib]] for lib in runs}
    ours, peer = statistics.median(ups["polyrl"]), statistics.median(ups["d3rlpy"])
    call = {lib: statistics.median([r["learn_call_updates_per_s"] for r in runs[lib]]) for lib in runs}
    speed = dict(base, metric="updates_per_s", higher_is_better=True, polyrl=_round(ours, 1), peer=_round(peer, 1),
                 ratio=_round(ours / peer if peer > 0 else None, 2), aggregate="median", notes=NOTES["updates_per_s"],
                 runs={"polyrl": [_round(v, 1) for v in ups["polyrl"]], "peer": [_round(v, 1) for v in ups["d3rlpy"]]},
                 learn_call_updates_per_s={"polyrl": _round(call["polyrl"], 1), "peer": _round(call["d3rlpy"], 1)})
    search = [r["search_share"] for r in runs["polyrl"] if r.get("search_share") is not None]
    if search:
        speed["polyrl_search_share"] = _round(statistics.median(search), 3)
    scores = {lib: [r["score"] for r in runs[lib]] for lib in runs}
    (m_ours, s_ours), (m_peer, s_peer) = _stats(scores["polyrl"]), _stats(scores["d3rlpy"])
    assert m_ours is not None and m_peer is not None and s_ours is not None and s_peer is not None
    n = len(seeds)
    score = dict(base, metric="normalized_score", higher_is_better=True, polyrl=_round(m_ours, 1),
                 peer=_round(m_peer, 1), ratio=_round(m_ours / m_peer if m_ours > 0 and m_peer > 0 else None, 2),
                 difference=_round(m_ours - m_peer, 1), aggregate="mean",
                 polyrl_std=_round(s_ours, 1), peer_std=_round(s_peer, 1),
                 # standard error of the difference of the two means (0 with one seed: no noise estimate)
                 difference_se=_round(math.sqrt(s_ours**2 / n + s_peer**2 / n), 1),
                 reference_returns=env_reference(case.env),
                 notes=NOTES["normalized_score"],
                 runs={"polyrl": [_round(v, 1) for v in scores["polyrl"]], "peer": [_round(v, 1) for v in scores["d3rlpy"]]},
                 returns={"polyrl": [_round(r["eval_return"], 1) for r in runs["polyrl"]],
                          "peer": [_round(r["eval_return"], 1) for r in runs["d3rlpy"]]})
    return [speed, score]


def estimate_s(case: Case, steps: int) -> float:
    """Rough wall seconds of one seed of a case, both libraries."""
    return sum(EST_OVERHEAD_S[lib] + steps / EST_RATE[lib][case.algo] for lib in ("polyrl", "d3rlpy"))


def summarize(lib: str, res: dict[str, Any]) -> str:
    return (f"{lib:6s} {res['updates_per_s']:7.1f} updates/s  return {res['eval_return']:8.1f}  "
            f"score {res['score']:6.1f}  (learn {res['learn_phase_s']:.1f} s, set-up {res['setup_s']:.1f} s, "
            f"eval {res['eval_s']:.1f} s)")


# -- results file and BENCHMARKS.md ------------------------------------------------------------
def _order(r: dict[str, Any]) -> tuple[int, int, int, int]:
    env, _, kind = r["task"].partition("-")
    metrics = ("updates_per_s", "normalized_score")
    return (_env_rank(env), KINDS.index(kind) if kind in KINDS else 99,
            list(ALGOS).index(r["algo"]) if r["algo"] in ALGOS else 99,
            metrics.index(r["metric"]) if r["metric"] in metrics else 99)


def merge_results(path: Path, new: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any]:
    data = dict(header, records=merged_records(path, new, _order)[1])
    write_results(path, data)
    return data


def render_markdown(data: dict[str, Any], source: Path) -> str:
    m = data.get("machine", {})
    recs = data["records"]
    peers = sorted({r["peer_name"] for r in recs})
    dates = sorted({r.get("date", data.get("date", "")) for r in recs})
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in recs:
        rows.setdefault((r["task"], r["algo"]), {})[r["metric"]] = r
    src = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    lines = [
        START,
        "## Offline RL: polyrl vs d3rlpy",
        "",
        f"Generated by `python benchmarks/offline.py` from `{src}` (do not edit by hand).",
        f"Date: {', '.join(dates)}. Machine: {m.get('cpus')} CPUs ({m.get('cpu_model', '?')}), torch {m.get('torch')} "
        f"with {m.get('torch_threads')} thread(s), Python {m.get('python')}. Peer: {', '.join(peers)}.",
        "",
        "Each row: one algorithm on one dataset, same dataset files, budget, hyperparameters and seeds for both "
        "libraries; runs alternate polyrl, d3rlpy, each a fresh process. Updates/s: median over seeds, ratio = "
        "polyrl / d3rlpy (> 1: polyrl faster). Score: normalised score, mean +- std over seeds; "
        "difference = polyrl - d3rlpy, +- its standard error.",
        "",
    ]
    refs: dict[str, dict[str, Any]] = {}
    for r in recs:
        if r.get("reference_returns"):
            refs.setdefault(r["env_id"], r["reference_returns"])
    refs_text = "; ".join(f"{env_id} {ref['random']:.2f} / {ref['expert']:.1f} ({ref.get('source', '?')})"
                          for env_id, ref in sorted(refs.items()))
    busy = [r for r in recs if (r.get("max_background_load") or 0.0) > BUSY_WARNING]
    if busy:
        lines += [f"**Warning**: other processes competed for the CPU during {len(busy)} record(s) "
                  f"(up to {max(r['max_background_load'] for r in busy):.2f} cores); their timings are skewed.", ""]
    lines += [
        "| Dataset | Algo | polyrl updates/s | d3rlpy updates/s | Ratio | polyrl score | d3rlpy score | Difference "
        "| Seeds | Budget |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for (task, algo), metrics in sorted(rows.items(), key=lambda kv: _order(next(iter(kv[1].values())))):
        sp, sc = metrics.get("updates_per_s"), metrics.get("normalized_score")
        any_rec = sp or sc
        assert any_rec is not None
        speed = ((_fmt(sp["polyrl"]), _fmt(sp["peer"]), f"{sp['ratio']:.2f}x" if sp.get("ratio") is not None else "n/a")
                 if sp else ("n/a",) * 3)
        if sc:
            score = (f"{sc['polyrl']:.1f} +- {sc['polyrl_std']:.1f}", f"{sc['peer']:.1f} +- {sc['peer_std']:.1f}",
                     f"{sc['difference']:+.1f} +- {sc['difference_se']:.1f}")
        else:
            score = ("n/a",) * 3
        lines.append(f"| {task} | {algo.upper()} | {' | '.join(speed)} | {' | '.join(score)} | {any_rec['repeats']} "
                     f"| {any_rec['budget']} |")
    lines += [
        "",
        "How it is measured (identical for both libraries):",
        "",
        "- **Datasets** are polyrl's own, not D4RL's (`python benchmarks/offline.py make-data`): *medium* = "
        "transitions of a polyrl SAC policy part-way through training, *expert* = its best policy, *medium-replay* = "
        "its replay buffer up to the medium point, *medium-expert* = medium followed by expert. Here: "
        + _datasets_text(recs) + ". Budgets and provenance are in each dataset's `meta.json`. d3rlpy reads the same "
        "`.npy` files into an `MDPDataset` (episodes rebuilt from the observation sequence; an episode cut without a "
        "flag is marked as a timeout; d3rlpy drops the last transition of each timed-out episode, whose next "
        "observation it does not store).",
        "- **Same everything**: hyperparameters are polyrl's defaults, written once in `ALGOS` in "
        "`benchmarks/offline.py` and mapped onto both libraries: 256x256 ReLU networks, batch 256, observations "
        "standardised with the dataset's statistics; TD3+BC alpha 2.5; IQL expectile 0.7, beta 3 (d3rlpy's "
        "`weight_temp`), rewards scaled by 1000 / (max - min episode return), cosine-decayed actor learning rate; "
        "CQL(H) with fixed weight 5 (d3rlpy: `alpha_learning_rate=0`), 10 action samples, deterministic backup; "
        "PRDC alpha 2.5, beta 2 (d3rlpy's nearest-neighbour search limited to the same thread count). Same torch "
        "release and thread count; d3rlpy runs in its own virtualenv.",
        "- **PRDC's search**: polyrl queries scipy's `cKDTree` over [beta s, a], d3rlpy scikit-learn's "
        "`NearestNeighbors(algorithm=\"auto\")`, which searches by brute force above 15 dimensions: on HalfCheetah "
        "([beta s, a] has 23) one d3rlpy PRDC run takes ~15 min (5000 updates), so " + _prdc_text(rows) + ".",
        "- **updates/s**: over the learning phase, from the start of the first gradient update to the end of the "
        "last (batch sampling, preprocessing and each library's logging in between count; loading the dataset, "
        "its statistics, PRDC's search-tree build and the final evaluation do not). The record also keeps the rate "
        "over the whole `learn`/`fit` call (`learn_call_updates_per_s`).",
        f"- **score**: normalised score `100 (R - R_random) / (R_expert - R_random)` of the mean return of "
        f"{EVAL_EPISODES} deterministic episodes after training, in env copies seeded `seed + {EVAL_SEED_OFFSET} + i`. "
        "R_random and R_expert are the reference returns `polyrl.data.reference` picks for the env id, stored in "
        "each record: " + refs_text + ". The budgets "
        "are far below the papers' 1M gradient steps, so scores are early-training scores.",
        END,
    ]
    return "\n".join(lines) + "\n"


def _datasets_text(recs: list[dict[str, Any]]) -> str:
    """How each env's datasets were made, from the records' dataset provenance."""
    made: dict[str, set[str]] = {}
    for r in recs:
        made.setdefault(r["task"].split("-")[0], set()).add((r.get("dataset") or {}).get("made_by") or "?")
    return "; ".join(f"{env} by `{'`, `'.join(sorted(how))}`" for env, how in sorted(made.items(), key=lambda kv: _env_rank(kv[0])))


def _env_rank(env: str) -> int:
    return list(ENVS).index(env) if env in ENVS else 99


def _prdc_text(rows: dict[tuple[str, str], dict[str, dict[str, Any]]]) -> str:
    """Which datasets PRDC ran on, and the share of polyrl's update time its search took on each."""
    prdc = [(task, m["updates_per_s"]) for (task, algo), m in rows.items() if algo == "prdc" and "updates_per_s" in m]
    if not prdc:
        return "PRDC did not run"
    prdc.sort(key=lambda kv: _order(kv[1]))
    shares = ", ".join(f"{task} {100 * r['polyrl_search_share']:.0f}%" for task, r in prdc
                       if r.get("polyrl_search_share") is not None)
    ran = ", ".join(f"{task} ({r['repeats']} seed{'s' if r['repeats'] != 1 else ''})" for task, r in prdc)
    return (f"PRDC ran on {ran}; the search took this share of polyrl's update time: "
            + (shares or "not recorded"))


def write_markdown(path: Path, block: str) -> None:
    write_section(path, START, END, block)


def _split(values: list[str] | None) -> set[str] | None:
    return None if not values else {v.strip().lower() for item in values for v in item.split(",") if v.strip()}


def parse_make_data_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="offline.py make-data", description=make_data.__doc__.split("\n\n")[0] if make_data.__doc__ else None)
    p.add_argument("--env", action="append", help=f"env(s): {', '.join(ENVS)} (default: {', '.join(DEFAULT_ENVS)})")
    p.add_argument("--data-dir", type=Path, default=None, help=f"where the datasets go (default {DATA_DIR.relative_to(ROOT)})")
    p.add_argument("--expert-steps", type=int, default=None, help=f"SAC env steps of the expert policy (default {MAKE_DATA['expert_steps']})")
    p.add_argument("--medium-steps", type=int, default=None, help=f"SAC env steps of the medium policy (default {MAKE_DATA['medium_steps']})")
    p.add_argument("--transitions", type=int, default=None, help=f"transitions collected per policy (default {MAKE_DATA['transitions']})")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quick", action="store_true", help=f"tiny datasets for --quick runs (in {QUICK_DATA_DIR.relative_to(ROOT)})")
    p.add_argument("--force", action="store_true", help="rebuild datasets that exist")
    p.add_argument("--from-run", type=Path, default=None, metavar="RUN_DIR",
                   help="take the policies from this (single-env SAC) run's checkpoints with polyrl's recipes instead of training SAC")
    p.add_argument("--shipped", action="store_true",
                   help="take the policies from the SAC snapshots polyrl ships (Hopper-v5), medium-replay by re-running "
                   "that SAC to its medium snapshot (about 12 min on one core); the same files on any machine that computes alike")
    return p.parse_args(argv)


def main_make_data(argv: list[str]) -> None:
    args = parse_make_data_args(argv)
    budget = dict(MAKE_DATA_QUICK if args.quick else MAKE_DATA)
    for key in ("expert_steps", "medium_steps", "transitions"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    if not budget["learning_starts"] < budget["medium_steps"] < budget["expert_steps"]:
        raise SystemExit("need learning_starts (1000) < --medium-steps < --expert-steps")
    envs = sorted(_split(args.env) or set(DEFAULT_ENVS), key=list(ENVS).index)
    unknown = set(envs) - set(ENVS)
    if unknown:
        raise SystemExit(f"unknown env(s) {sorted(unknown)}; known: {', '.join(ENVS)}")
    data_dir = (args.data_dir or (QUICK_DATA_DIR if args.quick else DATA_DIR)).resolve()
    if args.from_run is not None or args.shipped:
        if args.from_run is not None and args.shipped:
            raise SystemExit("pass either --from-run or --shipped, not both")
        if len(envs) != 1:
            raise SystemExit("--from-run/--shipped make the datasets of one env: pass --env with its env")
        origin = "polyrl's shipped SAC snapshots" if args.shipped else args.from_run
        print(f"make-data: {envs[0]} into {data_dir} from {origin} ({budget['transitions']} transitions)", flush=True)
        make_data_from_run(envs, data_dir, args.from_run, budget["transitions"], args.threads, args.force)
        return
    print(f"make-data: {', '.join(envs)} into {data_dir} ({json.dumps(budget)})", flush=True)
    make_data(envs, data_dir, budget, args.threads, args.force)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                epilog="Datasets: python benchmarks/offline.py make-data --help",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", action="append", help=f"env(s): {', '.join(ENVS)} (default: {', '.join(DEFAULT_ENVS)})")
    p.add_argument("--task", action="append", help="dataset(s), e.g. hopper-medium (repeat or comma-separate; "
                                                   "overrides --env)")
    p.add_argument("--algo", action="append", help=f"algorithm(s): {', '.join(ALGOS)} (default: all)")
    p.add_argument("--repeats", type=int, default=None, help="seeds per case (default 3; 1 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="gradient steps per run for every algorithm (default "
                   f"{_steps_text(STEPS)}; with --quick {_steps_text(QUICK_STEPS)})")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both libraries (default 1)")
    p.add_argument("--data-dir", type=Path, default=None, help=f"directory holding <task>/ datasets "
                   f"(default {DATA_DIR.relative_to(ROOT)}; {QUICK_DATA_DIR.relative_to(ROOT)} with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run with tiny budgets (builds tiny datasets if missing); "
                                                        "writes under benchmarks/.work/")
    p.add_argument("--render", action="store_true", help="only regenerate the markdown table from the results JSON")
    p.add_argument("--setup", action="store_true", help="only create/check the d3rlpy virtualenv")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--d3rlpy-venv", type=Path, default=D3RLPY_VENV,
                   help=f"d3rlpy virtualenv (default {D3RLPY_VENV.relative_to(ROOT)})")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/offline.json)")
    p.add_argument("--markdown", type=Path, default=None, help="markdown file to update (default BENCHMARKS.md)")
    return p.parse_args(argv)


def select_cases(args: argparse.Namespace) -> list[Case]:
    tasks, algos = _split(args.task), _split(args.algo)
    envs = _split(args.env) or set(DEFAULT_ENVS)
    unknown = (envs - set(ENVS)) | ((algos or set()) - set(ALGOS))
    if unknown:
        raise SystemExit(f"unknown env/algo {sorted(unknown)}; envs: {', '.join(ENVS)}; algos: {', '.join(ALGOS)}")
    pool = all_cases() if tasks else all_cases(tuple(e for e in ENVS if e in envs))
    chosen = [c for c in pool if (tasks is None or c.task in tasks) and (algos is None or c.algo in algos)]
    if not chosen:
        known = ", ".join(sorted({c.task for c in all_cases()}))
        raise SystemExit(f"no case matches --task {sorted(tasks or [])} --algo {sorted(algos or [])}; datasets: {known}")
    return chosen


def _steps_text(steps: dict[str, int]) -> str:
    return ", ".join(f"{a} {n}" for a, n in steps.items())


def steps_for(case: Case, args: argparse.Namespace) -> int:
    return args.steps or (QUICK_STEPS if args.quick else STEPS)[case.algo]


def command_for(case: Case, args: argparse.Namespace, repeats: int, steps: int) -> str:
    cmd = f"python benchmarks/offline.py --task {case.task} --algo {case.algo}"
    if repeats != 3:
        cmd += f" --repeats {repeats}"
    if args.steps:
        cmd += f" --steps {steps}"
    if args.threads != 1:
        cmd += f" --threads {args.threads}"
    if args.data_dir is not None:
        data_dir = args.data_dir.resolve()
        cmd += f" --data-dir {data_dir.relative_to(ROOT) if data_dir.is_relative_to(ROOT) else data_dir}"
    return cmd + (" --quick" if args.quick else "")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["make-data"]:
        main_make_data(argv[1:])
        return
    args = parse_args(argv)
    out = args.out or (WORK / "offline-quick.json" if args.quick else RESULTS)
    md = args.markdown or (WORK / "BENCHMARKS-offline-quick.md" if args.quick else MARKDOWN)
    if args.list:
        for c in all_cases():
            print(f"{c.task:26s} {c.algo:6s} {c.env_id:15s} {steps_for(c, args)} gradient steps"
                  f"{'' if c.env in DEFAULT_ENVS else '  (--env ' + c.env + ')'}")
        return
    if args.render:
        write_markdown(md, render_markdown(json.loads(out.read_text()), out))
        print(f"wrote {md}")
        return
    try:
        import polyrl
    except ImportError:
        raise SystemExit("polyrl is not importable here: run this with the interpreter polyrl is installed in") from None

    versions = ensure_venv(args.d3rlpy_venv, "d3rlpy", D3RLPY_PACKAGES, probe_d3rlpy)
    peer_name = f"d3rlpy {versions['d3rlpy']}"
    print(f"d3rlpy venv: {args.d3rlpy_venv} ({json.dumps(versions)})", flush=True)
    if args.setup:
        return

    cases = select_cases(args)
    if not versions.get("prdc", False) and any(c.algo == "prdc" for c in cases):
        print(f"WARNING: d3rlpy {versions['d3rlpy']} has no PRDC (d3rlpy.algos.PRDCConfig); skipping the PRDC "
              "comparison", flush=True)
        cases = [c for c in cases if c.algo != "prdc"]
        if not cases:
            raise SystemExit("nothing left to run")
    data_dir = (args.data_dir or (QUICK_DATA_DIR if args.quick else DATA_DIR)).resolve()
    missing = missing_datasets(cases, data_dir)
    if missing and args.quick:
        envs = sorted({c.env for c in cases if dataset_path(data_dir, c) in missing}, key=list(ENVS).index)
        make_data(envs, data_dir, MAKE_DATA_QUICK, args.threads, force=False)
        missing = missing_datasets(cases, data_dir)
    if missing:
        envs = ",".join(sorted({p.name.split("-")[0] for p in missing}))
        raise SystemExit(f"missing dataset(s): {', '.join(str(p) for p in missing)}\nbuild them first: python "
                         f"benchmarks/offline.py make-data --env {envs}"
                         + (f" --data-dir {data_dir}" if args.data_dir else ""))

    repeats = args.repeats or (1 if args.quick else 3)
    seeds = list(range(repeats))
    date = datetime.date.today().isoformat()
    header = {"benchmark": "offline", "polyrl_version": polyrl.__version__, "machine": machine_info(args.threads),
              "date": date, "peer_versions": versions}
    eta = sum(repeats * estimate_s(c, steps_for(c, args)) for c in cases)
    print(f"{len(cases)} case(s) x {repeats} seed(s) x 2 libraries, {args.threads} torch thread(s), datasets in "
          f"{data_dir}; rough estimate {eta / 60:.0f} min", flush=True)
    started = time.perf_counter()
    estimated_done = 0.0
    for i, case in enumerate(cases):
        steps = steps_for(case, args)
        runs: dict[str, list[dict[str, Any]]] = {"polyrl": [], "d3rlpy": []}
        meta = json.loads((dataset_path(data_dir, case) / "meta.json").read_text())
        print(f"\n== {case.algo.upper()} {case.task} ({meta.get('transitions')} transitions): {budget_text(steps)}",
              flush=True)
        for seed in seeds:
            for lib in ("polyrl", "d3rlpy"):  # alternate: polyrl, d3rlpy, polyrl, d3rlpy, ...
                t = time.perf_counter()
                res = run_one(lib, case, seed, steps, args.threads, data_dir, venv_python(args.d3rlpy_venv))
                runs[lib].append(res)
                print(f"  seed {seed} {summarize(lib, res)}  [{time.perf_counter() - t:.0f} s wall]", flush=True)
                if (res["background_load"] or 0.0) > BUSY_WARNING:
                    print(f"  WARNING: other processes used {res['background_load']:.2f} cores during this run; "
                          "its timing is skewed (run on an idle machine)", flush=True)
        records = make_records(case, runs, seeds, steps, command_for(case, args, repeats, steps), peer_name, date,
                               args.threads, meta)
        sp, sc = records
        print(f"  -> updates/s: polyrl {_fmt(sp['polyrl'])}  d3rlpy {_fmt(sp['peer'])}  ratio {sp['ratio']}x;  "
              f"score: polyrl {sc['polyrl']} +- {sc['polyrl_std']}  d3rlpy {sc['peer']} +- {sc['peer_std']}  "
              f"diff {sc['difference']:+}", flush=True)
        with locked(out):  # written after every case: a partial run keeps what it measured
            data = merge_results(out, records, header)
            write_markdown(md, render_markdown(data, out))
        estimated_done += repeats * estimate_s(case, steps)
        if i + 1 < len(cases):  # the estimate, rescaled by how fast this machine has been so far
            elapsed = time.perf_counter() - started
            left = (eta - estimated_done) * elapsed / estimated_done
            print(f"  [{elapsed / 60:.1f} min so far, about {left / 60:.0f} min to go]", flush=True)
    print(f"\nwrote {out} and {md} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
