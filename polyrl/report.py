"""``polyrl report``: one self-contained HTML page (PNG plots as ``data:`` URIs, inline CSS, no JavaScript) for run directories.

Needs ``run.json`` and ``metrics.jsonl``; ``pipeline.json``, ``ope.json``,
``scores.json`` and ``pareto.json`` (a multi-objective run's archive) each
add a section when present. The learning curve puts
offline rows (gradient updates) first and online rows (env steps) after them,
shifted to start at the hand-off; two or more runs add a comparison plot.

>>> write_report(["runs/iql-Hopper-v5-s0"])   # doctest: +SKIP
PosixPath('runs/iql-Hopper-v5-s0/report.html')
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyrl.errors import ConfigError
from polyrl.io import write_text_atomic
from polyrl.runs import STAGES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CSS = """body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;height:auto}figcaption{font-size:.9em;color:#555}
.note{color:#8a5a00}section{border-top:1px solid #ddd;margin-top:1.5em}"""
HANDOFF_XLABEL = "offline updates | online env steps"


@dataclass
class Run:
    """What a run directory holds; an absent optional file is ``None``."""

    path: Path
    info: dict[str, Any]
    rows: list[dict[str, Any]]
    pipeline: dict[str, Any] | None = None
    ope: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    pareto: dict[str, Any] | None = None
    """A multi-objective run's archive (``pareto.json``, written by C-MORL)."""
    notes: list[str] = field(default_factory=list)
    """Problems to show on the page (an optional file that could not be read)."""

    @property
    def title(self) -> str:
        """``"<algo> on <env> (seed S)"``."""
        return f"{self.info.get('algo', '?')} on {self.info.get('env', '?')} (seed {self.info.get('seed', '?')})"


@dataclass(frozen=True)
class Curve:
    """A run's ``eval/return`` on one progress axis; ``std`` is 0 where a row has no finite ``eval/return_std``."""

    x: np.ndarray
    y: np.ndarray
    std: np.ndarray
    handoff: float | None
    """x of the offline -> online boundary, when the run has rows of both phases."""
    xlabel: str


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (the logger writes non-finite values as "nan" / "inf")."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _optional_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except (ValueError, OSError):
        obj = None
    if not isinstance(obj, dict):
        notes.append(f"{path.name} is not a readable JSON object; its section is left out.")
        return None
    return obj


def load_run(path: str | Path) -> Run:
    """Read a run directory; raises :class:`ConfigError` when it, its ``run.json`` or its ``metrics.jsonl`` is missing."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"run directory {path} does not exist")
    for name in ("metrics.jsonl", "run.json"):
        if not (path / name).is_file():
            raise ConfigError(f"{path} has no {name}; give a run directory written by `polyrl train`")
    notes: list[str] = []
    info = _optional_json(path / "run.json", notes)
    if info is None:
        raise ConfigError(f"{path / 'run.json'} is not a readable JSON object")
    rows = []
    for line in (path / "metrics.jsonl").read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a run killed mid-write leaves a truncated last line
        if isinstance(row, dict) and _finite(row.get("step")) is not None:
            rows.append(row)
    return Run(path, info, rows, _optional_json(path / "pipeline.json", notes), _optional_json(path / "ope.json", notes),
               _optional_json(path / "scores.json", notes), _optional_json(path / "pareto.json", notes), notes)


def eval_curve(run: Run) -> Curve | None:
    """The run's ``eval/return`` rows in progress order, or ``None`` when it has none.

    ``"offline"`` rows come first; all others follow, shifted by the last
    offline step. A run whose rows carry no ``phase`` has one phase: gradient
    updates when ``run.json`` names a dataset (an offline run), env steps otherwise.
    """
    def by_step(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: float(r["step"]))

    offline = by_step([r for r in run.rows if r.get("phase") == "offline"])
    online = by_step([r for r in run.rows if r.get("phase") != "offline"])
    handoff = float(offline[-1]["step"]) if offline and online else None
    shifted = [(float(r["step"]), r) for r in offline] + [(float(r["step"]) + (handoff or 0.0), r) for r in online]
    points = [(x, _finite(r.get("eval/return")), _finite(r.get("eval/return_std")) or 0.0) for x, r in shifted]
    points = [p for p in points if p[1] is not None]
    if not points:
        return None
    if handoff is not None:
        xlabel = HANDOFF_XLABEL
    elif offline or (not any("phase" in r for r in run.rows) and run.info.get("dataset")):
        xlabel = "gradient updates"
    else:
        xlabel = "env steps"
    x, y, std = (np.array(column, dtype=float) for column in zip(*points))
    return Curve(x, y, std, handoff, xlabel)


def _new_axes(title: str) -> tuple[Figure, Axes]:
    # A bare Figure with an Agg canvas leaves pyplot's global state (and the user's backend) alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def _figure(fig: Figure, title: str) -> str:
    """The figure as ``<figure>`` HTML with the PNG inlined."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    t = escape(title)
    return f'<figure><img src="{src}" alt="{t}" title="{t}"><figcaption>{t}</figcaption></figure>'


def plot_learning_curve(run: Run, curve: Curve) -> str:
    """``eval/return`` against progress, shaded +- ``eval/return_std``, with the hand-off marked."""
    title = f"Learning curve: {run.title}"
    fig, ax = _new_axes(title)
    ax.plot(curve.x, curve.y, marker="o", ms=3, label="eval/return")
    if curve.std.any():
        ax.fill_between(curve.x, curve.y - curve.std, curve.y + curve.std, alpha=0.25, label="± eval/return_std")
    if curve.handoff is not None:
        ax.axvline(curve.handoff, ls="--", lw=1.2, color="0.3", label="hand-off")
        ax.annotate("hand-off", xy=(curve.handoff, 1.0), xycoords=("data", "axes fraction"), xytext=(4, -4),
                    textcoords="offset points", va="top", fontsize=9, color="0.3")
    ax.set_xlabel(curve.xlabel)
    ax.set_ylabel("eval/return")
    ax.legend(loc="best", fontsize=9)
    return _figure(fig, title)


def plot_comparison(runs: Sequence[Run], curves: Sequence[Curve]) -> str:
    """Every run's ``eval/return`` on one axis; a dashed line in the run's colour marks its hand-off."""
    title = "Comparison of runs"
    fig, ax = _new_axes(title)
    labels = [f"{r.info.get('algo', '?')}/{r.info.get('env', '?')}/seed {r.info.get('seed', '?')}" for r in runs]
    if len(set(labels)) < len(labels):
        labels = [r.path.name for r in runs]
    for label, curve in zip(labels, curves):
        (line,) = ax.plot(curve.x, curve.y, marker="o", ms=3, label=label)
        if curve.handoff is not None:
            ax.axvline(curve.handoff, ls="--", lw=1.2, color=line.get_color())
    if any(c.handoff is not None for c in curves):
        ax.plot([], [], ls="--", color="0.3", label="hand-off (in the run's colour)")  # one legend entry for all runs
    xlabels = {c.xlabel for c in curves}
    ax.set_xlabel(xlabels.pop() if len(xlabels) == 1 else f"progress ({HANDOFF_XLABEL})")
    ax.set_ylabel("eval/return")
    ax.legend(loc="best", fontsize=9)
    return _figure(fig, title)


def plot_ope(candidates: list[dict[str, Any]]) -> str:
    """Each candidate's estimate with its CI against its real return (y = x drawn), or per name when real returns are missing."""
    title = "OPE estimates vs real returns"
    fig, ax = _new_axes(title)
    vs_real = all(_finite(c.get("real_return")) is not None for c in candidates)
    seen: set[str] = set()
    values: list[float] = []
    for i, c in enumerate(candidates):
        est = _finite(c["estimate"]) or 0.0
        lo, hi = _finite(c.get("ci_low")), _finite(c.get("ci_high"))
        lo, hi = est if lo is None else lo, est if hi is None else hi
        real, real_std = _finite(c.get("real_return")), _finite(c.get("real_return_std"))
        kind = "selected" if c.get("selected") else "candidate"
        style = {"color": "C3", "marker": "*", "ms": 13} if kind == "selected" else {"color": "C0", "marker": "o", "ms": 6}
        x = real if vs_real and real is not None else float(i)
        ax.errorbar([x], [est], yerr=[[max(est - lo, 0.0)], [max(hi - est, 0.0)]], xerr=real_std if vs_real else None,
                    ls="none", capsize=3, label=kind if kind not in seen else "_nolegend_", **style)
        seen.add(kind)
        values += [lo, hi] + ([real] if real is not None else [])
        if vs_real:
            ax.annotate(str(c.get("name", "?")), (x, est), xytext=(5, 5), textcoords="offset points", fontsize=8)
        elif real is not None:
            ax.plot([x], [real], "kx", ms=8, label="real return" if "real" not in seen else "_nolegend_")
            seen.add("real")
    if vs_real:
        ends = [min(values), max(values)]
        ax.plot(ends, ends, ls=":", color="0.5", label="y = x")
        ax.set_xlabel("real return")
    else:
        ax.set_xticks(range(len(candidates)), [str(c.get("name", "?")) for c in candidates], rotation=20, ha="right")
        ax.set_xlim(-0.5, len(candidates) - 0.5)
        ax.set_xlabel("candidate")
    ax.set_ylabel("estimated return (CI)")
    ax.legend(loc="best", fontsize=9)
    return _figure(fig, title)


def _num(value: Any, std: Any = None) -> str:
    x, s = _finite(value), _finite(std)
    return "n/a" if x is None else f"{x:.2f}" + ("" if s is None else f" ± {s:.2f}")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table with every cell escaped; the ``numeric`` columns are right-aligned."""
    def cell(i: int, value: Any) -> str:
        return f'<td class="num">{escape(str(value))}</td>' if i in numeric else f"<td>{escape(str(value))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pipeline_html(pipeline: dict[str, Any]) -> str:
    recorded = pipeline.get("stages") or {}
    order = [s for s in STAGES if s in recorded] + sorted(set(recorded) - set(STAGES))  # pipeline order, not the file's
    stages = [(name, st.get("status", "?"), _num(st.get("seconds")))
              for name in order if isinstance(st := recorded[name], dict)]
    updates = (pipeline.get("handoff") or {}).get("offline_updates")
    handoff = "" if updates is None else f"<p>Hand-off after {escape(str(updates))} offline updates.</p>"
    return "<h3>Pipeline</h3>" + _table(["stage", "status", "seconds"], stages, numeric=[2]) + handoff


def _ope_html(candidates: list[dict[str, Any]]) -> str:
    rows = [(c.get("name", "?"), c.get("method", "?"), _num(c.get("estimate")),
             f"[{_num(c.get('ci_low'))}, {_num(c.get('ci_high'))}]", _num(c.get("real_return"), c.get("real_return_std")),
             "yes" if c.get("selected") else "") for c in candidates]
    table = _table(["candidate", "method", "estimate", "CI", "real return", "selected"], rows, numeric=[2, 3, 4])
    return "<h3>Off-policy evaluation</h3>" + plot_ope(candidates) + table


def _scores_html(scores: dict[str, Any]) -> str:
    ref, env = scores.get("reference"), scores.get("env", "?")
    if isinstance(ref, dict):
        text = (f"Reference returns for {env}: random {_num(ref.get('random'))}, expert {_num(ref.get('expert'))} "
                f"(source: {ref.get('source', '?')}).")
    else:
        text = f"No reference returns for {env}, so no normalised score."
    phases = [ph for ph in scores.get("phases", []) if isinstance(ph, dict)]
    rows = [(ph.get("name", "?"), _num(ph.get("return"), ph.get("return_std")), _num(ph.get("score"))) for ph in phases]
    own = scores.get("dataset_reference")
    if isinstance(own, dict) and isinstance(own.get("random"), (int, float)) and isinstance(own.get("expert"), (int, float)):
        from polyrl.data.scores import Reference

        scale = Reference(own["random"], own["expert"], str(own.get("source")))
        relative = ", ".join(f"{ph.get('name', '?')} {_num(scale.score(ph['return']))}" for ph in phases
                             if isinstance(ph.get("return"), (int, float))) if scale.expert != scale.random else ""
        text += (f" The dataset's own references (random {_num(own['random'])}, expert {_num(own['expert'])}: its "
                 f"maker's best policy) would give {relative or 'no score'}.")
    return f"<h3>Scores</h3><p>{escape(text)}</p>" + _table(["phase", "return", "normalised score"], rows, numeric=[1, 2])


def plot_pareto(pareto: dict[str, Any], title: str) -> str:
    """The archive's return vectors (2-D front with its step line, or pairwise projections), stage-1 snapshots marked."""
    import tempfile

    from polyrl.morl.plots import plot_front

    values = np.asarray(pareto["values"], dtype=np.float64)
    stages = np.asarray(pareto.get("stages") or [0] * len(values))
    overlays = {"found in stage 1": values[stages == 1]} if (stages == 1).any() and (stages != 1).any() else None
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_front(values, Path(tmp) / "front.png", ref_point=pareto.get("ref_point"), title=title,
                          label="archive", overlays=overlays)
        data = path.read_bytes()
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    t = escape(title)
    return f'<figure><img src="{src}" alt="{t}" title="{t}"><figcaption>{t}</figcaption></figure>'


def _pareto_html(run: Run, pareto: dict[str, Any]) -> str:
    values = pareto.get("values") or []
    rows = [("policies in the archive", len(values)), ("hypervolume", _num(pareto.get("hypervolume"))),
            ("expected utility", _num(pareto.get("expected_utility"))), ("sparsity", _num(pareto.get("sparsity"))),
            ("reference point", escape(str(pareto.get("ref_point"))))]
    gamma = pareto.get("eval_gamma")
    note = f"<p>Return vectors are discounted by {escape(str(gamma))}.</p>" if gamma is not None else ""
    plot = plot_pareto(pareto, f"Pareto front: {run.title}") if len(values) and len(values[0]) >= 2 else ""
    return "<h3>Pareto front</h3>" + plot + note + _table(["", "value"], rows, numeric=[1])


def _run_section(run: Run, curve: Curve | None) -> str:
    parts = [f"<section><h2>{escape(run.title)}</h2><p><code>{escape(str(run.path))}</code></p>"]
    parts += [f'<p class="note">{escape(n)}</p>' for n in run.notes]
    parts.append(plot_learning_curve(run, curve) if curve is not None
                 else '<p class="note">metrics.jsonl has no finite eval/return rows yet.</p>')
    if run.pipeline is not None:
        parts.append(_pipeline_html(run.pipeline))
    candidates = [c for c in (run.ope or {}).get("candidates", [])
                  if isinstance(c, dict) and _finite(c.get("estimate")) is not None]
    if candidates:
        parts.append(_ope_html(candidates))
    if run.scores is not None:
        parts.append(_scores_html(run.scores))
    if run.pareto is not None and isinstance(run.pareto.get("values"), list):
        parts.append(_pareto_html(run, run.pareto))
    return "\n".join(parts) + "</section>"


def render_html(runs: Sequence[Run]) -> str:
    """The report page for ``runs`` as one HTML string."""
    curves = [eval_curve(r) for r in runs]
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    meta = _table(["run directory", "algo", "env", "seed", "polyrl version"],
                  [(r.path.name or str(r.path), *(r.info.get(k, "?") for k in ("algo", "env", "seed", "polyrl_version")))
                   for r in runs])
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>polyrl report</title><style>{CSS}</style>'
             f"</head><body><h1>polyrl report</h1><p>Generated at {escape(now)}.</p>{meta}"]
    parts += [_run_section(r, c) for r, c in zip(runs, curves)]
    compared = [i for i, c in enumerate(curves) if c is not None]
    if len(compared) >= 2:
        plot = plot_comparison([runs[i] for i in compared], [c for c in curves if c is not None])
        parts.append(f"<section><h2>Comparison</h2>{plot}</section>")
    return "\n".join(parts) + "</body></html>\n"


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the HTML report of ``run_dirs`` and return its path.

    ``out`` defaults to ``<run dir>/report.html`` for one run and to
    ``report.html`` in the current directory for several.
    """
    if not run_dirs:
        raise ConfigError("no run directory given; usage: polyrl report RUN_DIR [RUN_DIR ...] [--out PATH]")
    runs = [load_run(d) for d in run_dirs]
    path = Path(out) if out is not None else runs[0].path / "report.html" if len(runs) == 1 else Path("report.html")
    write_text_atomic(path, render_html(runs).encode("ascii", "xmlcharrefreplace"))  # readable whatever the locale
    return path


def cli_main(argv: Sequence[str]) -> int:
    """``polyrl report RUN_DIR [RUN_DIR ...] [--out PATH]``: write the report and print its path."""
    p = argparse.ArgumentParser(prog="polyrl report", description="Write a self-contained HTML report (learning curves, "
                                "pipeline stages, OPE, scores) of one or more run directories.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default=None, metavar="PATH", help="HTML file to write (default: RUN_DIR/report.html for one run, "
                   "./report.html for several)")
    args = p.parse_args(list(argv))
    print(write_report(args.run_dirs, args.out))
    return 0
