"""Multi-objective RL: polyrl's C-MORL vs morl-baselines' GPI-LS and PGMORL, same env-step budgets.

    python benchmarks/morl.py --jobs 2            # 3 tasks x 3 seeds (~80 min on an idle 2-core machine, estimated)
    python benchmarks/morl.py --quick --jobs 2    # smoke run, a few minutes; writes under benchmarks/.work/
    python benchmarks/morl.py --task minecart-v0 --method cmorl,gpi_ls --seeds 1
    python benchmarks/morl.py --list              # the runs, budgets and a rough time estimate
    python benchmarks/morl.py --setup             # only create/check the morl-baselines virtualenv
    python benchmarks/morl.py --render            # only regenerate the BENCHMARKS.md section from the JSON

Every method learns the task's env-step budget (``TASKS``) with the same seeds;
its final set of policies is scored with the same code (``polyrl.morl``):
hypervolume w.r.t. the task's reference point, expected utility over a
simplex grid of preferences, sparsity, front size, and training wall-clock. On
Deep Sea Treasure the harness also counts how many of the known Pareto-optimal
points each method found, and how many of those lie off the convex hull (the
ones linear scalarisation cannot reach).

**One evaluation protocol for every method**: a policy's value is the mean
*undiscounted* vector return of ``eval_episodes`` episodes with *deterministic*
actions. C-MORL is run with ``eval_gamma=1`` and ``archive_episodes`` = the task's
``eval_episodes``, so the archive it writes to ``pareto.json`` holds such values; PGMORL's archive
is built from the same evaluation (``_morl_baselines_runner.py`` replaces
morl-baselines' sampled, discounted one); GPI-LS's single weight-conditioned
policy is evaluated this way at every weight of a simplex grid. A method's
front is the non-dominated subset of those values. One exception, on Minecart:
C-MORL's PPO policies act by sampling there (``deterministic_eval=False``, see
``CMORL_MINECART``), and its archived policies are re-measured on fresh
episodes after training; GPI-LS keeps its greedy policy.

morl-baselines lives in its own virtualenv (``benchmarks/.venvs/morl``, created
here on first use: torch pinned to polyrl's release first, then
``morl-baselines mo-gymnasium[mujoco]``) and never touches the polyrl
environment. Each run is a fresh subprocess with one torch thread writing
``benchmarks/.work/morl/<full|quick>/<run>/{log.txt,result.json}``; a rerun skips
runs whose result exists for the same spec. Results merge into
``benchmarks/results/morl.json`` and the section between ``<!-- morl:start -->``
and ``<!-- morl:end -->`` of ``BENCHMARKS.md``; front plots go to
``benchmarks/results/morl/<task>.png``.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    HERE,
    WORK,
    Harness,
    Peer,
    add_flags,
    child_env,
    exit_if_failed,
    median_or_none,
    plan_line,
    ratio,
    reuse_finished,
    round_or_none,
    run_failed,
    run_jobs,
    run_to_log,
    shown_path,
    split_csv,
    today,
    venv_python,
)

PLOTS = HERE / "results" / "morl"
RUNNER = HERE / "_morl_baselines_runner.py"
RUN_TIMEOUT_S = 4 * 3600
EVAL_SEED_OFFSET = 10_000
MATCH_TOL = 1e-3  # a found DST point matches a known one when both objectives agree within this
FLAGSHIP = "cmorl"
PEERS = ("gpi_ls", "pgmorl")
METHOD_NAMES = {"cmorl": "C-MORL (polyrl)", "gpi_ls": "GPI-LS", "pgmorl": "PGMORL"}


# -- the tasks: budgets and settings said once for every method ---------------------------------------
@dataclass(frozen=True)
class Task:
    env_id: str
    ref_point: tuple[float, ...]
    ref_source: str
    steps: int  # env-step budget of every method (full run)
    quick_steps: int
    eval_episodes: int
    front_divisions: int  # GPI-LS is evaluated at simplex_grid(M, front_divisions)
    methods: tuple[str, ...]
    cmorl: dict[str, Any] = field(default_factory=dict)  # C-MORL config fields besides the shared ones
    gpi_ls: dict[str, Any] = field(default_factory=dict)
    known_front: bool = False  # mo-gymnasium publishes the true front (Deep Sea Treasure)
    est_steps_per_s: dict[str, float] = field(default_factory=dict)  # rough, for --list (1 core, idle machine)
    objective_names: tuple[str, ...] | None = None  # axis labels of the front plot
    default: bool = True


# C-MORL at these budgets: small rollouts so each member gets tens of updates (the spec's 512 x 8 envs fits
# budgets in the millions). These follow the lead's tuning runs on DST; revisit when C-MORL's defaults settle.
CMORL_SMALL = {"population": 4, "n_envs": 2, "n_steps": 128, "n_minibatches": 4, "archive_every": 2}
# Deep Sea Treasure's episodes are short: the paper's 6 preferences, one env copy each and 64-step rollouts give
# every member ~100 updates in 40k steps. Chosen from one pilot run per setting on seed 0 at the benchmark budget
# (CMORL_SMALL: 7 of 10 front points; this: 10 of 10) -- rollout sizing only, the algorithm's settings are the spec's.
CMORL_DST = {"population": 6, "n_envs": 1, "n_steps": 64, "n_minibatches": 2, "archive_every": 2}
# Minecart: the authors' gamma (0.98, scripts/minecart.py of their code) and sampled actions when C-MORL evaluates
# and serves its policies. The modes of its PPO policies at this budget get stuck (a pilot on seed 0: the archive held
# one point, "leave the base and come straight back", HV 200; a plain PPO on the ore-1 objective reached 0.6 ore per
# training episode by 100k steps while its mode collected none); sampled, the same budget gives a front that mines.
# The archive's values are then re-measured on fresh episodes (see run_polyrl). Rollout sizing: DST's, chosen from
# pilot runs on seeds 100 and 101 (not the benchmark's seeds), re-measured HV: CMORL_SMALL 478 / 519, DST's 580 / 583,
# population 4 x 1 env x 128 steps 603 / 448.
CMORL_MINECART = dict(CMORL_DST, gamma=0.98, deterministic_eval=False)
# GPI-LS, discrete actions: the Minecart example of morl-baselines (examples/gpi_pd_minecart.py): 4 x 256 nets,
# batch 128, buffer 2e5, epsilon 1 -> 0.05 over a third of the budget, hard target update every 200 steps.
# Deviations, both for the 2-core CPU budget: gradient_updates=1 (the class default is 20; GPI-LS's update
# costs ~15-20 ms here) and 2 evaluation episodes per weight inside GPI-LS's own weight selection.
# per=True is the class default (per=False, the example's GPI-LS setting, fails in 1.3.0 when sampling).
GPI_DISCRETE = {"learning_rate": 3e-4, "batch_size": 128, "net_arch": [256, 256, 256, 256], "buffer_size": 200_000,
                "initial_epsilon": 1.0, "final_epsilon": 0.05, "learning_starts": 100, "target_net_update_freq": 200,
                "tau": 1.0, "gradient_updates": 1, "use_gpi": True}
# GPI-LS, continuous actions: morl-baselines' examples/train_gpi-ls.py (lr 3e-4, gamma 0.99, batch 256, 1 update/step).
GPI_CONTINUOUS = {"learning_rate": 3e-4, "gamma": 0.99, "batch_size": 256, "gradient_updates": 1}
GPI_ITERATIONS = 8  # GPI-LS weight-selection iterations over the budget (timesteps_per_iter = steps / 8)
# --quick: besides the tiny budgets, 1 evaluation episode, 2 GPI-LS iterations and coarse GPI-LS weight grids,
# since evaluation (1000-step episodes of untrained policies) would otherwise dominate a smoke run.
QUICK = {"eval_episodes": 1, "gpi_iterations": 2, "front_divisions": 4}

TASKS: dict[str, Task] = {t.env_id: t for t in (
    Task("deep-sea-treasure-concave-v0", (0.0, -25.0),
         "morl-baselines' DST examples and tests use [0, -25]", steps=40_000, quick_steps=2_000, eval_episodes=1,
         front_divisions=100, methods=("cmorl", "gpi_ls"), cmorl=CMORL_DST,
         gpi_ls=dict(GPI_DISCRETE, gamma=0.99), known_front=True,
         est_steps_per_s={"cmorl": 400.0, "gpi_ls": 55.0}, objective_names=("treasure", "time")),
    Task("deep-sea-treasure-v0", (0.0, -25.0),
         "morl-baselines' DST examples and tests use [0, -25]", steps=40_000, quick_steps=2_000, eval_episodes=1,
         front_divisions=100, methods=("cmorl", "gpi_ls"), cmorl=CMORL_SMALL,
         gpi_ls=dict(GPI_DISCRETE, gamma=0.99), known_front=True,
         est_steps_per_s={"cmorl": 400.0, "gpi_ls": 55.0}, objective_names=("treasure", "time"), default=False),
    Task("minecart-v0", (-1.0, -1.0, -200.0),
         "the issue's choice; morl-baselines' Minecart example uses [0, 0, -200]", steps=40_000, quick_steps=2_000,
         eval_episodes=10, front_divisions=6, methods=("cmorl", "gpi_ls"), cmorl=CMORL_MINECART,
         gpi_ls=dict(GPI_DISCRETE, gamma=0.98), est_steps_per_s={"cmorl": 250.0, "gpi_ls": 40.0},
         objective_names=("ore 1", "ore 2", "fuel")),
    Task("mo-hopper-2obj-v5", (-100.0, -100.0),
         "morl-baselines' examples/train_gpi-ls.py uses [-100] * M for MuJoCo", steps=50_000, quick_steps=3_072,
         eval_episodes=5, front_divisions=20, methods=("cmorl", "gpi_ls", "pgmorl"), cmorl=CMORL_SMALL,
         gpi_ls=GPI_CONTINUOUS, est_steps_per_s={"cmorl": 400.0, "gpi_ls": 50.0, "pgmorl": 1000.0}),
)}
DEFAULT_SEEDS = 3


def pgmorl_config(steps: int) -> dict[str, Any]:
    """morl-baselines' PGMORL defaults (4 envs, population 6, 64x64, 10 epochs x 32 minibatches, delta_weight 0.2,
    7 weight candidates, 100 x 2 performance buffers) with a shorter PPO rollout and the warm-up / evolution split
    scaled to the budget.

    PGMORL runs ``max(steps // (rollout x envs x population), warmup + evolutionary)`` iterations, so with its
    defaults (2048-step rollouts, 80 + 20 iterations) it would take ~4.9M steps whatever the budget. Here the
    rollout is sized for about 10 iterations (at most 256 steps, at least 32) and 80% of the iterations are
    warm-up (as in the defaults' 80 / 20).
    """
    envs, population = 4, 6
    rollout = max(32, min(256, steps // (envs * population * 10)))
    iterations = max(2, steps // (rollout * envs * population))
    warmup = max(1, round(0.8 * iterations))
    return {"num_envs": envs, "pop_size": population, "steps_per_iteration": rollout, "warmup_iterations": warmup,
            "evolutionary_iterations": max(1, iterations - warmup)}


# -- the morl-baselines virtualenv ---------------------------------------------------------------------
MORL_BASELINES = Peer("morl-baselines", "morl-baselines", "morl", ("morl-baselines", "mo-gymnasium[mujoco]"),
                      "import os; os.environ['WANDB_MODE'] = 'disabled'\n"
                      "import json, importlib.metadata as md, mo_gymnasium, torch, morl_baselines.multi_policy.pgmorl.pgmorl, "
                      "morl_baselines.multi_policy.gpi_pd.gpi_pd_continuous_action\n"
                      "mo_gymnasium.make('mo-hopper-2obj-v5').close()\n"
                      "print(json.dumps({'morl_baselines': md.version('morl-baselines'), 'mo_gymnasium': md.version('mo-gymnasium'), "
                      "'torch': torch.__version__, 'gymnasium': md.version('gymnasium'), 'mujoco': md.version('mujoco')}))")
HARNESS = Harness("morl", peer=MORL_BASELINES)


# -- runs --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    task: str
    method: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}-{self.method}-s{self.seed}"


def plan(tasks: list[str], methods: list[str], seeds: int) -> list[Run]:
    """Per task and seed: C-MORL, then each peer (alternating libraries)."""
    return [Run(t, m, s) for t in tasks for s in range(seeds) for m in TASKS[t].methods if m in methods]


def run_spec(run: Run, steps: int, work: Path, threads: int, quick: bool) -> dict[str, Any]:
    from polyrl.morl import simplex_grid

    task = TASKS[run.task]
    d = work / run.key
    episodes = QUICK["eval_episodes"] if quick else task.eval_episodes
    spec: dict[str, Any] = {"method": run.method, "env": task.env_id, "seed": run.seed, "steps": steps,
                            "threads": threads, "eval_episodes": episodes, "ref_point": list(task.ref_point),
                            "result_path": str(d / "result.json")}
    if run.method == "cmorl":
        # Lists, not tuples, everywhere in a spec: it is compared with its JSON round trip to reuse results.
        spec["config"] = dict(task.cmorl, eval_gamma=1.0, archive_episodes=episodes,
                              ref_point=list(task.ref_point))
        spec["run_dir"] = str(d / "run")
    elif run.method == "gpi_ls":
        m = len(task.ref_point)
        hp = dict(task.gpi_ls)
        if "initial_epsilon" in hp:
            hp["epsilon_decay_steps"] = max(1, steps // 3)
        iterations = QUICK["gpi_iterations"] if quick else GPI_ITERATIONS
        hp["train"] = {"timesteps_per_iter": max(1, steps // iterations),
                       "num_eval_episodes_for_front": min(episodes, 2)}
        divisions = min(task.front_divisions, QUICK["front_divisions"]) if quick else task.front_divisions
        spec.update(algo="gpi_ls", hp=hp, eval_seed_offset=EVAL_SEED_OFFSET,
                    front_weights=simplex_grid(m, divisions).tolist())
    elif run.method == "pgmorl":
        spec.update(algo="pgmorl", hp=pgmorl_config(steps), eval_seed_offset=EVAL_SEED_OFFSET)
    spec["out"] = spec["result_path"]
    return spec


def execute(spec: dict[str, Any], morl_python: Path) -> dict[str, Any]:
    """Run one spec in a fresh interpreter (polyrl's for C-MORL, the morl venv's for the peers), logging to log.txt."""
    path = Path(spec["result_path"])
    if spec["method"] == "cmorl":
        import polyrl

        # the child imports this same polyrl
        env = child_env(spec["threads"], Path(polyrl.__file__).resolve().parent.parent, WANDB_MODE="disabled")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--run-polyrl", json.dumps(spec)]
    else:
        env = child_env(spec["threads"], WANDB_MODE="disabled")
        cmd = [str(morl_python), str(RUNNER), json.dumps(spec)]
    returncode = run_to_log(cmd, f"{' '.join(cmd[:2])} '{json.dumps(spec)}'", path, env, RUN_TIMEOUT_S)
    if returncode != 0 or not path.exists():
        raise run_failed(path, returncode)
    res = json.loads(path.read_text())
    res["spec"] = spec  # what makes the result reusable by a rerun with the same spec
    path.write_text(json.dumps(res, indent=2) + "\n")
    return res


def run_polyrl(spec: dict[str, Any]) -> None:
    """The C-MORL side, inside its own process: learn, then read the archive C-MORL wrote to ``pareto.json``."""
    import torch

    import polyrl

    torch.set_num_threads(spec["threads"])
    run_dir = Path(spec["run_dir"])
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    config = dict(spec["config"], ref_point=tuple(spec["config"]["ref_point"]))
    agent = polyrl.make("cmorl", env=spec["env"], seed=spec["seed"], run_dir=run_dir, **config)
    # Periodic evaluation off (C-MORL evaluates its own snapshots); the closing one uses a single episode.
    agent.learn(spec["steps"], progress=False, eval_every=0, eval_episodes=1, tensorboard=False)
    train_s = time.perf_counter() - t0
    pareto = run_dir / "pareto.json"
    if not pareto.exists():
        raise SystemExit(f"C-MORL wrote no {pareto}; the harness reads the archive from it")
    front = json.loads(pareto.read_text())
    if front.get("eval_gamma", 1.0) != 1.0:
        raise SystemExit(f"{pareto} holds eval_gamma={front['eval_gamma']} values; the benchmark protocol is undiscounted")
    from polyrl.morl import non_dominated

    values = [list(map(float, v)) for v in front["values"]]
    if not config.get("deterministic_eval", True):
        # Sampled actions: the archive kept the luckiest of many noisy estimates, so every archived policy is
        # measured again on fresh episodes (the peers' fronts are also measured after training).
        values = [[float(x) for x in agent.evaluate_policy(policy, spec["eval_episodes"], seed=spec["seed"] + EVAL_SEED_OFFSET
                                                            ).mean_vector] for _, _, policy in agent.algo.archive_policies()]
    kept = [v for v, k in zip(values, non_dominated(values) if values else []) if k]
    out = {"values": kept, "all_values": values, "ref_point": front.get("ref_point"), "train_s": train_s,
           "env_steps": int(agent.algo.env_steps), "lib": "polyrl", "version": polyrl.__version__, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "algo": "cmorl", "env": spec["env"], "seed": spec["seed"],
           "budget_steps": spec["steps"]}
    for key in ("stages", "ids"):
        if key in front:
            out[key] = front[key]
    path = Path(spec["result_path"])
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("train_s", "env_steps")} | {"front_size": len(kept)}), flush=True)


# -- scoring -----------------------------------------------------------------------------------------
def known_front(env_id: str) -> list[list[float]]:
    """The true (undiscounted) Pareto front of a Deep Sea Treasure map, as (treasure value, -steps) pairs.

    mo-gymnasium's ``pareto_front(gamma=1)``: for ``deep-sea-treasure-v0`` the 10 points of Vamplew et al. (2011,
    "Empirical evaluation methods for multiobjective reinforcement learning algorithms", Machine Learning 84),
    ``CONVEX_FRONT`` in mo-gymnasium's source; for ``deep-sea-treasure-concave-v0`` its ``CONCAVE_FRONT``.
    """
    import mo_gymnasium as mo_gym

    env = mo_gym.make(env_id)
    front = [[float(x) for x in p] for p in env.unwrapped.pareto_front(gamma=1.0)]
    env.close()
    return front


def supported_mask(points: list[list[float]]) -> list[bool]:
    """Which points of a 2-objective front maximise ``w . G`` over the front for some ``w`` on the simplex.

    Exact: point ``i`` wins against ``j`` for ``w`` (weight on objective 1; ``1 - w`` on objective 2) iff
    ``w (dx - dy) >= -dy`` with ``(dx, dy) = G_i - G_j``; the winning ``w`` form an interval, and ``i`` is
    supported (on the convex hull, reachable by linear scalarisation) iff the intersection over ``j`` is non-empty.
    """
    out = []
    for i, p in enumerate(points):
        lo, hi = 0.0, 1.0
        for j, q in enumerate(points):
            if i == j:
                continue
            dx, dy = p[0] - q[0], p[1] - q[1]
            a, b = dx - dy, -dy
            if a > 0:
                lo = max(lo, b / a)
            elif a < 0:
                hi = min(hi, b / a)
            elif b > 0:
                lo, hi = 1.0, 0.0
        out.append(lo <= hi + 1e-12)
    return out


def score_run(task: Task, res: dict[str, Any]) -> dict[str, Any]:
    """The metrics of one run's front, computed by polyrl.morl for every method alike."""
    import numpy as np

    from polyrl.morl import expected_utility, hypervolume, sparsity

    vals = np.asarray(res["values"], dtype=float).reshape(-1, len(task.ref_point))
    out: dict[str, Any] = {
        "hypervolume": float(hypervolume(vals, task.ref_point)) if len(vals) else 0.0,
        "expected_utility": float(expected_utility(vals)) if len(vals) else None,
        "sparsity": float(sparsity(vals)),
        "front_size": int(len(vals)),
        "wall_s": float(res["train_s"]),
    }
    if task.known_front:
        known = known_front(task.env_id)
        support = supported_mask(known)
        found = [bool(len(vals)) and bool(np.abs(vals - np.asarray(k)).max(axis=1).min() < MATCH_TOL) for k in known]
        out["known_points_found"] = int(sum(found))
        out["unsupported_points_found"] = int(sum(f and not s for f, s in zip(found, support)))
        out["found"] = found
    return out


METRICS: dict[str, dict[str, Any]] = {
    "hypervolume": {"hib": True, "mode": "ratio", "digits": 2},
    "expected_utility": {"hib": True, "mode": "difference", "digits": 3},
    "sparsity": {"hib": False, "mode": "ratio", "digits": 3},
    "front_size": {"hib": True, "mode": "difference", "digits": 1},
    "wall_s": {"hib": False, "mode": "ratio", "digits": 0},
    "known_points_found": {"hib": True, "mode": "difference", "digits": 1},
    "unsupported_points_found": {"hib": True, "mode": "difference", "digits": 1},
}
NOTES = {
    "hypervolume": "exact hypervolume of the front w.r.t. the task's reference point (polyrl.morl.hypervolume)",
    "expected_utility": "mean over simplex_grid(M, 0.05) preferences w of max over the front of w . G; "
                        "'difference' = polyrl - peer",
    "sparsity": "PGMORL/C-MORL sparsity of the front on raw returns, lower is denser (a front of one point scores 0)",
    "front_size": "non-dominated points in the method's final set of policies",
    "wall_s": "training wall-clock in seconds, one torch thread, the method's own evaluations included (GPI-LS's "
              "final front evaluation is not)",
    "known_points_found": "points of the known Pareto front (mo-gymnasium, undiscounted) matched by the front "
                          f"(treasure and time within {MATCH_TOL:g})",
    "unsupported_points_found": "found known points that are not on the front's convex hull, i.e. that no linear "
                                "scalarisation reaches",
}


def budget_text(task: Task, steps: int, quick: bool) -> str:
    episodes = QUICK["eval_episodes"] if quick else task.eval_episodes
    acting = "C-MORL sampled, GPI-LS greedy" if not task.cmorl.get("deterministic_eval", True) else "deterministic"
    return f"{steps} env steps, {episodes}-episode {acting} undiscounted evaluations"


def command_for(task: str, peer: str, args: argparse.Namespace, seeds: int) -> str:
    cmd = f"python benchmarks/morl.py --task {task} --method cmorl,{peer}"
    if seeds != DEFAULT_SEEDS:
        cmd += f" --seeds {seeds}"
    if args.steps_scale != 1.0:
        cmd += f" --steps-scale {args.steps_scale:g}"
    return cmd + (" --quick" if args.quick else "")


def make_records(task: Task, results: dict[str, dict[int, dict[str, Any]]], scores: dict[str, dict[int, dict[str, Any]]],
                 steps: int, args: argparse.Namespace, date: str, versions: dict[str, str]) -> list[dict[str, Any]]:
    """One record per (peer, metric): C-MORL's median over the seeds both have finished against the peer's.

    ``algo`` is ``"cmorl"`` (so C-MORL's docs page lists the records) and ``metric`` names the peer
    (``hypervolume_vs_gpi_ls``), which keeps ``(task, algo, metric)`` unique; ``base_metric`` and
    ``peer_algo`` hold the two parts.
    """
    records = []
    for peer in PEERS:
        if peer not in scores or FLAGSHIP not in scores:
            continue
        seeds = sorted(set(scores[FLAGSHIP]) & set(scores[peer]))
        if not seeds:
            continue
        n = len(seeds)
        for metric, m in METRICS.items():
            if metric not in scores[FLAGSHIP][seeds[0]]:
                continue
            ours_runs = [scores[FLAGSHIP][s][metric] for s in seeds]
            peer_runs = [scores[peer][s][metric] for s in seeds]
            ours, theirs = median_or_none(ours_runs, False), median_or_none(peer_runs, False)
            rec: dict[str, Any] = {
                "task": task.env_id, "algo": FLAGSHIP, "metric": f"{metric}_vs_{peer}", "base_metric": metric,
                "peer_algo": peer, "higher_is_better": m["hib"],
                "polyrl": round_or_none(ours, m["digits"]), "peer": round_or_none(theirs, m["digits"]),
                "peer_name": f"morl-baselines {versions.get('morl_baselines', '?')} {METHOD_NAMES[peer]}",
                "ratio": None, "repeats": n, "seeds": seeds, "budget": budget_text(task, steps, args.quick),
                "command": command_for(task.env_id, peer, args, n), "date": date, "notes": NOTES[metric],
                "runs": {"polyrl": [round_or_none(v, m["digits"]) for v in ours_runs],
                         "peer": [round_or_none(v, m["digits"]) for v in peer_runs]},
                "env_steps": {"polyrl": [results[FLAGSHIP][s]["env_steps"] for s in seeds],
                              "peer": [results[peer][s]["env_steps"] for s in seeds]},
                "ref_point": list(task.ref_point), "ref_point_source": task.ref_source,
            }
            if m["mode"] == "ratio":
                rec["ratio"] = round_or_none(ratio(ours, theirs, m["hib"]), 2)
            if ours is not None and theirs is not None:
                rec["difference"] = round_or_none(ours - theirs, m["digits"])
            if metric == "hypervolume":
                rec["target"] = "C-MORL hypervolume >= the baseline's (median over seeds)"
                rec["target_met"] = bool(ours is not None and theirs is not None and ours >= theirs)
            if metric == "known_points_found":
                rec["known_front_size"] = len(known_front(task.env_id))
                rec["unsupported_known_points"] = int(sum(not s for s in supported_mask(known_front(task.env_id))))
            records.append(rec)
    return records


def _order(r: dict[str, Any]) -> tuple[int, int, int]:
    tasks = list(TASKS)
    return (tasks.index(r["task"]) if r["task"] in tasks else 99,
            PEERS.index(r.get("peer_algo")) if r.get("peer_algo") in PEERS else 99,
            list(METRICS).index(r.get("base_metric")) if r.get("base_metric") in METRICS else 99)


def plot_task(task: Task, results: dict[str, dict[int, dict[str, Any]]], path: Path) -> Path | None:
    """The lowest common seed's fronts of every method on one figure (None until C-MORL has a non-empty front)."""
    from polyrl.morl import plot_front

    if FLAGSHIP not in results:
        return None
    seed = min(results[FLAGSHIP])
    fronts = {METHOD_NAMES[m]: rs[seed]["values"] for m, rs in results.items() if seed in rs and rs[seed]["values"]}
    if METHOD_NAMES[FLAGSHIP] not in fronts:
        return None
    main = fronts.pop(METHOD_NAMES[FLAGSHIP])
    if task.known_front:
        fronts["known Pareto front"] = known_front(task.env_id)
    return plot_front(main, path, ref_point=task.ref_point, label=METHOD_NAMES[FLAGSHIP], overlays=fronts,
                      title=f"{task.env_id}: fronts of seed {seed}", objective_names=task.objective_names)


# -- BENCHMARKS.md ------------------------------------------------------------------------------------
def _cell(value: float | None, runs: list[float | None], digits: int) -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.{digits}f}"
    vals = [v for v in runs if v is not None]
    if len(vals) > 1:
        text += f" [{min(vals):,.{digits}f}, {max(vals):,.{digits}f}]"
    return text


