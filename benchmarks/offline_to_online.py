"""Offline-to-online RL: Uni-O4 vs IQL -> online vs TD3+BC -> online vs PPO from scratch, on polyrl's Hopper datasets.

    python benchmarks/offline_to_online.py --jobs 2          # full run: 2 datasets x 4 methods x 2 seeds (~65 min, 2 idle cores)
    python benchmarks/offline_to_online.py --quick --jobs 2  # smoke run, a few minutes; writes under benchmarks/.work/
    python benchmarks/offline_to_online.py --task hopper-medium --method unio4,iql
    python benchmarks/offline_to_online.py --list            # the runs, budgets and a rough time estimate
    python benchmarks/offline_to_online.py --render          # only regenerate BENCHMARKS.md from the JSON

Every offline method learns ``OFFLINE_UPDATES`` gradient updates from a dataset
made by ``python benchmarks/offline.py make-data`` (the same files as the
offline benchmark), is handed over to the environment with
``Agent.start_online()`` and learns ``ONLINE_STEPS`` env steps: Uni-O4 with
PPO rollouts, IQL and TD3+BC from a replay buffer mixed 50/50 with the dataset.
PPO learns the same number of env steps from scratch (the reference for "no
dataset"). Every method uses polyrl's defaults except where ``METHODS`` says.

Each run is a fresh subprocess (``_o2o_runner.py``, one torch thread) writing
its own result file under ``benchmarks/.work/o2o/<full|quick>/<run>/``, next to
its log and run directory (``metrics.jsonl``). A rerun skips runs whose result
exists for the same spec, so an interrupted benchmark continues where it
stopped (at run granularity). ``--jobs 2`` runs two subprocesses at once.

Results merge into ``benchmarks/results/offline_to_online.json`` and the section
between ``<!-- offline_to_online:start -->`` and ``<!-- offline_to_online:end -->``
in ``BENCHMARKS.md`` is regenerated from it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The dataset machinery (recipes, locations, reference returns) is the offline benchmark's.
from _datasets import DATA_DIR, ENVS, MAKE_DATA_QUICK, QUICK_DATA_DIR, env_reference, make_data
from _harness import (
    HERE,
    ROOT,
    WORK,
    Harness,
    add_flags,
    cached,
    child_env,
    exit_if_failed,
    median_or_none,
    merged_records,
    plan_line,
    reuse_finished,
    round_or_none,
    run_failed,
    run_jobs,
    run_to_log,
    shown_path,
    split_csv,
    today,
    write_results,
)

HARNESS = Harness("offline_to_online")
O2O_WORK = WORK / "o2o"
RUNNER = HERE / "_o2o_runner.py"
RUN_TIMEOUT_S = 3 * 3600

# -- cases and budgets, said once ----------------------------------------------------------------
ENV = "hopper"
DATASETS = ("hopper-medium", "hopper-medium-replay")


@dataclass(frozen=True)
class Budget:
    seeds: int
    offline_updates: int  # gradient updates from the dataset (offline methods)
    online_steps: int  # env steps after the hand-off (PPO: from scratch)
    offline_eval_every: int  # gradient updates between offline evaluations
    online_eval_every: int  # env steps between online evaluations
    eval_episodes: int


# Full run: sized for ~60-75 min wall-clock with --jobs 2 on 2 cores (see README). Online evaluations every 2000
# env steps, not 5000: an evaluation costs 1-3 s, and 2000 puts Uni-O4's first online evaluation right after its
# first PPO update (2048-step rollouts) and IQL/TD3+BC's after their first 1000 updates (1000-step warm-up).
FULL = Budget(seeds=2, offline_updates=20_000, online_steps=30_000, offline_eval_every=5_000, online_eval_every=2_000,
              eval_episodes=10)
QUICK = Budget(seeds=1, offline_updates=200, online_steps=3_000, offline_eval_every=100, online_eval_every=1_000,
               eval_episodes=3)

# Config fields passed to polyrl.make; everything else is the algorithm's default. Uni-O4: polyrl's defaults
# (4 members, IQL-style critics, V re-fit on Monte-Carlo returns before going online, 5% of the offline budget
# behaviour PPO, "ope_eval" selection: the best of the 3 top-OPE members after 5 real episodes each, as the authors
# do, or of the BC policies they started from; critics, online V and share are spelled out so that results cached
# under other defaults do not count) except batch 256 instead of 512: it halves the cost of an update (measured ~46
# vs ~25 updates/s on one loaded core), which the CPU budget needs, and gives every offline method the same 256
# transitions per update. "unio4-sarsa" is Uni-O4 with the SARSA-style critics and the offline V online, polyrl's
# defaults before 2026-12-07 (docs/algorithms/unio4.md note 1b).
METHODS: dict[str, dict[str, Any]] = {
    "unio4": {"algo": "unio4", "label": "Uni-O4", "offline": True,
              "config": {"batch_size": 256, "critic": "iql", "online_critic": "mc", "bppo_fraction": 0.05}},
    "unio4-sarsa": {"algo": "unio4", "label": "Uni-O4, SARSA critics", "offline": True,
                    "config": {"batch_size": 256, "critic": "sarsa", "online_critic": "offline", "bppo_fraction": 0.05}},
    "iql": {"algo": "iql", "label": "IQL -> online", "offline": True, "config": {}},
    "td3bc": {"algo": "td3bc", "label": "TD3+BC -> online", "offline": True, "config": {}},
    "ppo": {"algo": "ppo", "label": "PPO from scratch", "offline": False, "config": {"normalize_obs": True}},
}
QUICK_CONFIG = {"unio4": {"model_epochs": 2}}  # --quick only, by algorithm: a 2-epoch dynamics model
FLAGSHIPS = ("unio4", "unio4-sarsa")  # Uni-O4 with polyrl's defaults, and with the SARSA-style critics
OFFLINE_BASELINES = ("iql", "td3bc")

# Threshold score = the dataset's behaviour score + this many points. +10 was tried first: no method reached it
# within 30k online steps on either dataset (best: IQL 15.1 on hopper-medium, threshold 19.0), so it said nothing.
THRESHOLD_MARGIN = 5.0
DROP_TARGET = 10.0  # Uni-O4's target: at most this many points lost from the offline score to the first online eval
MATCH_TOLERANCE = 1.0  # "matches" in the offline-score target: within this many points of the best baseline

# Rough single-thread speeds on the reference machine, two runs at once, for the estimate only (measured:
# Uni-O4 ~46 updates/s at batch 256 on a loaded core; IQL/TD3+BC online ~60-100 env steps/s, slowing as the run goes).
EST = {"offline_updates_per_s": {"unio4": 55.0, "iql": 120.0, "td3bc": 125.0},
       "online_steps_per_s": {"unio4": 900.0, "iql": 70.0, "td3bc": 70.0, "ppo": 900.0},
       "model_fit_s": 150.0, "eval_s": 2.0, "startup_s": 8.0}


@dataclass(frozen=True)
class Run:
    method: str
    dataset: str | None  # None: PPO from scratch (one run per seed serves every dataset)
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}-{self.dataset or 'scratch'}-s{self.seed}"


def plan(datasets: list[str], methods: list[str], seeds: int) -> list[Run]:
    """Runs in execution order: seed by seed, dataset by dataset, methods alternating; PPO once per seed."""
    runs: list[Run] = []
    for seed in range(seeds):
        for ds in datasets:
            runs += [Run(m, ds, seed) for m in methods if METHODS[m]["offline"]]
        if "ppo" in methods:
            runs.append(Run("ppo", None, seed))
    return runs


# -- datasets, reference returns, thresholds -------------------------------------------------------
def dataset_info(path: Path) -> dict[str, Any]:
    """Behaviour return and reference returns of a dataset (from its files and meta.json)."""
    from polyrl.data import Dataset

    meta = json.loads((path / "meta.json").read_text())
    ref = env_reference(ENV)  # polyrl's measured references for the env id when shipped, else D4RL's
    info = Dataset.load(path).info()
    behaviour = score(info["mean_return"], ref)
    return {"path": str(path), "transitions": info["transitions"], "episodes": info["episodes"],
            "behaviour_return": info["mean_return"], "behaviour_score": behaviour,
            "max_episode_score": score(info["max_return"], ref),
            "threshold_score": behaviour + THRESHOLD_MARGIN,
            "threshold_return": ref["random"] + (behaviour + THRESHOLD_MARGIN) / 100.0 * (ref["expert"] - ref["random"]),
            "reference_returns": {"random": ref["random"], "expert": ref["expert"], "source": ref.get("source")},
            "recipe": meta.get("recipe")}


def score(ret: float, ref: dict[str, Any]) -> float:
    return 100.0 * (ret - ref["random"]) / (ref["expert"] - ref["random"])


# -- running ---------------------------------------------------------------------------------------
def run_spec(run: Run, budget: Budget, data_dir: Path, work: Path, quick: bool, threads: int) -> dict[str, Any]:
    m = METHODS[run.method]
    config = dict(m["config"], **(QUICK_CONFIG.get(m["algo"], {}) if quick else {}))
    d = work / run.key
    return {"method": run.method, "algo": m["algo"], "env_id": ENVS[ENV]["env_id"], "seed": run.seed,
            "dataset": str(data_dir / run.dataset) if run.dataset else None, "config": config, "threads": threads,
            "offline_updates": budget.offline_updates if m["offline"] else 0, "online_steps": budget.online_steps,
            "offline_eval_every": budget.offline_eval_every, "online_eval_every": budget.online_eval_every,
            "eval_episodes": budget.eval_episodes, "run_dir": str(d / "run"), "result_path": str(d / "result.json")}


def execute(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in a fresh interpreter, its stdout/stderr going to the run's log.txt."""
    import polyrl

    # the child imports this same polyrl
    env = child_env(spec["threads"], Path(polyrl.__file__).resolve().parent.parent)
    cmd = [sys.executable, str(RUNNER), json.dumps(spec)]
    t0 = time.perf_counter()
    path = Path(spec["result_path"])
    returncode = run_to_log(cmd, f"{sys.executable} {RUNNER.name} '{json.dumps(spec)}'", path, env, RUN_TIMEOUT_S)
    res = cached(spec)
    if returncode != 0 or res is None:
        raise run_failed(path, returncode)
    res["wall_s"] = time.perf_counter() - t0
    return res


