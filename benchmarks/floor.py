"""How close polyrl's updates are to this machine's arithmetic floor, and the best peer ratio that floor leaves.

    python benchmarks/floor.py                      # every case, about 6 min on one idle core
    python benchmarks/floor.py --case sac-Hopper-v5,cql-hopper
    python benchmarks/floor.py --render             # rebuild the BENCHMARKS.md section from results/floor.json

The speed targets of the online and offline benchmarks are ratios over a peer
that runs the same algorithm, with the same networks and batch, on the same
torch. This harness asks how much faster polyrl's update could still get. For
each case, at the shapes and hyperparameters of its benchmark (``_cases.py``,
which ``online.py`` and ``offline.py`` run), in one process with one torch thread:

* ``flops``: floating-point operations of one gradient update, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (the matrix products; the
  elementwise work is not counted, so the floor below is optimistic);
* ``gemm_gflops``: this CPU's fp32 matrix-product rate (256 x 256 x 256
  ``torch.mm``, best of several timings);
* ``floor_ms = flops / gemm rate``: no fp32 implementation of the same
  update, in any library, can spend less time on its arithmetic;
* ``update_ms``: polyrl's update at the benchmark's batch size, and
  ``batch1_ms`` at batch 1: the same operations with almost no arithmetic,
  i.e. what eager PyTorch costs per update before any arithmetic is done;
* ``outside_ms``: the trainer's work between updates (env steps, acting,
  replay writes, sampling), per update.

From these: ``headroom_hard = (update + outside) / (floor + outside)``, the
largest speed-up any implementation could still find, and ``headroom_eager =
(update + outside) / (floor + batch1 + outside)``, the largest an
implementation issuing the same eager PyTorch operations could. Multiplied by
the ratio the benchmark measured against the peer, they bound the ratio
polyrl can reach on this machine. Timings are medians over ``--repeats``
fresh agents; the peer's ratio comes from the results JSON, which names the
machine it was measured on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _cases import OFFLINE_HP, ONLINE_HP
from _harness import HERE, MARKDOWN, Harness, say, today, write_results
from _polyrl_offline_runner import polyrl_config as offline_config
from _polyrl_runner import polyrl_config as online_config

HARNESS = Harness("floor")
RESULTS = HARNESS.results
WORK = HERE / ".work" / "floor"
COUNTED_CALLS = 2  # update calls under the flop counter: TD3-style actors step every other update


@dataclass(frozen=True)
class Case:
    name: str
    algo: str
    env: str
    offline: bool
    target: float  # the benchmark's speed target, as a ratio over the peer
    source: tuple[str, str, str]  # (results file, algo, metric) of the measured peer ratio
    b1: dict[str, Any] = field(default_factory=dict)  # config changes for the batch-1 run


def cases() -> list[Case]:
    ppo_b1 = {"batch_size": 1, "n_epochs": 1}
    return [
        Case("sac-Hopper-v5", "sac", "Hopper-v5", False, 2.0, ("online", "sac", "updates_per_s"), {"batch_size": 1}),
        Case("ppo-CartPole-v1", "ppo", "CartPole-v1", False, 3.0, ("online", "ppo", "seconds_to_475"), ppo_b1),
        *[Case(f"{a}-hopper", a, "Hopper-v5", True, 2.0, ("offline", a, "updates_per_s"), {"batch_size": 1})
          for a in OFFLINE_HP],
    ]


def config(case: Case) -> dict[str, Any]:
    if case.offline:
        return offline_config(case.algo, OFFLINE_HP[case.algo])
    return online_config(case.algo, ONLINE_HP[case.algo])


def gemm_gflops(repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(256, 256), torch.randn(256, 256)
    best = float("inf")
    for _ in range(repeats):
        for _ in range(50):
            torch.mm(a, b)
        t = time.perf_counter()
        for _ in range(1000):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - t) / 1000)
    return 2 * 256**3 / best / 1e9


def dataset() -> Path:
    """A Hopper-v5 dataset of uniformly random actions: the offline updates' cost does not depend on the data."""
    path = WORK / "hopper-random"
    if not (path / "meta.json").exists():
        from polyrl.data.collect import collect

        collect("Hopper-v5", 20_000, seed=0).save(path)
    return path


