"""polyrl vs Stable-Baselines3 on online RL: throughput, return at a fixed budget, and time to solve.

    python benchmarks/online.py                       # everything, 3 seeds (about 70 min on 2 cores)
    python benchmarks/online.py --task Hopper-v5 --algo sac
    python benchmarks/online.py --quick               # smoke run, a few minutes; writes under benchmarks/.work/
    python benchmarks/online.py --render              # only regenerate BENCHMARKS.md from the JSON

Both libraries get the same env, network sizes, batch size, update ratio,
hyperparameters and seeds (``CASES`` below, with the library-neutral
hyperparameters of ``_cases.py``; ``_polyrl_runner.py`` and ``_sb3_runner.py``
map them onto each library).
Each measured run is a fresh subprocess with the same torch thread count;
runs alternate polyrl, SB3, polyrl, SB3, ... and each record is the median
over the seeds. SB3 lives in its own virtualenv (``benchmarks/.venvs/sb3``,
created here on first use) so it never touches the polyrl environment.

Results merge into ``benchmarks/results/online.json`` (records of cases not
run are kept) and the table between ``<!-- online:start -->`` and
``<!-- online:end -->`` in ``BENCHMARKS.md`` is regenerated from it.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _cases import DQN_HP, PPO_HP, SAC_HP, TD3_HP  # the hyperparameters, said once for both libraries
from _harness import (
    BUSY_WARNING,
    WORK,
    Harness,
    Peer,
    add_flags,
    alternate,
    child_env,
    csv_set,
    fmt_number,
    median_or_none,
    ratio,
    record_key,
    round_or_none,
    run_measured,
    shown_path,
    today,
    venv_python,
)

# gymnasium's MuJoCo envs also need imageio (its [mujoco] extra), which plain "gymnasium mujoco" lacks.
SB3 = Peer("stable-baselines3", "SB3", "sb3", ("stable-baselines3", "gymnasium[mujoco]", "mujoco"),
           "import json, gymnasium, mujoco, stable_baselines3, torch; gymnasium.make('Hopper-v5').close(); "
           "print(json.dumps({'sb3': stable_baselines3.__version__, 'torch': torch.__version__, "
           "'gymnasium': gymnasium.__version__, 'mujoco': mujoco.__version__}))")
HARNESS = Harness("online", peer=SB3, quick_markdown_name="BENCHMARKS-quick.md")
RUN_TIMEOUT_S = 3600

# -- the cases (their hyperparameters are in _cases.py) --------------------------------------
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class Metric:
    name: str
    key: str  # field of the runner's result line
    higher_is_better: bool
    digits: int = 1


UPDATES_PER_S = Metric("updates_per_s", "updates_per_s", True)
STEPS_PER_S = Metric("steps_per_s", "steps_per_s", True)
RETURN = Metric("return", "eval_return", True)
SECONDS_TO_475 = Metric("seconds_to_475", "seconds_to_threshold", False, digits=2)


@dataclass(frozen=True)
class Case:
    task: str
    algo: str
    hp: dict[str, Any]
    steps: int
    quick_steps: int
    metrics: tuple[Metric, ...]
    mode: str = "throughput"  # or "threshold"
    threshold: float | None = None
    eval_every: int = 0
    est_s: float = 60.0  # rough wall seconds of one full-budget run on 2 cores (either library), for the ETA

    @property
    def key(self) -> str:
        return f"{self.algo}/{self.task}"


CASES = (
    Case("Pendulum-v1", "sac", SAC_HP, 10_000, 1_500, (UPDATES_PER_S, RETURN), est_s=130),
    Case("Hopper-v5", "sac", SAC_HP, 25_000, 1_500, (UPDATES_PER_S, RETURN), est_s=360),
    Case("CartPole-v1", "ppo", PPO_HP, 100_000, 100_000, (SECONDS_TO_475,), mode="threshold", threshold=475.0,
         eval_every=5_000, est_s=25),
    Case("Pendulum-v1", "td3", TD3_HP, 10_000, 1_500, (STEPS_PER_S, RETURN), est_s=95),
    Case("CartPole-v1", "dqn", DQN_HP, 50_000, 5_000, (STEPS_PER_S, RETURN), est_s=55),
)


def budget_text(case: Case, steps: int) -> str:
    if case.mode == "threshold":
        return f"up to {steps} env steps, {EVAL_EPISODES}-episode eval every {case.eval_every}"
    return f"{steps} env steps, learning_starts {case.hp['learning_starts']}"


NOTES = {
    "updates_per_s": "gradient updates / wall time of the learning phase (start of the first gradient update to the "
                     "end of the last; env steps, acting, replay writes and logging in between count; set-up, the "
                     "random warm-up and the final evaluation/checkpoint do not)",
    "steps_per_s": "env steps taken during the learning phase / its wall time (the phase as for updates_per_s)",
    "return": f"mean return of {EVAL_EPISODES} deterministic episodes after training, separate env seeded "
              f"seed + {EVAL_SEED_OFFSET}; 'difference' = polyrl - peer",
    "seconds_to_475": "wall time from creating the agent to the first deterministic evaluation with mean return >= "
                      "475, evaluation time excluded; one learn() call over the whole budget so the linear "
                      "schedules match; evaluations after the update in which the step count crosses a multiple "
                      "of the eval interval, and at the end; an unsolved seed counts as +inf in the median",
}


# -- running ---------------------------------------------------------------------------------
def run_one(lib: str, case: Case, seed: int, steps: int, threads: int, sb3_python: Path) -> dict[str, Any]:
    """One measured run in a fresh interpreter; returns the runner's result line."""
    run_dir = WORK / "runs" / f"{case.algo}-{case.task}-{lib}-s{seed}-{os.getpid()}"
    spec = {"algo": case.algo, "env": case.task, "seed": seed, "threads": threads, "steps": steps, "mode": case.mode,
            "hp": case.hp, "eval_episodes": EVAL_EPISODES, "eval_seed_offset": EVAL_SEED_OFFSET,
            "threshold": case.threshold, "eval_every": case.eval_every, "run_dir": str(run_dir)}
    python, script = (sys.executable, "_polyrl_runner.py") if lib == "polyrl" else (str(sb3_python), "_sb3_runner.py")
    log = WORK / "logs" / f"{case.algo}-{case.task}-{lib}-s{seed}.log"
    return run_measured(python, script, spec, child_env(threads), log, f"{lib} run {case.key} seed {seed}", RUN_TIMEOUT_S)