def summarize(run: Run, res: dict[str, Any], info: dict[str, dict[str, Any]]) -> str:
    ref = next(iter(info.values()))["reference_returns"]
    parts = []
    if res["offline_evals"]:
        parts.append(f"offline {score(res['offline_evals'][-1][1], ref):5.1f}")
    first, last = res["online_evals"][0], res["online_evals"][-1]
    parts.append(f"first online {score(first[1], ref):5.1f} @{first[0]}")
    parts.append(f"final {score(last[1], ref):5.1f}")
    fit = f", model fit {res['model_fit_s']:.0f}" if res.get("model_fit_s") else ""
    parts.append(f"[{res['total_s']:.0f} s: offline {res['offline_s']:.0f}{fit}, online {res['online_s']:.0f}]")
    return "  ".join(parts)


# -- per-run numbers and records -----------------------------------------------------------------
METRICS: dict[str, dict[str, Any]] = {
    "offline_score": {"hib": True, "offline_only": True, "digits": 1},
    "first_online_score": {"hib": True, "offline_only": False, "digits": 1},
    "handoff_drop": {"hib": False, "offline_only": True, "digits": 1},
    "min_online_score": {"hib": True, "offline_only": False, "digits": 1},
    "final_score": {"hib": True, "offline_only": False, "digits": 1},
    "steps_to_threshold": {"hib": False, "offline_only": False, "digits": 0},
    "wall_s": {"hib": False, "offline_only": False, "digits": 0},
}
NOTES = {
    "offline_score": "normalised score of the mean return of the deterministic evaluation logged when offline training "
                     "ends (for Uni-O4: after member selection)",
    "first_online_score": "normalised score of the first online evaluation (its env step is in first_eval_steps); "
                          "PPO from scratch: its first evaluation",
    "handoff_drop": "offline_score - first_online_score (positive: the score fell after the hand-off)",
    "min_online_score": "lowest normalised score of all online evaluations, the final one included",
    "final_score": "normalised score of the evaluation at the end of the online budget",
    "steps_to_threshold": "env steps to the first evaluation at or above threshold_score (the dataset's behaviour score "
                          f"+ {THRESHOLD_MARGIN:g}); an offline method's hand-off evaluation counts as step 0; a seed that "
                          "never reaches it counts as infinitely slow in the median (null when most do not)",
    "wall_s": "wall-clock seconds of the whole run, from creating the agent to the end of the last evaluation "
              "(offline training, model fit, online training, evaluations; interpreter start-up excluded); indicative "
              "only: runs shared 2 cores with --jobs 2 and with other work",
}