def measure(case: Case, overrides: dict[str, Any], calls: int, seed: int) -> dict[str, float]:
    """Time ``calls`` update calls of a fresh agent (after the flop-counted ones) and the trainer's work around them."""
    from torch.utils.flop_counter import FlopCounterMode

    import polyrl

    cfg = config(case) | overrides
    run_dir = WORK / "runs" / f"{case.name}-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    if case.offline:
        agent = polyrl.make(case.algo, dataset=str(dataset()), seed=seed, run_dir=run_dir, **cfg)
    else:
        agent = polyrl.make(case.algo, env=case.env, seed=seed, run_dir=run_dir, **cfg)
    algo, update = agent.algo, agent.algo.update
    counted = COUNTED_CALLS
    st: dict[str, Any] = {"flops": 0, "grad_steps": 0, "calls": 0, "update_s": 0.0, "first": None, "last": None}

    def wrapped(batch: Any) -> Any:
        if st["calls"] < counted:
            before = algo.n_updates
            with FlopCounterMode(display=False) as fc:
                out = update(batch)
            st["flops"] += fc.get_total_flops()
            st["grad_steps"] += algo.n_updates - before
        else:
            t = time.perf_counter()
            st["first"] = t if st["first"] is None else st["first"]
            out = update(batch)
            st["last"] = time.perf_counter()
            st["update_s"] += st["last"] - t
        st["calls"] += 1
        return out

    algo.update = wrapped  # type: ignore[method-assign]
    settings = dict(progress=False, eval_every=0, eval_episodes=0, tensorboard=False)
    if case.offline:
        agent.learn(counted + calls, **settings)
    else:  # off-policy: one update per env step after the warm-up; PPO: one call per rollout
        per_call = cfg["n_envs"] * cfg["n_steps"] if case.algo == "ppo" else 1
        agent.learn(cfg.get("learning_starts", 0) + (counted + calls) * per_call, **settings)
    agent.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    timed = st["calls"] - counted
    return {"flops_per_call": st["flops"] / counted, "grad_steps_per_call": st["grad_steps"] / counted,
            "update_ms": 1e3 * st["update_s"] / timed,
            "outside_ms": 1e3 * (st["last"] - st["first"] - st["update_s"]) / max(timed - 1, 1)}


def peer_ratio(case: Case) -> tuple[float | None, str]:
    """The median ratio over the peer the benchmark recorded for this algorithm, and the machine it ran on."""
    path = HERE / "results" / f"{case.source[0]}.json"
    if not path.exists():
        return None, "none"
    data = json.loads(path.read_text())
    ratios = [r["ratio"] for r in data["records"] if r["algo"] == case.source[1] and r["metric"] == case.source[2]
              and r.get("ratio") and (case.offline and r["task"].startswith("hopper") or r["task"] == case.env)]
    return (statistics.median(ratios) if ratios else None), data.get("machine", {}).get("cpu_model", "?")


def run_case(case: Case, repeats: int, calls: int, gemm: float) -> dict[str, Any]:
    full = [measure(case, {}, calls, seed) for seed in range(repeats)]
    one = [measure(case, case.b1, calls, seed) for seed in range(repeats)]
    med = {k: statistics.median(m[k] for m in full) for k in full[0]}
    b1 = statistics.median(m["update_ms"] for m in one)
    b1_steps = one[0]["grad_steps_per_call"]
    # batch 1 may take more gradient steps per call (PPO: minibatches of one): scale its fixed cost per step to the
    # benchmark's steps per call
    b1_ms = b1 / b1_steps * med["grad_steps_per_call"]
    floor_ms = med["flops_per_call"] / (gemm * 1e9) * 1e3
    total = med["update_ms"] + med["outside_ms"]
    hard = total / (floor_ms + med["outside_ms"])
    eager = total / (floor_ms + b1_ms + med["outside_ms"])
    ratio, machine = peer_ratio(case)
    return {
        "task": case.env if not case.offline else "hopper (offline)", "algo": case.algo, "metric": "update_ms",
        "higher_is_better": False, "polyrl": round(total, 3), "peer": None, "ratio": None,
        "peer_name": "no peer: this machine's arithmetic floor", "repeats": repeats, "seeds": list(range(repeats)),
        "budget": f"{calls} timed update calls per agent after {COUNTED_CALLS} flop-counted ones",
        "command": f"python benchmarks/floor.py --case {case.name}",
        "date": today(),
        "notes": "ms per update call on one idle thread: polyrl's update plus the trainer's work around it; the JSON's "
                 "'floor' holds the arithmetic floor, the batch-1 cost and the bounds they put on the peer ratio",
        "floor": {"flops_per_call": med["flops_per_call"], "grad_steps_per_call": med["grad_steps_per_call"],
                  "gemm_gflops": round(gemm, 1), "floor_ms": round(floor_ms, 3), "update_ms": round(med["update_ms"], 3),
                  "batch1_ms": round(b1_ms, 3), "outside_ms": round(med["outside_ms"], 3),
                  "headroom_hard": round(hard, 3), "headroom_eager": round(eager, 3),
                  "measured_ratio": ratio, "ratio_machine": machine, "target_ratio": case.target,
                  "max_ratio_hard": round(ratio * hard, 2) if ratio else None,
                  "max_ratio_eager": round(ratio * eager, 2) if ratio else None},
    }


