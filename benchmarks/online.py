"""polyrl vs Stable-Baselines3 on online RL: throughput, return at a fixed budget, and time to solve.

    python benchmarks/online.py                       # everything, 3 seeds (about 70 min on 2 cores)
    python benchmarks/online.py --task Hopper-v5 --algo sac
    python benchmarks/online.py --quick               # smoke run, a few minutes; writes under benchmarks/.work/
    python benchmarks/online.py --render              # only regenerate BENCHMARKS.md from the JSON

Both libraries get the same env, network sizes, batch size, update ratio,
hyperparameters and seeds (``CASES`` below holds them once, library-neutral;
``_polyrl_runner.py`` and ``_sb3_runner.py`` map them onto each library).
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
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from _results import merged_records, record_key, write_results, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "online.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
WORK = HERE / ".work"
SB3_VENV = HERE / ".venvs" / "sb3"
# gymnasium's MuJoCo envs also need imageio (its [mujoco] extra), which plain "gymnasium mujoco" lacks.
SB3_PACKAGES = ("stable-baselines3", "gymnasium[mujoco]", "mujoco")
START, END = "<!-- online:start -->", "<!-- online:end -->"
RUN_TIMEOUT_S = 3600
BUSY_WARNING = 0.25  # cores used by other processes during a run above which its timing is flagged

# -- the cases: hyperparameters said once, for both libraries ----------------------------------
OFF_POLICY = dict(learning_starts=1000, batch_size=256, buffer_size=1_000_000, train_freq=1, gradient_steps=1,
                  learning_rate=3e-4, tau=0.005, gamma=0.99, hidden=[256, 256])
SAC_HP = dict(OFF_POLICY)
TD3_HP = dict(OFF_POLICY, policy_delay=2, target_noise=0.2, noise_clip=0.5, exploration_noise=0.1)
# RL Zoo's CartPole-v1 DQN. SB3 updates the target every 10 env steps; with 128 gradient steps every 256 env
# steps that is one copy per round of updates, i.e. polyrl's target_update_interval=128 (it counts gradient
# updates). SB3's DQN uses the plain max target, so polyrl's double-Q is switched off to run the same algorithm.
DQN_HP = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
              target_update_env_steps=10, target_update_gradient_steps=128, train_freq=256, gradient_steps=128,
              exploration_fraction=0.16, exploration_final_eps=0.04, max_grad_norm=10.0, double_q=False,
              hidden=[256, 256])
# RL Zoo's CartPole-v1 PPO; 64x64 tanh, separate actor and critic (SB3's default MlpPolicy).
PPO_HP = dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8, gamma=0.98, ent_coef=0.0,
              learning_rate=1e-3, clip_range=0.2, anneal=True, vf_coef=0.5, max_grad_norm=0.5,
              hidden=[64, 64], activation="tanh")

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


# -- the SB3 virtualenv ------------------------------------------------------------------------
def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def torch_version() -> str:
    """The torch release polyrl runs with, without the local build tag (``2.13.0+cpu`` -> ``2.13.0``)."""
    return metadata.version("torch").split("+")[0]


def probe_venv(venv: Path, code: str) -> dict[str, Any] | None:
    """Run ``code`` (which prints one JSON object of versions last) in ``venv``; None if the venv is missing or broken."""
    py = venv_python(venv)
    if not py.exists():
        return None
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def probe_sb3(venv: Path) -> dict[str, Any] | None:
    """Versions inside the SB3 venv, or None if it is missing or broken."""
    return probe_venv(venv, "import json, gymnasium, mujoco, stable_baselines3, torch; gymnasium.make('Hopper-v5').close(); "
                            "print(json.dumps({'sb3': stable_baselines3.__version__, 'torch': torch.__version__, "
                            "'gymnasium': gymnasium.__version__, 'mujoco': mujoco.__version__}))")


def pip(venv: Path, *args: str) -> None:
    cmd = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def ensure_venv(venv: Path, peer: str, packages: tuple[str, ...], probe: Callable[[Path], dict[str, Any] | None]) -> dict[str, Any]:
    """Create (or repair) the virtualenv of a peer library and return its package versions (``probe``'s answer).

    torch is installed first, pinned to the release polyrl uses: that takes the
    local CPU wheel, and the peer's own torch requirement is then already met (an
    unpinned torch would pull a multi-GB CUDA build).
    """
    want = torch_version()
    versions = probe(venv)
    if versions is not None and versions["torch"].split("+")[0] == want:
        return versions
    if versions is None and venv.exists():
        print(f"{venv} exists but does not import {peer}; repairing it", flush=True)
    if not venv_python(venv).exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        print(f"creating the {peer} virtualenv at {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip(venv, f"torch=={want}")
    pip(venv, *packages)
    versions = probe(venv)
    if versions is None:
        raise SystemExit(f"the {peer} virtualenv at {venv} still fails to import; delete it and run again")
    if versions["torch"].split("+")[0] != want:
        print(f"WARNING: pip replaced torch {want} with {versions['torch']} in {venv} "
              f"({peer} pins a torch range without it); the comparison is no longer same-torch", flush=True)
    return versions


# -- running ---------------------------------------------------------------------------------
def run_one(lib: str, case: Case, seed: int, steps: int, threads: int, sb3_python: Path) -> dict[str, Any]:
    """One measured run in a fresh interpreter; returns the runner's result line."""
    run_dir = WORK / "runs" / f"{case.algo}-{case.task}-{lib}-s{seed}-{os.getpid()}"
    spec = {"algo": case.algo, "env": case.task, "seed": seed, "threads": threads, "steps": steps, "mode": case.mode,
            "hp": case.hp, "eval_episodes": EVAL_EPISODES, "eval_seed_offset": EVAL_SEED_OFFSET,
            "threshold": case.threshold, "eval_every": case.eval_every, "run_dir": str(run_dir)}
    python, script = (sys.executable, "_polyrl_runner.py") if lib == "polyrl" else (str(sb3_python), "_sb3_runner.py")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), PYTHONHASHSEED="0")
    env.pop("PYTHONPATH", None)
    log = WORK / "logs" / f"{case.algo}-{case.task}-{lib}-s{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    load = BackgroundLoad()
    proc = subprocess.run([python, str(HERE / script), json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=str(HERE), timeout=RUN_TIMEOUT_S)
    background = load.cores()
    log.write_text(f"$ {python} {script} '{json.dumps(spec)}'\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{lib} run {case.key} seed {seed} failed (exit {proc.returncode}); log: {log}\n{tail}")
    result = json.loads(lines[-1])
    result["background_load"] = background
    return result


class BackgroundLoad:
    """CPU used by other processes while a run is going on, in cores (None where /proc/stat is missing).

    Machine-wide busy CPU time minus the run's own (its rusage): anything well
    above 0 means something else competed for the 2 cores and skewed the run.
    """

    def __init__(self) -> None:
        self.busy, self.children, self.t0 = _busy_cpu_s(), _children_cpu_s(), time.perf_counter()

    def cores(self) -> float | None:
        busy = _busy_cpu_s()
        if busy is None or self.busy is None:
            return None
        others = (busy - self.busy) - (_children_cpu_s() - self.children)
        return round(max(others, 0.0) / max(time.perf_counter() - self.t0, 1e-9), 2)


def _busy_cpu_s() -> float | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def median_or_none(values: list[float | None], missing_is_inf: bool) -> float | None:
    """Median of the seeds' values, or None.

    With ``missing_is_inf`` (seconds-to-threshold) a missing value, i.e. an unsolved
    seed, counts as +inf, so the median is None when most seeds did not solve.
    """
    if missing_is_inf:
        values = [math.inf if v is None else v for v in values]
    values = [v for v in values if v is not None]
    if not values:
        return None
    m = statistics.median(values)
    return None if math.isinf(m) else m


def make_records(case: Case, runs: dict[str, list[dict[str, Any]]], seeds: list[int], steps: int, command: str,
                 peer_name: str, date: str, threads: int) -> list[dict[str, Any]]:
    records = []
    for metric in case.metrics:
        values = {lib: [r.get(metric.key) for r in runs[lib]] for lib in ("polyrl", "sb3")}
        missing_is_inf = not metric.higher_is_better
        ours, peer = median_or_none(values["polyrl"], missing_is_inf), median_or_none(values["sb3"], missing_is_inf)
        ratio = None
        if ours is not None and peer is not None and ours > 0 and peer > 0:
            ratio = ours / peer if metric.higher_is_better else peer / ours
        rec: dict[str, Any] = {
            "task": case.task, "algo": case.algo, "metric": metric.name, "higher_is_better": metric.higher_is_better,
            "polyrl": _round(ours, metric.digits), "peer": _round(peer, metric.digits), "peer_name": peer_name,
            "ratio": _round(ratio, 2), "repeats": len(seeds), "seeds": seeds, "budget": budget_text(case, steps),
            "command": command, "date": date, "torch_threads": threads, "notes": NOTES[metric.name],
            "runs": {"polyrl": [_round(v, metric.digits) for v in values["polyrl"]],
                     "peer": [_round(v, metric.digits) for v in values["sb3"]]},
            "max_background_load": max((r.get("background_load") or 0.0 for lib in runs for r in runs[lib]), default=0.0),
        }
        if metric is RETURN:
            # Returns can be negative (Pendulum), where a ratio means nothing: give the difference instead.
            rec["difference"] = _round(ours - peer, 1) if ours is not None and peer is not None else None
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


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)