def run_numbers(res: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The per-run values of every metric, scored against one dataset's references and threshold."""
    ref = info["reference_returns"]
    online = [(s, score(r, ref)) for s, r in res["online_evals"]]
    out: dict[str, Any] = {"first_online_score": online[0][1], "first_eval_step": online[0][0],
                           "min_online_score": min(v for _, v in online), "final_score": online[-1][1],
                           "final_step": online[-1][0], "wall_s": res["total_s"],
                           "online_curve": [[s, round(v, 2)] for s, v in online]}
    curve = list(online)
    if res["offline_evals"]:
        off = score(res["offline_evals"][-1][1], ref)
        out |= {"offline_score": off, "handoff_drop": off - online[0][1],
                "offline_curve": [[s, round(score(r, ref), 2)] for s, r in res["offline_evals"]]}
        curve = [(0, off)] + curve
    out["steps_to_threshold"] = next((s for s, v in curve if v >= info["threshold_score"]), None)
    out["phases_s"] = {k: round_or_none(res.get(k), 1) for k in ("setup_s", "offline_s", "model_fit_s", "online_s")}
    if res.get("select"):
        out["select"] = res["select"]
    return out


def budget_text(method: str, budget: Budget) -> str:
    online = f"{budget.online_steps} env steps (eval every {budget.online_eval_every})"
    if not METHODS[method]["offline"]:
        return f"{online} from scratch"
    return f"{budget.offline_updates} offline updates, then {online}"


def command_for(dataset: str, method: str, args: argparse.Namespace, seeds: int) -> str:
    """The command that reproduces a record of ``seeds`` seeds."""
    cmd = f"python benchmarks/offline_to_online.py --task {dataset} --method {method}"
    default_seeds = QUICK.seeds if args.quick else FULL.seeds
    for flag, value in (("--seeds", seeds if seeds != default_seeds else None),
                        ("--offline-updates", args.offline_updates), ("--online-steps", args.online_steps)):
        if value is not None:
            cmd += f" {flag} {value}"
    return cmd + (" --quick" if args.quick else "")


def make_records(dataset: str, method: str, results: list[dict[str, Any]], info: dict[str, Any], budget: Budget,
                 args: argparse.Namespace, date: str) -> list[dict[str, Any]]:
    nums = [run_numbers(r, info) for r in results]
    seeds = [r["spec"]["seed"] for r in results]
    records = []
    for metric, m in METRICS.items():
        if m["offline_only"] and not METHODS[method]["offline"]:
            continue
        values = [n[metric] for n in nums]
        present = [v for v in values if v is not None]
        med = median_or_none(values, missing_is_inf=metric == "steps_to_threshold")
        rec: dict[str, Any] = {
            "task": dataset, "algo": method, "label": METHODS[method]["label"], "metric": metric,
            "higher_is_better": m["hib"], "polyrl": round_or_none(med, m["digits"]), "peer": None,
            "peer_name": "none (a baseline of unio4)", "ratio": None, "repeats": len(results), "seeds": seeds,
            "budget": budget_text(method, budget), "command": command_for(dataset, method, args, len(results)), "date": date,
            "torch_threads": args.threads, "aggregate": "median",
            "spread": [round_or_none(min(present), m["digits"]), round_or_none(max(present), m["digits"])] if present else None,
            "runs": {"polyrl": [round_or_none(v, m["digits"]) for v in values]}, "notes": NOTES[metric],
            "env_id": ENVS[ENV]["env_id"], "config": results[0]["spec"]["config"],
            # git commit of polyrl per run (None: recorded before the runner stored it)
            "polyrl_commits": [(r.get("polyrl_source") or {}).get("commit") for r in results],
        }
        if metric.endswith("score") or metric == "handoff_drop":
            rec["reference_returns"] = info["reference_returns"]
        if metric == "first_online_score":
            rec["first_eval_steps"] = [n["first_eval_step"] for n in nums]
        if metric == "steps_to_threshold":
            rec |= {"threshold_score": round_or_none(info["threshold_score"], 2),
                    "threshold_return": round_or_none(info["threshold_return"], 1),
                    "behaviour_score": round_or_none(info["behaviour_score"], 2),
                    "reached": f"{len(present)}/{len(values)}"}
        if metric == "final_score":
            rec["curves"] = [{k: n[k] for k in ("offline_curve", "online_curve") if k in n} for n in nums]
            if any("select" in n for n in nums):
                rec["member_selection"] = [n.get("select") for n in nums]
        if metric == "wall_s":
            rec["phases_s"] = [n["phases_s"] for n in nums]
        records.append(rec)
    return records


def compare_flagship(records: list[dict[str, Any]]) -> None:
    """Give each Uni-O4 record its strongest polyrl baseline (peer stays null: no other library has Uni-O4)."""
    by = {(r["task"], r["algo"], r["metric"]): r for r in records}
    for r in records:
        if r["algo"] not in FLAGSHIPS:
            continue
        pool = OFFLINE_BASELINES if r["metric"] in ("offline_score", "handoff_drop") else \
            tuple(m for m in METHODS if m not in FLAGSHIPS)
        others = [by[(r["task"], m, r["metric"])] for m in pool if (r["task"], m, r["metric"]) in by]
        scored = [o for o in others if o["polyrl"] is not None]
        if scored:
            best = (max if r["higher_is_better"] else min)(scored, key=lambda o: o["polyrl"])
            r["peer_name"] = f"strongest polyrl baseline: {best['label']} ({best['algo']})"
            r["baseline_algo"], r["baseline"] = best["algo"], best["polyrl"]
            r["difference"] = round_or_none(r["polyrl"] - best["polyrl"], 1) if r["polyrl"] is not None else None
        else:
            r["peer_name"], r["baseline_algo"], r["baseline"], r["difference"] = \
                "strongest polyrl baseline: none reached it", None, None, None
        ppo = by.get((r["task"], "ppo", r["metric"]))
        if ppo is not None:
            r["from_scratch"] = ppo["polyrl"]
        if r["metric"] == "offline_score":
            r["target"] = f"matches (within {MATCH_TOLERANCE:g} point) or beats the best of IQL/TD3+BC"
            r["target_met"] = (r["polyrl"] is not None and r.get("baseline") is not None
                               and r["polyrl"] >= r["baseline"] - MATCH_TOLERANCE)
        if r["metric"] == "handoff_drop":
            r["target"] = f"drop <= {DROP_TARGET:g} points (median over seeds)"
            r["target_met"] = r["polyrl"] is not None and r["polyrl"] <= DROP_TARGET
            r["target_met_every_seed"] = all(v is not None and v <= DROP_TARGET for v in r["runs"]["polyrl"])


def _order(r: dict[str, Any]) -> tuple[int, int, int]:
    return (DATASETS.index(r["task"]) if r["task"] in DATASETS else 99,
            list(METHODS).index(r["algo"]) if r["algo"] in METHODS else 99,
            list(METRICS).index(r["metric"]) if r["metric"] in METRICS else 99)


def records_hash(records: list[dict[str, Any]]) -> str:
    core = [(r["task"], r["algo"], r["metric"], r["runs"]) for r in sorted(records, key=_order)]
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:12]


