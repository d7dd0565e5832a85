"""Model-based RL: MBPO vs SAC sample efficiency, MOPO vs TD3+BC/IQL offline, and the dynamics ensemble's throughput.

    python benchmarks/model_based.py --jobs 2          # full run (~2.5 h on 2 idle cores; --list prints the estimate)
    python benchmarks/model_based.py --quick --jobs 2  # smoke run, a few minutes; writes under benchmarks/.work/
    python benchmarks/model_based.py --part throughput # only the ensemble throughput (about a minute)
    python benchmarks/model_based.py --part online --task Pendulum-v1
    python benchmarks/model_based.py --list            # the runs, their budgets and a rough time estimate
    python benchmarks/model_based.py --render          # only regenerate BENCHMARKS.md from the JSON

Parts:

* ``online``: MBPO and SAC learn the same number of env steps on Pendulum-v1
  and Hopper-v5 (several seeds); the deterministic return (10 episodes) is
  recorded at two points (``CHECKPOINTS``). SAC uses polyrl's defaults (1
  update per env step); MBPO the settings in ``MBPO`` (CPU-sized: fewer
  updates per step and start states than the paper). The paper's claim is
  that MBPO is clearly ahead at equal env steps.
* ``offline``: TD3+BC and IQL learn 20k gradient updates from polyrl's Hopper
  medium and medium-replay datasets (made by ``python benchmarks/offline.py
  make-data``; built here if missing), and MOPO 100k, scored at 20k and at
  100k (``OFFLINE_CHECKPOINTS``): MOPO is SAC on mostly model data with no
  behaviour-cloning term, and it is still climbing at 20k updates, where the
  other two are close to their plateaus (the paper trains MOPO for about
  1M updates). Scores use the reference returns ``polyrl.data.reference``
  picks, like the offline benchmark.
* ``throughput``: one batched 7-member ensemble (stacked weights) against 7
  separate ``nn.Sequential`` models of the same shape, for a prediction pass
  and a training step at Hopper's sizes; ratio = separate time / batched time.

Each learning run is a fresh subprocess (one torch thread) writing its result
under ``benchmarks/.work/model_based/<full|quick>/<run>/result.json``; a rerun
skips finished runs. Results merge into ``benchmarks/results/model_based.json``
and the section between ``<!-- model_based:start -->`` and
``<!-- model_based:end -->`` of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _datasets import (
    DATA_DIR,
    MAKE_DATA,
    MAKE_DATA_QUICK,
    QUICK_DATA_DIR,
    env_reference,
    make_data,
    normalized_score,
)
from _harness import HERE, MARKDOWN, ROOT, Harness, ratio, record_key, round_or_none, today

HARNESS = Harness("model_based")
WORK = HERE / ".work" / "model_based"
RUN_TIMEOUT_S = 3 * 3600

# -- the cases and budgets, said once ----------------------------------------------------------
# Env steps at which the return is recorded (the second is the budget), per task.
CHECKPOINTS = {"Pendulum-v1": (1500, 3000), "Hopper-v5": (25_000, 50_000)}
QUICK_CHECKPOINTS = {"Pendulum-v1": (300, 600), "Hopper-v5": (600, 1200)}
ONLINE_SEEDS = {"Pendulum-v1": 3, "Hopper-v5": 2}
# MBPO per task (everything else is polyrl's default). Pendulum: 64-wide nets, 1-step rollouts, a refit every 250 steps,
# half of every batch real (real_ratio=0.5: with the paper's 5% MBPO lags SAC at the same G even on the true dynamics;
# see docs/algorithms/mbpo.md); Hopper: the paper's schedule (k 1 -> 15 over epochs 20..100, so k reaches 6 by 50k
# steps), G = 5 updates per step.
MBPO: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {"learning_starts": 300, "batch_size": 128, "hidden": [64, 64], "gradient_steps": 5, "real_ratio": 0.5,
                    "model_hidden": [64, 64], "model_max_epochs": 100, "model_train_freq": 250, "rollout_freq": 250,
                    "rollout_batch_size": 2000, "rollout_max_length": 1},
    "Hopper-v5": {"learning_starts": 5000, "gradient_steps": 5, "model_max_epochs": 20, "rollout_batch_size": 5000},
}
SAC: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {"learning_starts": 300, "batch_size": 128, "hidden": [64, 64]},
    "Hopper-v5": {"learning_starts": 5000},
}
QUICK_ONLINE = {"learning_starts": 200, "model_max_epochs": 3, "rollout_batch_size": 200, "gradient_steps": 2}

DATASETS = ("hopper-medium", "hopper-medium-replay")
OFFLINE_ALGOS: dict[str, dict[str, Any]] = {
    "mopo": {"rollout_length": 5, "penalty_coef": 1.0, "model_max_epochs": 30},  # the paper's Hopper setting (h=5, lambda=1)
    "td3bc": {},
    "iql": {},
}
# Gradient updates at which each offline algorithm is scored (the last is its budget).
OFFLINE_CHECKPOINTS = {"mopo": (20_000, 100_000), "td3bc": (20_000,), "iql": (20_000,)}
QUICK_OFFLINE_CHECKPOINTS = {"mopo": (150, 300), "td3bc": (300,), "iql": (300,)}
OFFLINE_SEEDS = 2
EVAL_EPISODES, QUICK_EVAL_EPISODES = 10, 2

# Rough single-thread seconds, two runs at once on the reference machine, for the estimate only.
EST_S = {("mbpo", "Pendulum-v1"): 90.0, ("sac", "Pendulum-v1"): 20.0, ("mbpo", "Hopper-v5"): 2400.0,
         ("sac", "Hopper-v5"): 400.0, ("mopo", "offline"): 2400.0, ("td3bc", "offline"): 250.0, ("iql", "offline"): 350.0}


@dataclass(frozen=True)
class Run:
    algo: str
    task: str  # env id (online) or dataset name (offline)
    seed: int

    @property
    def key(self) -> str:
        if self.online:
            return f"{self.algo}-{self.task}-s{self.seed}"
        return f"{self.algo}-{self.task}-s{self.seed}-u{OFFLINE_CHECKPOINTS[self.algo][-1]}"  # a new budget is a new run

    @property
    def online(self) -> bool:
        return self.task in CHECKPOINTS


def plan(parts: list[str], tasks: list[str] | None) -> list[Run]:
    runs: list[Run] = []
    if "online" in parts:
        for task in CHECKPOINTS:
            if tasks is None or task in tasks:
                runs += [Run(a, task, s) for s in range(ONLINE_SEEDS[task]) for a in ("mbpo", "sac")]
    if "offline" in parts:
        for ds in DATASETS:
            if tasks is None or ds in tasks:
                runs += [Run(a, ds, s) for s in range(OFFLINE_SEEDS) for a in OFFLINE_ALGOS]
    return runs


def estimate_s(run: Run) -> float:
    return EST_S[(run.algo, run.task if run.online else "offline")]


# -- one run (in its own process) ----------------------------------------------------------------
def learn_scoring(agent: Any, checkpoints: tuple[int, ...], settings: dict[str, Any], episodes: int, seed: int) -> dict[str, float]:
    """Learn up to each checkpoint in turn (env steps online, updates offline); the mean deterministic return of
    ``episodes`` evaluation episodes (env copies seeded from ``10000 + seed``) at each, keyed by ``str(step)``."""
    returns, done = {}, 0
    for step in checkpoints:
        agent.learn(step - done, **settings)
        done = step
        returns[str(step)] = agent.evaluate(episodes, seed=10_000 + seed).mean_return
    return returns


def run_one(run: Run, quick: bool, out: Path, data_dir: Path) -> dict[str, Any]:
    import torch

    import polyrl

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    settings = dict(progress=False, tensorboard=False, eval_every=0, eval_episodes=0)
    episodes = QUICK_EVAL_EPISODES if quick else EVAL_EPISODES
    if run.online:
        cfg = dict((MBPO if run.algo == "mbpo" else SAC)[run.task])
        if quick:
            cfg.update({k: v for k, v in QUICK_ONLINE.items() if run.algo == "mbpo" or k == "learning_starts"})
        agent = polyrl.make(run.algo, run.task, seed=run.seed, run_dir=out / "run", **cfg)
        returns = learn_scoring(agent, (QUICK_CHECKPOINTS if quick else CHECKPOINTS)[run.task], settings, episodes, run.seed)
        result = {"returns": returns, "config": cfg}
    else:
        data = data_dir / run.task
        cfg = dict(OFFLINE_ALGOS[run.algo])
        if quick and run.algo == "mopo":
            cfg.update(model_max_epochs=2, rollout_batch_size=200, rollout_freq=100)
        agent = polyrl.make(run.algo, dataset=data, seed=run.seed, run_dir=out / "run", **cfg)
        returns = learn_scoring(agent, (QUICK_OFFLINE_CHECKPOINTS if quick else OFFLINE_CHECKPOINTS)[run.algo], settings,
                                episodes, run.seed)
        scores = {k: normalized_score("hopper", v) for k, v in returns.items()}  # the datasets are Hopper-v5's
        ret = returns[max(returns, key=int)]
        result = {"return": ret, "normalized_score": normalized_score("hopper", ret), "scores": scores,
                  "reference_returns": env_reference("hopper"), "dataset": str(data), "config": cfg}
    result |= {"run": asdict(run), "wall_s": time.perf_counter() - t0}
    agent.close()
    return result


def launch(run: Run, quick: bool, base: Path, data_dir: Path) -> dict[str, Any] | None:
    out = base / run.key
    res_file = out / "result.json"
    if res_file.exists():
        return json.loads(res_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_run", json.dumps(asdict(run)), "--_out", str(out),
           "--data-dir", str(data_dir)]
    if quick:
        cmd.append("--quick")
    with open(out / "log.txt", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S, cwd=ROOT)
    if proc.returncode != 0 or not res_file.exists():
        print(f"  {run.key}: FAILED (see {out / 'log.txt'})", flush=True)
        return None
    res = json.loads(res_file.read_text())
    print(f"  {run.key}: {summary(res)}", flush=True)
    return res


def summary(res: dict[str, Any]) -> str:
    if "returns" in res:
        return ", ".join(f"{k}: {v:.1f}" for k, v in res["returns"].items()) + f" ({res['wall_s']:.0f} s)"
    at = ", ".join(f"{k}: {v:.1f}" for k, v in res.get("scores", {}).items())
    return f"score {res['normalized_score']:.1f} ({at}; final return {res['return']:.1f}, {res['wall_s']:.0f} s)"


# -- ensemble throughput --------------------------------------------------------------------------
def throughput(quick: bool) -> list[dict[str, Any]]:
    """Batched 7-member ensemble vs 7 separate models: prediction and training-step times at Hopper's sizes.

    Both sides are the bare MLPs (``DynamicsEnsemble.net``, an ``EnsembleMLP``, vs ``nn.Sequential``), so the
    ratio is the batching alone, not the ensemble's input standardisation or log-variance bounds.
    """
    import torch
    from torch import nn

    from polyrl.models.dynamics import DynamicsConfig, DynamicsEnsemble

    torch.set_num_threads(1)
    torch.manual_seed(0)
    obs_dim, act_dim, n = 11, 3, 7
    cfg = DynamicsConfig()
    ens = DynamicsEnsemble(obs_dim, act_dim, cfg)
    out = 2 * (obs_dim + 1) + 1

    def separate() -> nn.Module:
        dims = [obs_dim + act_dim, *cfg.hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        return nn.Sequential(*layers, nn.Linear(dims[-1], out))

    models = nn.ModuleList([separate() for _ in range(n)])
    repeats = 3 if quick else 7
    records = []
    cases = (("predict", 1, 5000), ("predict", 32, 2000), ("predict", 256, 500), ("predict", 10_000, 10), ("train_step", 256, 100))
    for what, batch, iters in cases:
        iters = max(iters // 20, 2) if quick else iters
        batched, looped = _ensemble_ops(ens, models, what, batch, obs_dim, act_dim)
        times: dict[str, list[float]] = {"batched": [], "separate": []}
        for _ in range(repeats):
            for name, fn in (("batched", batched), ("separate", looped)):
                fn()  # warm-up
                t0 = time.perf_counter()
                for _ in range(iters):
                    fn()
                times[name].append((time.perf_counter() - t0) / iters)
        b, s = statistics.median(times["batched"]), statistics.median(times["separate"])
        records.append({
            "task": "dynamics ensemble (Hopper sizes)", "algo": "mbpo", "metric": f"ensemble_{what}_b{batch}_per_s", "higher_is_better": True,
            "polyrl": round_or_none(1.0 / b, 1), "peer": round_or_none(1.0 / s, 1), "peer_name": "7 separate nn.Sequential models (same shapes)",
            "ratio": round_or_none(s / b, 2), "repeats": repeats, "seeds": [0],
            "budget": f"7 members x 4 x 200 SiLU, batch {batch}, one thread",
            "command": "python benchmarks/model_based.py --part throughput",
        })
        print(f"  ensemble {what} batch {batch}: batched {1e3 * b:.2f} ms, 7 separate {1e3 * s:.2f} ms, ratio {s / b:.2f}", flush=True)
    return records


def _ensemble_ops(ens: Any, models: Any, what: str, batch: int, obs_dim: int, act_dim: int) -> tuple[Any, Any]:
    """``(batched, looped)``: one prediction pass or one training step of the stacked ensemble and of the separate models."""
    import torch

    n = len(models)
    x_obs, x_act = torch.randn(batch, obs_dim), torch.randn(batch, act_dim)
    x = torch.cat([x_obs, x_act], -1)
    opt_b = torch.optim.Adam(ens.parameters(), lr=1e-3)
    opt_s = torch.optim.Adam(models.parameters(), lr=1e-3)

    def batched() -> None:
        if what == "predict":
            with torch.no_grad():
                ens.net(x)
        else:  # each member its own batch, as in bootstrap training
            loss = ens.net(x.expand(n, -1, -1)).pow(2).mean(dim=(1, 2)).sum()
            opt_b.zero_grad()
            loss.backward()
            opt_b.step()

    def looped() -> None:
        if what == "predict":
            with torch.no_grad():
                for m in models:
                    m(x)
        else:
            loss = sum(m(x).pow(2).mean() for m in models)
            opt_s.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt_s.step()

    return batched, looped


# -- records ---------------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def online_records(results: dict[str, dict[str, Any]], quick: bool, date: str, seeds_arg: str = "") -> list[dict[str, Any]]:
    records = []
    checkpoints = QUICK_CHECKPOINTS if quick else CHECKPOINTS
    for task, points in checkpoints.items():
        for step in points:
            runs = {a: [r for r in results.values() if r["run"]["algo"] == a and r["run"]["task"] == task] for a in ("mbpo", "sac")}
            if not runs["mbpo"] or not runs["sac"]:
                continue
            vals = {a: [r["returns"][str(step)] for r in rs] for a, rs in runs.items()}
            ours, peer = _median(vals["mbpo"]), _median(vals["sac"])
            records.append({
                "task": task, "algo": "mbpo", "metric": f"return_at_{step}", "higher_is_better": True,
                "polyrl": round_or_none(ours, 1), "peer": round_or_none(peer, 1), "peer_name": "polyrl sac (1 update per env step)",
                "ratio": round_or_none(ratio(ours, peer), 2), "difference": round_or_none(ours - peer, 1) if ours is not None and peer is not None else None,
                "repeats": len(vals["mbpo"]), "seeds": sorted(r["run"]["seed"] for r in runs["mbpo"]),
                "budget": f"{step} env steps", "runs": {"polyrl": [round_or_none(v, 1) for v in vals["mbpo"]], "peer": [round_or_none(v, 1) for v in vals["sac"]]},
                "mbpo_config": runs["mbpo"][0]["config"], "date": date,
                "command": f"python benchmarks/model_based.py --part online --task {task}{seeds_arg}{' --quick' if quick else ''}",
            })
    return records


def offline_records(results: dict[str, dict[str, Any]], quick: bool, date: str, data_arg: str = "") -> list[dict[str, Any]]:
    """One record per dataset: MOPO's median score at its budget against the best of TD3+BC and IQL at theirs,
    with MOPO's median at each of its checkpoints (``data_arg``: the ``--data-dir`` option the runs used,
    repeated in the record's command)."""
    records = []
    checkpoints = QUICK_OFFLINE_CHECKPOINTS if quick else OFFLINE_CHECKPOINTS
    for ds in DATASETS:
        scores = {a: [r["normalized_score"] for r in results.values() if r["run"]["algo"] == a and r["run"]["task"] == ds]
                  for a in OFFLINE_ALGOS}
        if not scores["mopo"]:
            continue
        mopo_runs = [r for r in results.values() if r["run"]["algo"] == "mopo" and r["run"]["task"] == ds]
        mopo_at = {str(step): round_or_none(_median([r["scores"][str(step)] for r in mopo_runs]), 1) for step in checkpoints["mopo"]}
        med = {a: _median(v) for a, v in scores.items()}
        baselines = {a: m for a, m in med.items() if a != "mopo" and m is not None}
        best = max(baselines, key=lambda a: baselines[a]) if baselines else None
        ours, peer = med["mopo"], baselines.get(best) if best else None
        records.append({
            "task": ds, "algo": "mopo", "metric": "normalized_score", "higher_is_better": True,
            "polyrl": round_or_none(ours, 1), "peer": round_or_none(peer, 1), "peer_name": f"polyrl {best} (best of td3bc, iql)" if best else None,
            "ratio": round_or_none(ratio(ours, peer), 2), "repeats": len(scores["mopo"]), "seeds": list(range(len(scores["mopo"]))),
            "budget": f"MOPO {checkpoints['mopo'][-1]} gradient updates, "
                      + ", ".join(f"{a} {checkpoints[a][-1]}" for a in OFFLINE_ALGOS if a != "mopo"),
            "mopo_at": mopo_at,
            "baselines": {a: round_or_none(m, 1) for a, m in baselines.items()},
            "runs": {a: [round_or_none(v, 1) for v in vs] for a, vs in scores.items()}, "date": date,
            "command": f"python benchmarks/model_based.py --part offline --task {ds}{data_arg}{' --quick' if quick else ''}",
            "reference_returns": next((r.get("reference_returns") for r in results.values()
                                       if r["run"]["task"] == ds and r.get("reference_returns")), None),
        })
    return records