def render(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [HARNESS.start, "## How far from the floor: polyrl's updates against this CPU's arithmetic", "",
             "Generated by `python benchmarks/floor.py` from `benchmarks/results/floor.json` (do not edit by hand). "
             f"Date: {data['date']}. Machine: {m['cpus']} CPUs ({m['cpu_model']}), torch {m['torch']} with 1 thread, "
             f"fp32 matrix products at {data['gemm_gflops']:.0f} GFLOP/s.", "",
             "Per update call at the benchmark's shapes and hyperparameters (PPO: one call is a rollout's 20 gradient "
             "steps over 256 env steps). *Floor*: the call's matrix-product FLOPs at this CPU's rate, a lower bound for "
             "any fp32 implementation. *Batch 1*: the same call at batch 1, what eager PyTorch costs before arithmetic. "
             "*Outside*: the trainer's work between updates. *Headroom*: (update + outside) / (floor + outside), the most "
             "any implementation could still gain; *eager*: the same with batch 1's cost added to the floor. "
             "*Best ratio* = the benchmark's measured ratio over its peer x headroom.", "",
             "| Case | Update ms | Outside ms | Floor ms | Batch-1 ms | Headroom (hard / eager) | Measured ratio | "
             "Best ratio (hard / eager) | Target |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in data["records"]:
        f = r["floor"]
        measured = f"{f['measured_ratio']:.2f}x ({f['ratio_machine']})" if f["measured_ratio"] else "-"
        best = f"{f['max_ratio_hard']:.2f}x / {f['max_ratio_eager']:.2f}x" if f["max_ratio_hard"] else "-"
        name = r["command"].rsplit(" ", 1)[-1]
        lines.append(f"| {name} | {f['update_ms']:.2f} | {f['outside_ms']:.2f} | {f['floor_ms']:.2f} | "
                     f"{f['batch1_ms']:.2f} | {f['headroom_hard']:.2f}x / {f['headroom_eager']:.2f}x | {measured} | "
                     f"{best} | {f['target_ratio']:.0f}x |")
    lines += ["", "FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`; elementwise work is not counted, "
              "so the floor is optimistic and the bounds generous. A ratio measured on another machine is scaled by "
              "this machine's headroom, so its bound is indicative.", HARNESS.end, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--case", default=None, help="comma-separated case names (default: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", type=int, default=60, help="timed update calls per agent")
    p.add_argument("--render", action="store_true")
    args = p.parse_args(argv)
    if args.render:
        HARNESS.render_stored(render)
        return
    import torch

    import polyrl

    torch.set_num_threads(1)
    chosen = cases()
    if args.case:
        names = set(args.case.split(","))
        unknown = names - {c.name for c in chosen}
        if unknown:
            raise SystemExit(f"unknown case(s) {sorted(unknown)}; known: {', '.join(c.name for c in chosen)}")
        chosen = [c for c in chosen if c.name in names]
    gemm = gemm_gflops()
    say(f"fp32 GEMM: {gemm:.0f} GFLOP/s on one thread")
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    records = {r["command"]: r for r in old.get("records", [])}
    for case in chosen:
        t = time.perf_counter()
        rec = run_case(case, args.repeats, args.calls if case.algo != "ppo" else max(args.calls // 10, 3), gemm)
        records[rec["command"]] = rec
        f = rec["floor"]
        say(f"{case.name}: update {f['update_ms']:.2f} ms + outside {f['outside_ms']:.2f}, floor {f['floor_ms']:.2f}, "
            f"batch-1 {f['batch1_ms']:.2f}; headroom {f['headroom_hard']:.2f}x hard / {f['headroom_eager']:.2f}x eager; "
            f"best ratio {f['max_ratio_hard']} / {f['max_ratio_eager']} (target {case.target}x) "
            f"[{time.perf_counter() - t:.0f} s]")
    order = [c.name for c in cases()]
    data = HARNESS.header(polyrl.__version__, 1, today(), gemm_gflops=round(gemm, 1),
                          records=sorted(records.values(), key=lambda r: order.index(r["command"].rsplit(" ", 1)[-1])))
    write_results(RESULTS, data)
    HARNESS.write_markdown(MARKDOWN, render(data))
    say(f"wrote {RESULTS} and {MARKDOWN}")


if __name__ == "__main__":
    main()