def summarize(lib: str, case: Case, res: dict[str, Any]) -> str:
    if case.mode == "threshold":
        s = res["seconds_to_threshold"]
        solved = f"solved in {s:.1f} s train time at step {res['steps_to_threshold']}" if res["solved"] else "not solved"
        return f"{lib:6s} {solved} (eval {res['eval_s']:.1f} s)"
    ups, sps = res.get("updates_per_s") or 0.0, res.get("steps_per_s") or 0.0
    return (f"{lib:6s} {ups:7.1f} updates/s {sps:8.1f} steps/s  return {res['eval_return']:8.1f}  "
            f"total {res['total_s']:.1f} s")


# -- results file and BENCHMARKS.md ------------------------------------------------------------
def machine_info(threads: int) -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "torch": torch_version(), "torch_threads": threads,
            "python": platform.python_version(), "os": platform.platform(terse=True)}


def merge_results(path: Path, new: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any]:
    order = {(c.task, c.algo, m.name): i for i, (c, m) in enumerate((c, m) for c in CASES for m in c.metrics)}
    data = dict(header, records=merged_records(path, new, lambda r: order.get(record_key(r), len(order)))[1])
    write_results(path, data)
    return data


METRIC_TEXT = {"updates_per_s": "gradient updates/s", "steps_per_s": "env steps/s", "return": "return at budget",
               "seconds_to_475": "seconds to return 475"}


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def render_markdown(data: dict[str, Any], source: Path) -> str:
    m = data.get("machine", {})
    peers = sorted({r["peer_name"] for r in data["records"]})
    dates = sorted({r.get("date", data.get("date", "")) for r in data["records"]})
    lines = [
        START,
        "## Online RL: polyrl vs Stable-Baselines3",
        "",
        f"Generated by `python benchmarks/online.py` from `{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source}`"
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
        ours, peer = _fmt(r["polyrl"]), _fmt(r["peer"])
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
        END,
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


def write_markdown(path: Path, block: str) -> None:
    write_section(path, START, END, block)


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", help="env id(s) to run (repeat or comma-separate; default: all)")
    p.add_argument("--algo", action="append", help="algorithm(s) to run: sac, ppo, td3, dqn (default: all)")
    p.add_argument("--repeats", type=int, default=None, help="seeds per case (default 3; 1 with --quick)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both libraries (default 1)")
    p.add_argument("--quick", action="store_true", help="smoke run with tiny budgets; writes under benchmarks/.work/")
    p.add_argument("--render", action="store_true", help="only regenerate the markdown table from the results JSON")
    p.add_argument("--setup", action="store_true", help="only create/check the SB3 virtualenv")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--sb3-venv", type=Path, default=SB3_VENV, help=f"SB3 virtualenv (default {SB3_VENV.relative_to(ROOT)})")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/online.json)")
    p.add_argument("--markdown", type=Path, default=None, help="markdown file to update (default BENCHMARKS.md)")
    return p.parse_args(argv)