def render(data: dict[str, Any]) -> str:
    lines = [HARNESS.start, "## Model-based RL (MBPO, MOPO)", "",
             f"Measured {data.get('date', '?')} on {data.get('machine', {}).get('cpus', '?')} CPUs "
             f"({data.get('machine', {}).get('cpu_model', '')}), torch {data.get('machine', {}).get('torch', '?')}, one thread per run. "
             "Produced by `python benchmarks/model_based.py` (see `benchmarks/README.md`).", ""]
    recs = data.get("records", [])
    online = [r for r in recs if r["metric"].startswith("return_at_")]
    if online:
        lines += ["**MBPO vs SAC at equal env steps** (deterministic return, 10 episodes; median over seeds):", "",
                  "| Task | Env steps | MBPO | SAC | MBPO - SAC | Seeds |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['task']} | {r['budget'].split()[0]} | {r['polyrl']} | {r['peer']} | {r['difference']} | {len(r['seeds'])} |" for r in online]
        lines.append("")
    offline = [r for r in recs if r["metric"] == "normalized_score"]
    if offline:
        steps = sorted({int(k) for r in offline for k in r.get("mopo_at", {})})
        lines += ["**MOPO vs TD3+BC and IQL** (normalised score with the reference returns in each record, median over "
                  "seeds; MOPO scored at each of its checkpoints, TD3+BC and IQL at the end of their budgets; the module "
                  "docstring of `benchmarks/model_based.py` says why MOPO gets more updates):", "",
                  "| Dataset | " + " | ".join(f"MOPO @{s // 1000}k" for s in steps)
                  + f" | TD3+BC @{OFFLINE_CHECKPOINTS['td3bc'][-1] // 1000}k | IQL @{OFFLINE_CHECKPOINTS['iql'][-1] // 1000}k | Seeds |",
                  "| --- |" + " --- |" * (len(steps) + 3)]
        lines += [f"| {r['task']} | " + " | ".join(str(r.get("mopo_at", {}).get(str(s), "–")) for s in steps)
                  + f" | {r['baselines'].get('td3bc')} | {r['baselines'].get('iql')} | {r['repeats']} |" for r in offline]
        names = {"mopo": "MOPO", "td3bc": "TD3+BC", "iql": "IQL"}
        lines += ["", "Per seed, at the end of each budget: " + "; ".join(
            f"{r['task']}: " + ", ".join(f"{names.get(a, a)} {' / '.join(map(str, v))}" for a, v in r.get("runs", {}).items() if v)
            for r in offline) + ". What the MOPO rows show, and why hopper-medium fails, is in docs/algorithms/mopo.md (note 7)."]
        lines.append("")
    thr = [r for r in recs if r["metric"].startswith("ensemble_")]
    if thr:
        lines += ["**Dynamics-ensemble throughput**: one batched 7-member module vs 7 separate models of the same shape:", "",
                  "| Operation | Batched (/s) | 7 separate (/s) | Speed-up |", "| --- | --- | --- | --- |"]
        def batch(r: dict[str, Any]) -> tuple[str, int]:
            what, size = r["metric"].removeprefix("ensemble_").removesuffix("_per_s").rsplit("_b", 1)
            return what, int(size)

        lines += [f"| {batch(r)[0]}, batch {batch(r)[1]} | {r['polyrl']} | {r['peer']} | {r['ratio']}x |"
                  for r in sorted(thr, key=batch)]
        lines += ["", "Batching removes the per-call overhead of 7 models (about 3x at batch 1, 1.4x at batch 32); from batch "
                  "256 on, one CPU thread is busy with the same arithmetic either way and the two cost about the same "
                  "(ratios within this machine's noise, which is about 15%: other jobs shared the CPU). Large "
                  "batches run through the ensemble in 1024-row chunks without autograd (`EnsembleMLP.inference_chunk`), "
                  "which took batch 10000 from 0.58x to about 1x. A GPU, where the batched kernels fill the device, is not "
                  "measured here.", ""]
    lines.append(HARNESS.end)
    return "\n".join(lines) + "\n"


