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
import functools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _cases import OFFLINE_HP as ALGOS  # the algorithms' hyperparameters, said once for both libraries
from _datasets import (
    DATA_DIR,
    ENVS,
    KINDS,
    MAKE_DATA,
    MAKE_DATA_QUICK,
    QUICK_DATA_DIR,
    env_reference,
    make_data,
    normalized_score,
)
from _harness import (
    BUSY_WARNING,
    ROOT,
    WORK,
    Harness,
    Peer,
    add_flags,
    alternate,
    child_env,
    csv_set,
    fmt_number,
    locked,
    ratio,
    round_or_none,
    run_measured,
    shown_path,
    today,
    venv_python,
)

RUN_TIMEOUT_S = 3600

DEFAULT_ENVS = ("hopper",)

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


NOTES = {
    "updates_per_s": "gradient updates / wall time of the learning phase (start of the first gradient update to the "
                     "end of the last; batch sampling, preprocessing and the libraries' own logging in between count; "
                     "dataset loading, statistics, PRDC's search-tree build and the final evaluation do not)",
    "normalized_score": f"100 (R - R_random) / (R_expert - R_random) of the mean return of {EVAL_EPISODES} "
                        f"deterministic episodes after training (env copies seeded seed + {EVAL_SEED_OFFSET} + i); "
                        "mean +- std over seeds; 'difference' = polyrl - peer; reference returns and their source in "
                        "reference_returns",
}


# -- d3rlpy and its virtualenv ----------------------------------------------------------------
# gymnasium's MuJoCo envs also need imageio (its [mujoco] extra), which plain "gymnasium mujoco" lacks.
# PRDC arrived in d3rlpy 2.x (PRDCConfig); an older d3rlpy still runs the other three comparisons.
D3RLPY = Peer("d3rlpy", "d3rlpy", "d3rlpy", ("d3rlpy", "gymnasium[mujoco]", "mujoco"),
              "import json, gymnasium, mujoco, d3rlpy, d3rlpy.algos, torch, sklearn; "
              "gymnasium.make('Hopper-v5').close(); "
              "print(json.dumps({'d3rlpy': d3rlpy.__version__, 'torch': torch.__version__, "
              "'gymnasium': gymnasium.__version__, 'mujoco': mujoco.__version__, 'sklearn': sklearn.__version__, "
              "'prdc': hasattr(d3rlpy.algos, 'PRDCConfig')}))")
HARNESS = Harness("offline", peer=D3RLPY)


# -- datasets ----------------------------------------------------------------------------------
def dataset_path(data_dir: Path, case: Case) -> Path:
    return data_dir / case.task


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
    if lib == "polyrl":
        import polyrl

        python, script = sys.executable, "_polyrl_offline_runner.py"
        # The child imports the same polyrl as this process (a worktree on PYTHONPATH, or the installed one).
        env = child_env(threads, Path(polyrl.__file__).resolve().parent.parent)
    else:
        python, script = str(d3rlpy_python), "_d3rlpy_runner.py"
        env = child_env(threads)
    log = WORK / "logs" / f"offline-{case.algo}-{case.task}-{lib}-s{seed}.log"
    result = run_measured(python, script, spec, env, log, f"{lib} run {case.algo}/{case.task} seed {seed}", RUN_TIMEOUT_S)
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
    speed = dict(base, metric="updates_per_s", higher_is_better=True, polyrl=round_or_none(ours, 1), peer=round_or_none(peer, 1),
                 ratio=round_or_none(ours / peer if peer > 0 else None, 2), aggregate="median", notes=NOTES["updates_per_s"],
                 runs={"polyrl": [round_or_none(v, 1) for v in ups["polyrl"]], "peer": [round_or_none(v, 1) for v in ups["d3rlpy"]]},
                 learn_call_updates_per_s={"polyrl": round_or_none(call["polyrl"], 1), "peer": round_or_none(call["d3rlpy"], 1)})
    search = [r["search_share"] for r in runs["polyrl"] if r.get("search_share") is not None]
    if search:
        speed["polyrl_search_share"] = round_or_none(statistics.median(search), 3)
    scores = {lib: [r["score"] for r in runs[lib]] for lib in runs}
    (m_ours, s_ours), (m_peer, s_peer) = _stats(scores["polyrl"]), _stats(scores["d3rlpy"])
    assert m_ours is not None and m_peer is not None and s_ours is not None and s_peer is not None
    n = len(seeds)
    score = dict(base, metric="normalized_score", higher_is_better=True, polyrl=round_or_none(m_ours, 1),
                 peer=round_or_none(m_peer, 1), ratio=round_or_none(ratio(m_ours, m_peer), 2),
                 difference=round_or_none(m_ours - m_peer, 1), aggregate="mean",
                 polyrl_std=round_or_none(s_ours, 1), peer_std=round_or_none(s_peer, 1),
                 # standard error of the difference of the two means (0 with one seed: no noise estimate)
                 difference_se=round_or_none(math.sqrt(s_ours**2 / n + s_peer**2 / n), 1),
                 reference_returns=env_reference(case.env),
                 notes=NOTES["normalized_score"],
                 runs={"polyrl": [round_or_none(v, 1) for v in scores["polyrl"]], "peer": [round_or_none(v, 1) for v in scores["d3rlpy"]]},
                 returns={"polyrl": [round_or_none(r["eval_return"], 1) for r in runs["polyrl"]],
                          "peer": [round_or_none(r["eval_return"], 1) for r in runs["d3rlpy"]]})
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