METRIC_TEXT = {"hypervolume": "hypervolume", "expected_utility": "expected utility", "sparsity": "sparsity (lower is denser)",
               "front_size": "front size", "wall_s": "training wall-clock (s)",
               "known_points_found": "known Pareto points found", "unsupported_points_found": "... of them off the convex hull"}


def render_markdown(data: dict[str, Any], source: Path) -> str:
    m = data.get("machine", {})
    recs = data["records"]
    dates = sorted({r.get("date", data.get("date", "")) for r in recs})
    src = shown_path(source)
    peers = sorted({r["peer_name"] for r in recs})
    lines = [
        HARNESS.start,
        "## Multi-objective RL: C-MORL vs morl-baselines (GPI-LS, PGMORL)",
        "",
        f"Generated by `python benchmarks/morl.py` from `{src}` (do not edit by hand; `--render` rebuilds it). "
        f"Date: {', '.join(dates)}. Machine: {m.get('cpus')} CPUs ({m.get('cpu_model', '?')}), torch {m.get('torch')} "
        f"with 1 thread per run, Python {m.get('python')}, polyrl {data.get('polyrl_version')}. "
        f"Peers: {', '.join(peers)}.",
        "",
        "Every method gets the same env-step budget and seeds; its final policies are evaluated with one protocol "
        "(mean undiscounted vector return of deterministic episodes; on Minecart C-MORL's policies sample their actions) "
        "and scored by the same code. "
        "Cells are the **median [min, max] over seeds**; PGMORL needs continuous actions, so it runs on MuJoCo only.",
        "",
    ]
    tasks = sorted({r["task"] for r in recs}, key=lambda t: list(TASKS).index(t) if t in TASKS else 99)
    for t in tasks:
        by = {(r["peer_algo"], r["base_metric"]): r for r in recs if r["task"] == t}
        peers_here = [p for p in PEERS if any(k[0] == p for k in by)]
        any_rec = next(iter(by.values()))
        lines += [f"### {t}", "",
                  f"Budget: {any_rec['budget']}; seeds {any_rec['seeds']}; reference point {any_rec['ref_point']} "
                  f"({any_rec['ref_point_source']}).", ""]
        if (PLOTS / f"{t}.png").exists():
            lines += [f"![{t} fronts](benchmarks/results/morl/{t}.png)", ""]
        header = "| Metric | " + " | ".join([METHOD_NAMES[FLAGSHIP]] + [METHOD_NAMES[p] for p in peers_here]) + " | C-MORL better? |"
        lines += [header, "|" + " --- |" + " ---: |" * (1 + len(peers_here)) + " --- |"]
        for metric, spec in METRICS.items():
            row = [by.get((p, metric)) for p in peers_here]
            if not any(row):
                continue
            first = next(r for r in row if r)
            cells = [_cell(first["polyrl"], first["runs"]["polyrl"], spec["digits"])]
            verdicts = []
            for p, r in zip(peers_here, row):
                if r is None:
                    cells.append("–")
                    continue
                cells.append(_cell(r["peer"], r["runs"]["peer"], spec["digits"]))
                if r["polyrl"] is not None and r["peer"] is not None and metric not in ("front_size",):
                    better = r["polyrl"] > r["peer"] if spec["hib"] else r["polyrl"] < r["peer"]
                    tie = r["polyrl"] == r["peer"]
                    verdicts.append(f"{'=' if tie else 'yes' if better else 'no'} vs {METHOD_NAMES[p]}")
            lines.append(f"| {METRIC_TEXT[metric]} | " + " | ".join(cells) + f" | {', '.join(verdicts)} |")
        known = by.get((peers_here[0], "known_points_found")) if peers_here else None
        if known:
            lines += ["", f"The known front has {known['known_front_size']} points, "
                          f"{known['unsupported_known_points']} of them off its convex hull."]
        lines.append("")
    met = [r for r in recs if r["base_metric"] == "hypervolume"]
    if met:
        ok = sum(bool(r.get("target_met")) for r in met)
        lines += [f"Target (C-MORL's hypervolume at least each baseline's, every task): met in {ok} of {len(met)} "
                  "comparisons.", ""]
    lines += [
        "How it is measured:",
        "",
        "- **Evaluation**: a policy's value is the mean undiscounted vector return of the task's evaluation episodes "
        "(1 on Deep Sea Treasure, deterministic; 10 on Minecart; 5 elsewhere) with deterministic actions, except "
        "C-MORL on Minecart: the modes of its PPO policies get stuck there at these budgets (a seed-0 pilot archived only "
        "'leave the base and return', HV 200), so it evaluates and serves sampled actions (`deterministic_eval=False`; with DST's rollout sizing, picked on pilot seeds 100-101, "
        "the authors' gamma 0.98) and its archived policies are re-measured on 10 fresh episodes after training. C-MORL runs with "
        "`eval_gamma=1` and its archive (`pareto.json`) is its front; PGMORL's archive is built from the same "
        "evaluation (run on the observation normalisation it trains with); GPI-LS is evaluated with GPI at every "
        "weight of a simplex grid. Fronts are the non-dominated values.",
        "- **Metrics** (`polyrl.morl`): exact hypervolume; expected utility over `simplex_grid(M, 0.05)`; sparsity on "
        "raw returns; wall-clock of training with one torch thread.",
        "- **Budgets** are small (tens of thousands of env steps) because GPI-LS's update costs ~15-20 ms on this "
        "CPU; the papers use 10^5-10^7 steps. GPI-LS runs 1 gradient update per env step (class default 20) and "
        "PGMORL PPO rollouts of at most 256 steps (about 10 iterations, 80% of them warm-up); see `benchmarks/morl.py` for every setting.",
        HARNESS.end,
    ]
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", help=f"env id(s): {', '.join(TASKS)} (default: those marked default)")
    p.add_argument("--method", action="append", help="method(s): cmorl, gpi_ls, pgmorl (default: all)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds 0..N-1 (default {DEFAULT_SEEDS}; 1 with --quick)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every task's env-step budget (default 1)")
    add_flags(p, HARNESS, "jobs", "threads", "quick", "fresh", "setup", "render", "list", "venv", "out", "markdown",
              threads="torch threads per run (default 1)", list="list the runs with a rough time estimate and exit")
    p.add_argument("--run-polyrl", metavar="SPEC", help=argparse.SUPPRESS)  # internal: one C-MORL run (a subprocess)
    return p.parse_args(argv)


