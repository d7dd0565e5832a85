"""What a sweep reports: ``summary.json``, ``summary.csv`` and ``summary.png`` of a sweep directory, the text table
``polyrl sweep`` prints, and the line printed as each trial ends."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from polyrl.errors import ConfigError
from polyrl.io import write_json_atomic, write_text_atomic
from polyrl.sweep.grid import format_value
from polyrl.sweep.spec import Sweep, read_metric, read_result
from polyrl.sweep.stats import seed_stats


def summarize(sweep_dir: str | Path, *, confidence: float = 0.95, n_boot: int = 2000) -> dict[str, Any]:
    """Read the trials' results and write ``summary.json``, ``summary.csv`` and ``summary.png``; returns the summary.

    Per configuration, over the seeds whose trial finished: the final value of
    the sweep's metric (its last logged value) and :func:`seed_stats` of them.
    Failed trials are listed with their errors; unfinished ones are counted.
    """
    sweep_dir = Path(sweep_dir).resolve()
    try:
        sweep = Sweep.from_json(sweep_dir, json.loads((sweep_dir / "sweep.json").read_text()))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{sweep_dir} is not a sweep directory ({e}); give the --run-dir of a polyrl sweep") from None
    configs: dict[str, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    for spec in sweep.specs():
        row = configs.setdefault(spec.label, {"label": spec.label, "config": spec.grid_values, "seeds": {},
                                              "failed": 0, "unfinished": 0, "trials": []})
        row["trials"].append(spec.name)
        record = read_result(spec.dir)
        if record is None:
            row["unfinished"] += 1
        elif record.get("status") != "finished":
            row["failed"] += 1
            failed.append({"trial": spec.name, "label": spec.label, "seed": spec.seed, "error": record.get("error"),
                           "dir": spec.dir})
        else:
            final = read_metric(spec.dir, sweep.metric)
            if final is not None:
                row["seeds"][str(spec.seed)] = final[0]
    for i, row in enumerate(configs.values()):
        row |= seed_stats(list(row["seeds"].values()), confidence=confidence, n_boot=n_boot, seed=i)
    summary = {"dir": str(sweep_dir), "algo": sweep.algo, "env": sweep.env, "dataset": sweep.dataset, "steps": sweep.steps, "metric": sweep.metric,
               "mode": sweep.mode, "seeds": sweep.seeds, "grid": sweep.grid, "config": sweep.config, "search": sweep.search,
               "confidence": confidence, "configs": list(configs.values()), "failed": failed,
               "n_trials": sum(len(r["trials"]) for r in configs.values()),
               "n_finished": sum(r["n"] for r in configs.values()), "n_failed": len(failed)}
    write_json_atomic(sweep_dir / "summary.json", json_safe(summary))
    write_text_atomic(sweep_dir / "summary.csv", summary_csv(summary))
    write_text_atomic(sweep_dir / "summary.png", summary_plot(summary))
    return summary


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (a statistic of no seeds) as ``None``, so it is valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    return obj


CSV_COLUMNS = ("n", "failed", "unfinished", "mean", "std", "iqm", "ci_low", "ci_high", "min", "max")


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per configuration: its label, grid values and statistics (empty where undefined)."""
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = list(summary["grid"])
    writer.writerow(["config", *fields, *CSV_COLUMNS])
    for row in summary["configs"]:
        cells = ["" if row[c] is None else row[c] for c in CSV_COLUMNS]
        writer.writerow([row["label"], *(format_value(row["config"].get(f, "")) for f in fields), *cells])
    return out.getvalue()


def summary_plot(summary: dict[str, Any]) -> bytes:
    """A PNG: each configuration's per-seed values (dots), mean with its bootstrap CI (bar) and IQM (diamond)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = summary["configs"]
    fig = Figure(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6), dpi=100)
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        values = list(row["seeds"].values())
        ax.scatter([i] * len(values), values, s=14, color="0.55", zorder=2, label="seeds" if i == 0 else None)
        if row["mean"] is not None:
            err = [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
            ax.errorbar([i], [row["mean"]], yerr=err, fmt="o", color="C0", capsize=4, zorder=3,
                        label=f"mean, {summary['confidence']:.0%} CI" if i == 0 else None)
            ax.scatter([i], [row["iqm"]], marker="D", s=22, color="C1", zorder=4, label="IQM" if i == 0 else None)
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=20 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center", fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel(summary["metric"])
    data = Path(summary["dataset"]).name if summary["dataset"] else None
    where = f"{summary['env']} ({data})" if summary["env"] and data else summary["env"] or data
    unit = "updates" if data else "steps"
    ax.set_title(f"{summary['algo']} on {where}: {summary['steps']} {unit}, {len(summary['seeds'])} seeds", fontsize=10)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a text table, failed trials after it."""
    lines = [f"{'configuration':<40} {'seeds':>5} {'mean':>10} {'std':>9} {'IQM':>10}  {summary['confidence']:.0%} CI"]
    for r in summary["configs"]:
        def num(x: Any) -> str:
            return "-" if x is None else f"{x:.2f}"
        extra = "".join(f", {r[k]} {k}" for k in ("failed", "unfinished") if r[k])
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        lines.append(f"{r['label']:<40} {r['n']:>5} {num(r['mean']):>10} {num(r['std']):>9} {num(r['iqm']):>10}  {ci}{extra}")
    for f in summary["failed"]:
        lines.append(f"failed: {f['trial']}: {f['error']}")
    return "\n".join(lines)


class Printer:
    """One line per ended trial (``[3/8] learning_rate=0.001 seed 2: eval/return 180.00``), none when ``quiet``."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, 0, quiet

    def __call__(self, record: dict[str, Any]) -> None:
        self.done += 1
        if self.quiet:
            return
        if record["status"] == "finished":
            value = "n/a" if record.get("value") is None else f"{record['value']:.2f}"
            what = f"{record['metric']} {value}"
        else:
            what = f"FAILED: {record.get('error')}"
        print(f"[{self.done}/{self.total}] {record['label']} seed {record['seed']}: {what}", flush=True)