def render_markdown(data: dict[str, Any], source: Path) -> str:
    m = data.get("machine", {})
    recs = data["records"]
    peers = sorted({r["peer_name"] for r in recs})
    dates = sorted({r.get("date", data.get("date", "")) for r in recs})
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in recs:
        rows.setdefault((r["task"], r["algo"]), {})[r["metric"]] = r
    src = shown_path(source)
    lines = [
        HARNESS.start,
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
        speed = ((fmt_number(sp["polyrl"]), fmt_number(sp["peer"]), f"{sp['ratio']:.2f}x" if sp.get("ratio") is not None else "n/a")
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
        HARNESS.end,
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
    envs = sorted(csv_set(args.env) or set(DEFAULT_ENVS), key=list(ENVS).index)
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
    add_flags(p, HARNESS, "repeats")
    p.add_argument("--steps", type=int, default=None, help="gradient steps per run for every algorithm (default "
                   f"{_steps_text(STEPS)}; with --quick {_steps_text(QUICK_STEPS)})")
    add_flags(p, HARNESS, "threads")
    p.add_argument("--data-dir", type=Path, default=None, help=f"directory holding <task>/ datasets "
                   f"(default {DATA_DIR.relative_to(ROOT)}; {QUICK_DATA_DIR.relative_to(ROOT)} with --quick)")
    add_flags(p, HARNESS, "quick", "render", "setup", "list", "venv", "out", "markdown",
              quick="smoke run with tiny budgets (builds tiny datasets if missing); writes under benchmarks/.work/",
              render="only regenerate the markdown table from the results JSON")
    return p.parse_args(argv)


def select_cases(args: argparse.Namespace) -> list[Case]:
    tasks, algos = csv_set(args.task), csv_set(args.algo)
    envs = csv_set(args.env) or set(DEFAULT_ENVS)
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
        cmd += f" --data-dir {shown_path(data_dir)}"
    return cmd + (" --quick" if args.quick else "")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["make-data"]:
        main_make_data(argv[1:])
        return
    args = parse_args(argv)
    out, md = HARNESS.outputs(args)
    if args.list:
        for c in all_cases():
            print(f"{c.task:26s} {c.algo:6s} {c.env_id:15s} {steps_for(c, args)} gradient steps"
                  f"{'' if c.env in DEFAULT_ENVS else '  (--env ' + c.env + ')'}")
        return
    if args.render:
        HARNESS.render_stored(lambda data: render_markdown(data, out), out, md, announce=True)
        return
    try:
        import polyrl
    except ImportError:
        raise SystemExit("polyrl is not importable here: run this with the interpreter polyrl is installed in") from None

    versions = D3RLPY.ensure(args)
    peer_name = f"d3rlpy {versions['d3rlpy']}"
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
    date = today()
    header = HARNESS.header(polyrl.__version__, args.threads, date, peer_versions=versions)
    eta = sum(repeats * estimate_s(c, steps_for(c, args)) for c in cases)
    print(f"{len(cases)} case(s) x {repeats} seed(s) x 2 libraries, {args.threads} torch thread(s), datasets in "
          f"{data_dir}; rough estimate {eta / 60:.0f} min", flush=True)
    started = time.perf_counter()
    estimated_done = 0.0
    for i, case in enumerate(cases):
        steps = steps_for(case, args)
        meta = json.loads((dataset_path(data_dir, case) / "meta.json").read_text())
        print(f"\n== {case.algo.upper()} {case.task} ({meta.get('transitions')} transitions): {budget_text(steps)}",
              flush=True)
        run = functools.partial(run_one, case=case, steps=steps, threads=args.threads, data_dir=data_dir,
                                d3rlpy_python=venv_python(D3RLPY.venv_arg(args)))
        runs = alternate(seeds, ("polyrl", "d3rlpy"), run, summarize)
        records = make_records(case, runs, seeds, steps, command_for(case, args, repeats, steps), peer_name, date,
                               args.threads, meta)
        sp, sc = records
        print(f"  -> updates/s: polyrl {fmt_number(sp['polyrl'])}  d3rlpy {fmt_number(sp['peer'])}  ratio {sp['ratio']}x;  "
              f"score: polyrl {sc['polyrl']} +- {sc['polyrl_std']}  d3rlpy {sc['peer']} +- {sc['peer_std']}  "
              f"diff {sc['difference']:+}", flush=True)
        with locked(out):  # written after every case: a partial run keeps what it measured
            data = HARNESS.merge(out, records, header, _order)
            HARNESS.write_markdown(md, render_markdown(data, out))
        estimated_done += repeats * estimate_s(case, steps)
        if i + 1 < len(cases):  # the estimate, rescaled by how fast this machine has been so far
            elapsed = time.perf_counter() - started
            left = (eta - estimated_done) * elapsed / estimated_done
            print(f"  [{elapsed / 60:.1f} min so far, about {left / 60:.0f} min to go]", flush=True)
    print(f"\nwrote {out} and {md} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