def task_steps(task: Task, args: argparse.Namespace) -> int:
    return int((task.quick_steps if args.quick else task.steps) * args.steps_scale)


def estimate_s(run: Run, steps: int) -> float:
    task = TASKS[run.task]
    return 15.0 + steps / task.est_steps_per_s[run.method]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.run_polyrl:
        run_polyrl(json.loads(args.run_polyrl))
        return
    out, md = HARNESS.outputs(args)
    plots = WORK / "morl-quick-plots" if args.quick else PLOTS
    if args.render:
        HARNESS.render_stored(lambda data: render_markdown(data, out), out, md, announce=True)
        return
    tasks = split_csv(args.task, lower=False) or [t for t, spec in TASKS.items() if spec.default]
    methods = split_csv(args.method, lower=False) or ["cmorl", *PEERS]
    unknown = (set(tasks) - set(TASKS)) | (set(methods) - {"cmorl", *PEERS})
    if unknown:
        raise SystemExit(f"unknown {sorted(unknown)}; tasks: {', '.join(TASKS)}; methods: cmorl, {', '.join(PEERS)}")
    seeds = args.seeds or (1 if args.quick else DEFAULT_SEEDS)
    runs = plan(tasks, methods, seeds)
    eta = sum(estimate_s(r, task_steps(TASKS[r.task], args)) for r in runs)
    if args.list:
        for r in runs:
            steps = task_steps(TASKS[r.task], args)
            print(f"{r.key:44s} {steps:>7d} env steps  ~{estimate_s(r, steps) / 60:.1f} min")
        print(f"{len(runs)} runs, ~{eta / 60:.0f} min on one core; ~{eta / 60 / 2:.0f} min with --jobs 2 on an idle "
              "2-core machine (rough: per-method env steps/s in TASKS)")
        return
    try:
        import polyrl
    except ImportError:
        raise SystemExit("polyrl is not importable here: run this with the interpreter polyrl is installed in") from None

    versions = MORL_BASELINES.ensure(args)
    if args.setup:
        return
    work = WORK / "morl" / ("quick" if args.quick else "full")
    specs = {r.key: run_spec(r, task_steps(TASKS[r.task], args), work, args.threads, args.quick) for r in runs}
    date = today()
    header = HARNESS.header(polyrl.__version__, args.threads, date, jobs=args.jobs, peer_versions=versions,
                            eval_seed_offset=EVAL_SEED_OFFSET)

    by_key = {r.key: r for r in runs}
    results, todo = reuse_finished(by_key, specs, args.fresh, 44)
    eta_todo = sum(estimate_s(by_key[k], task_steps(TASKS[by_key[k].task], args)) for k in todo)
    print(plan_line(len(runs), len(results), args.jobs, work, eta_todo), flush=True)

    def publish() -> None:
        records = []
        for t in tasks:
            task = TASKS[t]
            by_method: dict[str, dict[int, dict[str, Any]]] = {}
            for r in runs:
                if r.task == t and r.key in results:
                    by_method.setdefault(r.method, {})[r.seed] = results[r.key]
            scores = {m: {s: score_run(task, res) for s, res in rs.items()} for m, rs in by_method.items()}
            records += make_records(task, by_method, scores, task_steps(task, args), args, date, versions)
            if by_method:
                plot_task(task, by_method, plots / f"{t}.png")
        if records:
            data = HARNESS.merge(out, records, header, _order)
            HARNESS.write_markdown(md, render_markdown(data, out))

    def describe(key: str, res: dict[str, Any], minutes: float) -> str:
        s = score_run(TASKS[by_key[key].task], res)
        extra = f"  known {s['known_points_found']} (off hull {s['unsupported_points_found']})" if "found" in s else ""
        return (f"HV {s['hypervolume']:.4g}  EU {s['expected_utility']}  front {s['front_size']}"
                f"{extra}  [{s['wall_s']:.0f} s train; {minutes:.1f} min so far]")

    started = time.perf_counter()
    morl_python = venv_python(MORL_BASELINES.venv_arg(args))
    failed = run_jobs({k: functools.partial(execute, specs[k], morl_python) for k in todo}, args.jobs, results, 44,
                      describe, publish, started)
    wrote = f"wrote {out} and {md}" if out.exists() else f"no C-MORL run finished, so no records (nothing written to {out})"
    print(f"\n{wrote}; {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    exit_if_failed(failed)


if __name__ == "__main__":
    main()