def make_records(case: Case, runs: dict[str, list[dict[str, Any]]], seeds: list[int], steps: int, command: str,
                 peer_name: str, date: str, threads: int) -> list[dict[str, Any]]:
    records = []
    for metric in case.metrics:
        values = {lib: [r.get(metric.key) for r in runs[lib]] for lib in ("polyrl", "sb3")}
        missing_is_inf = not metric.higher_is_better
        ours, peer = median_or_none(values["polyrl"], missing_is_inf), median_or_none(values["sb3"], missing_is_inf)
        times_better = ratio(ours, peer, metric.higher_is_better)
        rec: dict[str, Any] = {
            "task": case.task, "algo": case.algo, "metric": metric.name, "higher_is_better": metric.higher_is_better,
            "polyrl": round_or_none(ours, metric.digits), "peer": round_or_none(peer, metric.digits), "peer_name": peer_name,
            "ratio": round_or_none(times_better, 2), "repeats": len(seeds), "seeds": seeds, "budget": budget_text(case, steps),
            "command": command, "date": date, "torch_threads": threads, "notes": NOTES[metric.name],
            "runs": {"polyrl": [round_or_none(v, metric.digits) for v in values["polyrl"]],
                     "peer": [round_or_none(v, metric.digits) for v in values["sb3"]]},
            "max_background_load": max((r.get("background_load") or 0.0 for lib in runs for r in runs[lib]), default=0.0),
        }
        if metric is RETURN:
            # Returns can be negative (Pendulum), where a ratio means nothing: give the difference instead.
            rec["difference"] = round_or_none(ours - peer, 1) if ours is not None and peer is not None else None
        if case.mode == "threshold":
            rec["solved"] = {"polyrl": f"{sum(r['solved'] for r in runs['polyrl'])}/{len(seeds)}",
                             "peer": f"{sum(r['solved'] for r in runs['sb3'])}/{len(seeds)}"}
            rec["steps_to_475"] = {"polyrl": [r["steps_to_threshold"] for r in runs["polyrl"]],
                                   "peer": [r["steps_to_threshold"] for r in runs["sb3"]]}
        records.append(rec)
    return records


def estimate_s(case: Case, steps: int) -> float:
    """Rough wall seconds of one run (process start-up and evaluation included)."""
    if case.mode == "threshold":
        return case.est_s
    return 8.0 + case.est_s * steps / case.steps


def summarize(lib: str, res: dict[str, Any], case: Case) -> str:
    if case.mode == "threshold":
        s = res["seconds_to_threshold"]
        solved = f"solved in {s:.1f} s train time at step {res['steps_to_threshold']}" if res["solved"] else "not solved"
        return f"{lib:6s} {solved} (eval {res['eval_s']:.1f} s)"
    ups, sps = res.get("updates_per_s") or 0.0, res.get("steps_per_s") or 0.0
    return (f"{lib:6s} {ups:7.1f} updates/s {sps:8.1f} steps/s  return {res['eval_return']:8.1f}  "
            f"total {res['total_s']:.1f} s")