def _split(values: list[str] | None) -> set[str] | None:
    return None if not values else {v.strip().lower() for item in values for v in item.split(",") if v.strip()}


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
    out = args.out or (WORK / "online-quick.json" if args.quick else RESULTS)
    md = args.markdown or (WORK / "BENCHMARKS-quick.md" if args.quick else MARKDOWN)
    if args.list:
        for c in CASES:
            print(f"{c.task:12s} {c.algo:4s} {c.steps:>7d} steps (quick {c.quick_steps}): "
                  f"{', '.join(m.name for m in c.metrics)}")
        return
    if args.render:
        write_markdown(md, render_markdown(json.loads(out.read_text()), out))
        print(f"wrote {md}")
        return
    try:
        import polyrl
    except ImportError:
        raise SystemExit("polyrl is not importable here: run this with the interpreter polyrl is installed in") from None

    versions = ensure_venv(args.sb3_venv, "stable-baselines3", SB3_PACKAGES, probe_sb3)
    peer_name = f"stable-baselines3 {versions['sb3']}"
    print(f"SB3 venv: {args.sb3_venv} ({json.dumps(versions)})", flush=True)
    if args.setup:
        return

    cases = select_cases(_split(args.task), _split(args.algo))
    repeats = args.repeats or (1 if args.quick else 3)
    seeds = list(range(repeats))
    date = datetime.date.today().isoformat()
    header = {"benchmark": "online", "polyrl_version": polyrl.__version__, "machine": machine_info(args.threads),
              "date": date, "peer_versions": versions}
    eta = sum(2 * repeats * estimate_s(c, c.quick_steps if args.quick else c.steps) for c in cases)
    print(f"{len(cases)} case(s) x {repeats} seed(s) x 2 libraries, {args.threads} torch thread(s); "
          f"rough estimate {eta / 60:.0f} min", flush=True)
    started = time.perf_counter()
    for case in cases:
        steps = case.quick_steps if args.quick else case.steps
        runs: dict[str, list[dict[str, Any]]] = {"polyrl": [], "sb3": []}
        print(f"\n== {case.algo.upper()} {case.task}: {budget_text(case, steps)}", flush=True)
        for seed in seeds:
            for lib in ("polyrl", "sb3"):  # alternate: polyrl, sb3, polyrl, sb3, ...
                t = time.perf_counter()
                res = run_one(lib, case, seed, steps, args.threads, venv_python(args.sb3_venv))
                runs[lib].append(res)
                print(f"  seed {seed} {summarize(lib, case, res)}  [{time.perf_counter() - t:.0f} s wall]", flush=True)
                if (res["background_load"] or 0.0) > BUSY_WARNING:
                    print(f"  WARNING: other processes used {res['background_load']:.2f} cores during this run; "
                          "its timing is skewed (run on an idle machine)", flush=True)
        records = make_records(case, runs, seeds, steps, command_for(case, args, repeats), peer_name, date,
                               args.threads)
        for r in records:
            print(f"  -> {r['metric']}: polyrl {_fmt(r['polyrl'])}  sb3 {_fmt(r['peer'])}  "
                  f"ratio {r['ratio'] if r['ratio'] is not None else r.get('difference')}", flush=True)
        data = merge_results(out, records, header)  # written after every case: a partial run keeps what it measured
        write_markdown(md, render_markdown(data, out))
    print(f"\nwrote {out} and {md} in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