def merge_results(path: Path, new: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any]:
    """Merge as every harness does, then compare each Uni-O4 record with its baselines, and keep the datasets'
    descriptions and the hand-written reading of the old file."""
    old, merged = merged_records(path, new, _order)
    compare_flagship(merged)
    data = dict(header, datasets=old.get("datasets", {}) | header.get("datasets", {}), records=merged)
    for k in ("reading", "reading_for"):  # the hand-written reading is kept; render flags it when the runs changed
        if k in old:
            data[k] = old[k]
    write_results(path, data)
    return data


# -- BENCHMARKS.md ---------------------------------------------------------------------------------
def _cell(r: dict[str, Any] | None, digits: int = 1, signed: bool = False) -> str:
    if r is None:
        return "–"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    if r["polyrl"] is None:
        return "not reached" if r["metric"] == "steps_to_threshold" else "n/a"
    text = fmt.format(r["polyrl"])
    sp = r.get("spread")
    if sp and r["repeats"] > 1:
        text += f" [{fmt.format(sp[0])}, {fmt.format(sp[1])}]"
    return text


def render_markdown(data: dict[str, Any], source: Path) -> str:
    m = data.get("machine", {})
    recs = data["records"]
    by = {(r["task"], r["algo"], r["metric"]): r for r in recs}
    tasks = sorted({r["task"] for r in recs}, key=lambda t: DATASETS.index(t) if t in DATASETS else 99)
    dates = sorted({r.get("date", data.get("date", "")) for r in recs})
    src = shown_path(source)
    budgets = data.get("budget", {})
    lines = [
        HARNESS.start,
        "## Offline-to-online: Uni-O4 vs IQL / TD3+BC -> online vs PPO from scratch",
        "",
        f"Generated by `python benchmarks/offline_to_online.py` from `{src}` (do not edit by hand; "
        "`--render` rebuilds it). "
        f"Date: {', '.join(dates)}. Machine: {m.get('cpus')} CPUs ({m.get('cpu_model', '?')}), torch {m.get('torch')} "
        f"with {m.get('torch_threads')} thread per run, Python {m.get('python')}, polyrl {data.get('polyrl_version')}.",
        "",
        "No other library implements Uni-O4, so there is no peer: each Uni-O4 number is compared with the strongest "
        "polyrl baseline on the same dataset and seeds. Cells are the **median [min, max] over seeds** of the "
        "normalised score `100 (R - R_random) / (R_expert - R_random)`, R the mean return of "
        f"{budgets.get('eval_episodes', 10)} deterministic evaluation episodes.",
        "",
    ]
    for task in tasks:
        ds = data.get("datasets", {}).get(task, {})
        seeds = sorted({s for r in recs if r["task"] == task for s in r["seeds"]})
        lines += [
            f"### {task}",
            "",
            f"{ds.get('transitions', '?')} transitions, {ds.get('episodes', '?')} episodes; behaviour (dataset) score "
            f"{ds.get('behaviour_score', float('nan')):.1f} (return {ds.get('behaviour_return', float('nan')):.0f}); "
            f"threshold score {ds.get('threshold_score', float('nan')):.1f} (return "
            f"{ds.get('threshold_return', float('nan')):.0f}); seeds {', '.join(map(str, seeds))}.",
            "",
            "| Method | Seeds | Offline score | First online eval | Drop at hand-off | Worst online eval | Final score "
            "| Env steps to threshold | Wall-clock (min) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for method in METHODS:
            rows = {k[2]: r for k, r in by.items() if k[0] == task and k[1] == method}
            if not rows:
                continue
            first = rows.get("first_online_score")
            first_txt = _cell(first)
            if first is not None:
                steps = sorted(set(first.get("first_eval_steps", [])))
                first_txt += f" @{'/'.join(str(s) for s in steps)}"
            thr = rows.get("steps_to_threshold")
            thr_txt = _cell(thr, 0)
            if thr is not None:
                thr_txt += f" ({thr['reached']} reached)"
            wall = rows.get("wall_s")
            wall_txt = "–" if wall is None else f"{wall['polyrl'] / 60:.1f}"
            seeds_txt = ", ".join(str(x) for x in next(iter(rows.values()))["seeds"])
            lines.append(f"| {METHODS[method]['label']} | {seeds_txt} | {_cell(rows.get('offline_score'))} | {first_txt} "
                         f"| {_cell(rows.get('handoff_drop'), signed=True)} | {_cell(rows.get('min_online_score'))} "
                         f"| {_cell(rows.get('final_score'))} | {thr_txt} | {wall_txt} |")
        for flagship in FLAGSHIPS:
            got = flagship_lines(task, flagship, by)
            if got:
                lines += ["", f"{METHODS[flagship]['label']} against its targets:", ""] + got
        lines += [""]
    reading = data.get("reading")
    if reading:
        lines += ["**Reading.**"]
        if data.get("reading_for") != records_hash(recs):
            lines += ["", "*(Written for an earlier set of runs: the records have changed since; re-read the "
                      "tables.)*"]
        lines += [""] + [f"- {p}" for p in reading] + [""]
    full = budgets
    lines += [
        "**Protocol.**",
        "",
        f"- **Budgets**: offline methods {full.get('offline_updates')} gradient updates on the dataset "
        f"(evaluated every {full.get('offline_eval_every')}), then `start_online()` and "
        f"{full.get('online_steps')} env steps in one `learn` call (so learning-rate schedules span the whole "
        f"online budget), evaluated every {full.get('online_eval_every')} env steps (an evaluation runs after the "
        "update in which the step count crosses a multiple of that, so Uni-O4 and PPO, which update every 2048 "
        "steps, are evaluated at multiples of 2048); PPO learns the same env steps from scratch. "
        "Seeds are listed per dataset above; each run is a fresh process with one torch thread, two at a time "
        "(`--jobs 2`); one PPO run per seed serves both datasets (it never sees them).",
        "- **Methods**: polyrl's defaults except where said. Uni-O4: batch 256 (polyrl's default is 512; halved to "
        "fit the CPU budget, and the same transitions per update as IQL and TD3+BC), IQL-style critics as the authors use for locomotion (256x256, expectile 0.7), V re-fit on the "
        "dataset's Monte-Carlo returns before going online (the *Uni-O4, SARSA critics* row: SARSA-style critics "
        "and the offline V online, polyrl's defaults before 2026-12-07; note 1b of docs/algorithms/unio4.md), "
        "4-member BC ensemble with "
        "the KL diversity term, the last 5% of the offline updates behaviour PPO with the OPE gate (a 7-member "
        "dynamics ensemble fitted when that phase starts, horizon-20 rollouts), deployment by `ope_eval` (the best of "
        "the 3 top-OPE members after 5 real episodes each, the authors' procedure, plus polyrl's `selection_bc`: "
        "the BC policies those 3 started behaviour PPO from run the same episodes and are deployed if better; "
        "30 env episodes before the hand-off, on env seeds of their own, not the evaluation's), then PPO online "
        "(2048-step rollouts, clip 0.05, actor lr 3e-5, critic lr 2e-4). "
        "IQL (expectile 0.7, beta 3) and TD3+BC (alpha 2.5) fine-tune with one update per env step from a fresh "
        "replay buffer, each batch half dataset, half online, after 1000 warm-up steps with the offline policy. "
        "PPO: polyrl's PPO defaults (SB3-like: 2048-step rollouts, 64x64 tanh, lr 3e-4) with observation "
        "normalisation. Observation normalisation of the offline methods stays frozen at the dataset's statistics.",
        "- **Scores**: "
        + "; ".join(f"{t}: R_random {d['reference_returns']['random']:.2f}, R_expert {d['reference_returns']['expert']:.1f}"
                    f" ({d['reference_returns'].get('source')})" for t, d in data.get("datasets", {}).items()
                    if t in tasks)
        + " - the references `polyrl.data.reference` picks for the env id (polyrl's own measurement when it ships "
        "one), so absolute scores are not comparable with D4RL papers; the datasets are polyrl's own "
        "(`python benchmarks/offline.py make-data`, or `make-data --shipped` from the SAC snapshots polyrl ships; "
        "their provenance is in each `meta.json`; see the behaviour "
        "scores). Evaluation env copies are seeded `seed + 10000 + i`.",
        f"- **Columns**: *offline score*: the evaluation at the end of offline training (Uni-O4: of the member "
        f"selected); *first online eval*: the first evaluation after the hand-off (@ its env step); *drop*: offline "
        f"score - first online eval (positive = lost; Uni-O4's target is <= {DROP_TARGET:g}); *worst online eval*: "
        "the lowest of all online evaluations (a collapse anywhere in the online phase shows here); *final score*: "
        "at the end of the online budget; *env steps to threshold*: the first evaluation at or above the dataset's "
        f"behaviour score + {THRESHOLD_MARGIN:g} points (+10 was reached by no method within 30k online steps), the "
        "hand-off evaluation counting as step 0, the median "
        "counting a seed that never gets there as infinitely slow (\"not reached\" when most do not); *wall-clock*: "
        "median minutes per run, indicative only (two runs shared the 2 cores, and other work ran at times).",
        "- Per-seed values, evaluation curves, Uni-O4's member selection and per-phase times are in the JSON.",
        HARNESS.end,
    ]
    return "\n".join(lines) + "\n"


def flagship_lines(task: str, flagship: str, by: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    out = []
    off = by.get((task, flagship, "offline_score"))
    if off is not None and off.get("baseline") is not None:
        verdict = "met" if off.get("target_met") else "**missed**"
        out.append(f"- offline score {off['polyrl']:.1f} vs {off['baseline']:.1f} for the best offline baseline "
                   f"({METHODS[off['baseline_algo']]['label'].split(' ')[0]}): {off['difference']:+.1f}, target "
                   f"(match within {MATCH_TOLERANCE:g} or beat) {verdict}.")
    drop = by.get((task, flagship, "handoff_drop"))
    if drop is not None and drop["polyrl"] is not None:
        verdict = "met" if drop.get("target_met") else "**missed**"
        per_seed = ", ".join(f"{v:+.1f}" for v in drop["runs"]["polyrl"])
        out.append(f"- drop at the hand-off {drop['polyrl']:+.1f} points (seeds: {per_seed}): target <= "
                   f"{DROP_TARGET:g} {verdict}" + ("" if drop.get("target_met_every_seed") or not drop.get("target_met")
                                                 else " (not on every seed)") + ".")
    worst = by.get((task, flagship, "min_online_score"))
    if worst is not None and off is not None and worst["polyrl"] is not None:
        out.append(f"- worst online evaluation {worst['polyrl']:.1f} vs offline score {off['polyrl']:.1f}.")
    fin = by.get((task, flagship, "final_score"))
    if fin is not None and fin.get("baseline") is not None:
        out.append(f"- final score {fin['polyrl']:.1f} vs {fin['baseline']:.1f} for the strongest baseline "
                   f"({METHODS[fin['baseline_algo']]['label']}); PPO from scratch {_fmt1(fin.get('from_scratch'))}.")
    thr = by.get((task, flagship, "steps_to_threshold"))
    if thr is not None:
        out.append(f"- env steps to threshold {_fmt_steps(thr['polyrl'])} ({thr['reached']} seeds) vs PPO from "
                   f"scratch {_fmt_steps(thr.get('from_scratch'))}.")
    return out


def _fmt1(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _fmt_steps(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.0f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", help=f"dataset(s): {', '.join(DATASETS)} (default: both)")
    p.add_argument("--method", action="append", help=f"method(s): {', '.join(METHODS)} (default: all)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds 0..N-1 (default {FULL.seeds}; {QUICK.seeds} with --quick)")
    p.add_argument("--offline-updates", type=int, default=None, help=f"offline gradient updates (default {FULL.offline_updates})")
    p.add_argument("--online-steps", type=int, default=None, help=f"online env steps (default {FULL.online_steps})")
    add_flags(p, HARNESS, "jobs", "threads", threads="torch threads per run (default 1)")
    p.add_argument("--data-dir", type=Path, default=None, help=f"datasets (default {DATA_DIR.relative_to(ROOT)})")
    add_flags(p, HARNESS, "quick", "fresh")
    p.add_argument("--publish-only", action="store_true",
                   help="run nothing: rebuild the records of the selected cases from the runs that have finished "
                        "(e.g. after a budget cut), merge them into the JSON and re-render")
    add_flags(p, HARNESS, "render", "list", list="list the runs with a rough time estimate and exit")
    p.add_argument("--set-reading", type=Path, default=None, metavar="FILE",
                   help="store FILE (a hand-written reading of the results, one bullet per paragraph) in the results "
                        "JSON, tied to its current records, and re-render")
    add_flags(p, HARNESS, "out", "markdown")
    return p.parse_args(argv)


def estimate_s(run: Run, budget: Budget) -> float:
    m = METHODS[run.method]
    s = EST["startup_s"] + EST["eval_s"] * (budget.online_steps // budget.online_eval_every + 1)
    s += budget.online_steps / EST["online_steps_per_s"][m["algo"]]
    if m["offline"]:
        s += budget.offline_updates / EST["offline_updates_per_s"][m["algo"]]
        s += EST["eval_s"] * (budget.offline_updates // budget.offline_eval_every + 1)
        if m["algo"] == "unio4":
            s += EST["model_fit_s"] * (0.1 if QUICK_CONFIG["unio4"].get("model_epochs") and budget == QUICK else 1.0)
    return s


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out, md = HARNESS.outputs(args)
    if args.set_reading is not None:
        data = json.loads(out.read_text())
        paragraphs = [" ".join(p.split()) for p in args.set_reading.read_text().split("\n\n") if p.strip()]
        data["reading"], data["reading_for"] = paragraphs, records_hash(data["records"])
        out.write_text(json.dumps(data, indent=2) + "\n")
        print(f"stored {len(paragraphs)} paragraph(s) in {out}")
        args.render = True
    if args.render:
        HARNESS.render_stored(lambda data: render_markdown(data, out), out, md, announce=True)
        return
    base = QUICK if args.quick else FULL
    budget = Budget(seeds=args.seeds or base.seeds, offline_updates=args.offline_updates or base.offline_updates,
                    online_steps=args.online_steps or base.online_steps, offline_eval_every=base.offline_eval_every,
                    online_eval_every=base.online_eval_every, eval_episodes=base.eval_episodes)
    datasets, methods = split_csv(args.task) or list(DATASETS), split_csv(args.method) or list(METHODS)
    unknown = (set(datasets) - set(DATASETS)) | (set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown {sorted(unknown)}; datasets: {', '.join(DATASETS)}; methods: {', '.join(METHODS)}")
    datasets = [d for d in DATASETS if d in datasets]
    methods = [m for m in METHODS if m in methods]
    runs = plan(datasets, methods, budget.seeds)
    eta = sum(estimate_s(r, budget) for r in runs)
    if args.list:
        for r in runs:
            print(f"{r.key:36s} {budget_text(r.method, budget)}  ~{estimate_s(r, budget) / 60:.1f} min")
        print(f"{len(runs)} runs, ~{eta / 60:.0f} min on one core; ~{eta / 60 / 2:.0f} min with --jobs 2 on an "
              "idle 2-core machine")
        return
    try:
        import polyrl
    except ImportError:
        raise SystemExit("polyrl is not importable here: run this with the interpreter polyrl is installed in") from None

    data_dir = (args.data_dir or DATA_DIR).resolve()  # the runs start in their own directories
    missing = [d for d in datasets if not (data_dir / d / "meta.json").exists()]
    if missing and args.quick and args.data_dir is None:  # smoke run: tiny datasets of the same recipes
        data_dir = QUICK_DATA_DIR
        if any(not (data_dir / d / "meta.json").exists() for d in datasets):
            make_data([ENV], data_dir, MAKE_DATA_QUICK, args.threads, force=False)
        missing = [d for d in datasets if not (data_dir / d / "meta.json").exists()]
    if missing:
        raise SystemExit(f"missing dataset(s) {missing} in {data_dir}; build them first: "
                         "python benchmarks/offline.py make-data")
    info = {d: dataset_info(data_dir / d) for d in datasets}
    work = O2O_WORK / ("quick" if args.quick else "full")
    specs = {r.key: run_spec(r, budget, data_dir, work, args.quick, args.threads) for r in runs}
    date = today()
    header = HARNESS.header(polyrl.__version__, args.threads, date, jobs=args.jobs,
                            # seeds are per record (a run may cover fewer seeds on one dataset than on another)
                            budget={k: v for k, v in budget.__dict__.items() if k != "seeds"}
                            | {"threshold_margin": THRESHOLD_MARGIN, "drop_target": DROP_TARGET},
                            datasets=info)
    for d, i in info.items():
        print(f"{d}: {i['transitions']} transitions, behaviour score {i['behaviour_score']:.1f}, threshold "
              f"{i['threshold_score']:.1f} (return {i['threshold_return']:.0f})", flush=True)

    by_key = {r.key: r for r in runs}
    results, todo = reuse_finished(by_key, specs, args.fresh, 36, skip_rest=args.publish_only,
                                   done_text=lambda key, res: f": {summarize(by_key[key], res, info)}")
    eta_todo = sum(estimate_s(by_key[k], budget) for k in todo)
    print(plan_line(len(runs), len(results), args.jobs, work, eta_todo), flush=True)

    def publish() -> None:
        records = []
        for d in datasets:
            for m in methods:
                got = [results[r.key] for r in runs if r.method == m and (r.dataset == d or r.dataset is None)
                       and r.key in results]
                if got:
                    records += make_records(d, m, got, info[d], budget, args, date)
        if records:
            data = merge_results(out, records, header)
            HARNESS.write_markdown(md, render_markdown(data, out))

    started = time.perf_counter()
    failed = run_jobs({k: functools.partial(execute, specs[k]) for k in todo}, args.jobs, results, 36,
                      lambda key, res, minutes: f"{summarize(by_key[key], res, info)}  [{minutes:.1f} min so far]",
                      publish, started)
    print(f"\nwrote {out} and {md} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    exit_if_failed(failed)


if __name__ == "__main__":
    main()