# -- results file and BENCHMARKS.md ------------------------------------------------------------
def merge_results(path: Path, new: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any]:
    order = {(c.task, c.algo, m.name): i for i, (c, m) in enumerate((c, m) for c in CASES for m in c.metrics)}
    return HARNESS.merge(path, new, header, lambda r: order.get(record_key(r), len(order)))


METRIC_TEXT = {"updates_per_s": "gradient updates/s", "steps_per_s": "env steps/s", "return": "return at budget",
               "seconds_to_475": "seconds to return 475"}


def render_markdown(data: dict[str, Any], source: Path) -> str:
    m = data.get("machine", {})
    peers = sorted({r["peer_name"] for r in data["records"]})
    dates = sorted({r.get("date", data.get("date", "")) for r in data["records"]})
    lines = [
        HARNESS.start,
        "## Online RL: polyrl vs Stable-Baselines3",
        "",
        f"Generated by `python benchmarks/online.py` from `{shown_path(source)}`"
        " (do not edit by hand).",
        f"Date: {', '.join(dates)}. Machine: {m.get('cpus')} CPUs ({m.get('cpu_model', '?')}), torch {m.get('torch')} "
        f"with {m.get('torch_threads')} thread(s), Python {m.get('python')}. Peer: {', '.join(peers)}.",
        "",
        "Medians over the seeds; polyrl and SB3 runs alternate, each a fresh process. "
        "Ratio > 1 means polyrl is better (faster, or higher return).",
        "",
    ]
    busy = [r for r in data["records"] if (r.get("max_background_load") or 0.0) > BUSY_WARNING]
    if busy:
        lines += [f"**Warning**: other processes competed for the CPU during {len(busy)} record(s) "
                  f"(up to {max(r['max_background_load'] for r in busy):.2f} cores); their timings are skewed.", ""]
    lines += [
        "| Task | Algo | Metric | polyrl | SB3 | Ratio | Seeds | Budget |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in data["records"]:
        ours, peer = fmt_number(r["polyrl"]), fmt_number(r["peer"])
        if "solved" in r:
            ours, peer = f"{ours} ({r['solved']['polyrl']} solved)", f"{peer} ({r['solved']['peer']} solved)"
        if r.get("ratio") is not None:
            ratio = f"{r['ratio']:.2f}x"
        elif r.get("difference") is not None:
            ratio = f"{r['difference']:+.1f} (diff.)"
        else:
            ratio = "n/a"
        metric = METRIC_TEXT.get(r["metric"], r["metric"])
        lines.append(f"| {r['task']} | {r['algo'].upper()} | {metric} | {ours} | {peer} | {ratio} | {r['repeats']} | "
                     f"{r['budget']} |")
    lines += _threshold_breakdown(data["records"])
    lines += [
        "",
        "How it is measured (identical for both libraries):",
        "",
        "- Same env, hyperparameters, network sizes, batch size, update ratio and seeds; hyperparameters are listed "
        "once in `benchmarks/online.py`. SB3 runs in its own virtualenv with the same torch release and thread count.",
        "- **updates/s, env steps/s**: over the learning phase, from the start of the first gradient update to the "
        "end of the last one (env stepping, action selection, replay writes and logging in between all count; "
        "set-up, the random warm-up before `learning_starts` and the final evaluation/checkpoint do not).",
        "- **return at budget**: mean of 10 deterministic episodes after training, in a separate env seeded "
        "`seed + 10000`. Shown as a difference when returns can be negative.",
        "- **seconds to return 475** (PPO, CartPole-v1, RL Zoo hyperparameters with linear learning-rate and clip "
        "annealing over the 1e5-step budget, in one `learn` call): wall time from creating the agent to the first "
        "deterministic evaluation (10 episodes) with mean return >= 475, evaluation time excluded. Evaluations run "
        f"after the update in which the step count crosses a multiple of {_eval_every()} steps. An unsolved seed "
        "counts as infinitely slow in the median.",
        "- DQN: RL Zoo CartPole-v1 hyperparameters; SB3's target update every 10 env steps equals polyrl's every "
        "128 gradient updates here (128 updates per 256 steps), and polyrl's double-Q is off to match SB3's DQN.",
        HARNESS.end,
    ]
    return "\n".join(lines) + "\n"


def _threshold_breakdown(records: list[dict[str, Any]]) -> list[str]:
    """Split each time-to-threshold ratio into sample efficiency (env steps to solve) and speed per env step."""
    out: list[str] = []
    for r in records:
        steps = r.get("steps_to_475")
        if not steps or not all(steps.get(k) for k in ("polyrl", "peer")):
            continue
        per_k = {k: [1000 * t / n for t, n in zip(r["runs"][k], steps[k]) if n and math.isfinite(t)]
                 for k in ("polyrl", "peer")}
        if not all(per_k.values()):
            continue
        ours, peer = statistics.median(per_k["polyrl"]), statistics.median(per_k["peer"])
        out += ["", f"{r['task']} {r['algo'].upper()}, the time to solve split in two (solved seeds): median env steps "
                f"to the first evaluation >= 475, polyrl {_median_solved(steps['polyrl'])} vs SB3 "
                f"{_median_solved(steps['peer'])}; median seconds per 1000 env steps up to it (set-up "
                f"included), polyrl {ours:.3f} vs SB3 {peer:.3f} ({peer / ours:.2f}x)."]
    return out


def _median_solved(steps: list[int | None]) -> str:
    solved = [n for n in steps if n]
    return f"{statistics.median(solved):.0f}" if solved else "n/a"


def _eval_every() -> int:
    return next(c.eval_every for c in CASES if c.mode == "threshold")


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", help="env id(s) to run (repeat or comma-separate; default: all)")
    p.add_argument("--algo", action="append", help="algorithm(s) to run: sac, ppo, td3, dqn (default: all)")
    add_flags(p, HARNESS, "repeats", "threads", "quick", "render", "setup", "list", "venv", "out", "markdown",
              render="only regenerate the markdown table from the results JSON")
    return p.parse_args(argv)


def select_cases(tasks: set[str] | None, algos: set[str] | None) -> list[Case]:
    chosen = [c for c in CASES if (tasks is None or c.task.lower() in tasks) and (algos is None or c.algo in algos)]
    if not chosen:
        known = ", ".join(c.key for c in CASES)
        raise SystemExit(f"no case matches --task {sorted(tasks or [])} --algo {sorted(algos or [])}; cases: {known}")
    return chosen


def command_for(case: Case, args: argparse.Namespace, repeats: int) -> str:
    cmd = f"python benchmarks/online.py --task {case.task} --algo {case.algo}"
    if repeats != 3:
        cmd += f" --repeats {repeats}"
    if args.threads != 1:
        cmd += f" --threads {args.threads}"
    return cmd + (" --quick" if args.quick else "")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out, md = HARNESS.outputs(args)
    if args.list:
        for c in CASES:
            print(f"{c.task:12s} {c.algo:4s} {c.steps:>7d} steps (quick {c.quick_steps}): "
                  f"{', '.join(m.name for m in c.metrics)}")
        return
    if args.render:
        HARNESS.render_stored(lambda data: render_markdown(data, out), out, md, announce=True)
        return
    try:
        import polyrl
    except ImportError:
        raise SystemExit("polyrl is not importable here: run this with the interpreter polyrl is installed in") from None

    versions = SB3.ensure(args)
    peer_name = f"stable-baselines3 {versions['sb3']}"
    if args.setup:
        return

    cases = select_cases(csv_set(args.task), csv_set(args.algo))
    repeats = args.repeats or (1 if args.quick else 3)
    seeds = list(range(repeats))
    date = today()
    header = HARNESS.header(polyrl.__version__, args.threads, date, peer_versions=versions)
    eta = sum(2 * repeats * estimate_s(c, c.quick_steps if args.quick else c.steps) for c in cases)
    print(f"{len(cases)} case(s) x {repeats} seed(s) x 2 libraries, {args.threads} torch thread(s); "
          f"rough estimate {eta / 60:.0f} min", flush=True)
    started = time.perf_counter()
    for case in cases:
        steps = case.quick_steps if args.quick else case.steps
        print(f"\n== {case.algo.upper()} {case.task}: {budget_text(case, steps)}", flush=True)
        run = functools.partial(run_one, case=case, steps=steps, threads=args.threads,
                                sb3_python=venv_python(SB3.venv_arg(args)))
        runs = alternate(seeds, ("polyrl", "sb3"), run, functools.partial(summarize, case=case))
        records = make_records(case, runs, seeds, steps, command_for(case, args, repeats), peer_name, date,
                               args.threads)
        for r in records:
            print(f"  -> {r['metric']}: polyrl {fmt_number(r['polyrl'])}  sb3 {fmt_number(r['peer'])}  "
                  f"ratio {r['ratio'] if r['ratio'] is not None else r.get('difference')}", flush=True)
        data = merge_results(out, records, header)  # written after every case: a partial run keeps what it measured
        HARNESS.write_markdown(md, render_markdown(data, out))
    print(f"\nwrote {out} and {md} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