def save(new: list[dict[str, Any]], quick: bool) -> None:
    path = HARNESS.results if not quick else WORK / "quick" / "model_based.json"
    order = ["return_at", "normalized_score", "ensemble"]
    data = HARNESS.merge(path, new, HARNESS.header(_version(), 1, today()),
                         lambda r: (next(i for i, p in enumerate(order) if r["metric"].startswith(p)), record_key(r)))
    if not quick:
        HARNESS.write_markdown(MARKDOWN, render(data))
    print(f"wrote {path}" + ("" if quick else f" and the model_based section of {MARKDOWN}"), flush=True)


def _version() -> str:
    from polyrl import __version__

    return __version__


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default="online,offline,throughput", help="comma-separated: online, offline, throughput")
    p.add_argument("--task", default=None, help="comma-separated env ids / dataset names (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (one thread each)")
    p.add_argument("--seeds", type=int, default=None, help="only the first N seeds of each case (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny budgets, one seed; results under benchmarks/.work/")
    p.add_argument("--list", action="store_true", help="print the runs and a time estimate")
    p.add_argument("--render", action="store_true", help="only regenerate BENCHMARKS.md from the results JSON")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"offline datasets (default {DATA_DIR.relative_to(ROOT)}; made there if missing)")
    p.add_argument("--_run", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    args = p.parse_args()
    data_dir = (args.data_dir or (QUICK_DATA_DIR if args.quick else DATA_DIR)).resolve()
    if args._run:
        out = Path(args._out)
        res = run_one(Run(**json.loads(args._run)), args.quick, out, data_dir)
        (out / "result.json").write_text(json.dumps(res, indent=2))
        return
    if args.render:
        HARNESS.render_stored(render)
        return
    parts = args.part.split(",")
    tasks = args.task.split(",") if args.task else None
    runs = plan(parts, tasks)
    max_seeds = 1 if args.quick else args.seeds
    if max_seeds is not None:
        runs = [r for r in runs if r.seed < max_seeds]
    if args.list:
        for r in runs:
            print(f"{r.key:40s} ~{estimate_s(r) / 60:.0f} min")
        total = sum(estimate_s(r) for r in runs) + (90.0 if "throughput" in parts else 0.0)
        print(f"about {total / 60 / max(args.jobs, 1):.0f} min wall with --jobs {args.jobs} (full budgets)")
        return
    date = today()
    records: list[dict[str, Any]] = []
    if any(not r.online for r in runs) and args.data_dir is None:
        make_data(["hopper"], data_dir, MAKE_DATA_QUICK if args.quick else MAKE_DATA, 1, False)
    # runs are cached by key under base; datasets from another directory get their own cache
    base = WORK / ("quick" if args.quick else "full") / ("" if args.data_dir is None else f"data-{data_dir.name}")
    print(f"{len(runs)} runs, --jobs {args.jobs}", flush=True)
    with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        done = list(pool.map(lambda r: (r, launch(r, args.quick, base, data_dir)), runs))
    results = {r.key: res for r, res in done if res is not None}
    data_arg = "" if args.data_dir is None else f" --data-dir {args.data_dir}"
    seeds_arg = "" if args.seeds is None else f" --seeds {args.seeds}"
    records += online_records(results, args.quick, date, seeds_arg) + offline_records(results, args.quick, date, data_arg + seeds_arg)
    if "throughput" in parts:
        records += throughput(args.quick)
    save(records, args.quick)


if __name__ == "__main__":
    main()
