"""MkDocs hook that generates the parts of the documentation the code already says.

Pages contain markers (HTML comments, invisible when a page is read unrendered);
``on_page_markdown`` replaces each with Markdown built from the code at build time:

* ``<!-- polyrl:config NAME -->``: every field of algorithm NAME's ``Config``
  dataclass with its type, default, CLI flag and one-line docstring
  (``Config.field_docs()``), so defaults are never retyped;
* ``<!-- polyrl:fields module.Class -->``: the same table for any other dataclass
  whose fields carry docstrings (``PipelineConfig``, ``TrainSettings``);
* ``<!-- polyrl:docstring NAME -->``: the algorithm module's docstring, verbatim;
* ``<!-- polyrl:benchmarks NAME -->``: NAME's records from every
  ``benchmarks/results/*.json`` present at build time;
* ``<!-- polyrl:summary NAME -->``: one line of facts from the registry (class, actions, regimes);
* ``<!-- polyrl:algorithms -->``: the registry as a table (actions, regimes, page).

``on_files`` fails the build (under ``--strict``) when a registered algorithm has
no page, and ``on_page_content`` turns Sphinx roles in docstrings
(``:class:`X` ``) into plain code. Nothing here imports MkDocs, so the tests
call these functions directly.
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.polyrl_docs")  # under "mkdocs.": a warning fails `mkdocs build --strict`

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!--\s*polyrl:(?P<kind>[a-z]+)(?:\s+(?P<arg>[\w.\-]+))?\s*-->")
ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):<code>~?([^<]*)</code>")
MATH_BLOCK = re.compile(r"^\$\$\n(.*?)\n\$\$$", re.S | re.M)
METRICS = {
    "updates_per_s": "gradient updates/s",
    "steps_per_s": "env steps/s",
    "return": "return at budget",
    "seconds_to_475": "seconds to return 475",
    "normalized_score": "normalised score",
    "offline_score": "score after offline training",
    "first_online_score": "score at the first online evaluation",
    "handoff_drop": "drop at the hand-off (points)",
    "min_online_score": "worst online score",
    "final_score": "score at the end of the online budget",
    "steps_to_threshold": "env steps to the threshold score",
    "wall_s": "wall-clock seconds per run",
}


class DocsError(ValueError):
    """A marker that cannot be rendered (unknown algorithm or class, missing docstring)."""


# -- tables from dataclasses -----------------------------------------------------------------------
def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _declared_in(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO whose own body declares field ``name`` (the most derived one)."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> one-line docstring, with the parser every config uses (``polyrl.config.field_docs``)."""
    from polyrl.config import field_docs as docs

    return docs(cls)


def fields_table(cls: type, *, flags: bool = True) -> str:
    """A Markdown table of ``cls``'s dataclass fields: name (and, with ``flags``, the ``polyrl train`` option
    generated from it), type, default, docstring, and the base class that declares it when not ``cls``."""
    docs = field_docs(cls)
    rows = ["| Field | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.name not in docs:
            raise DocsError(f"{cls.__module__}.{cls.__qualname__}.{f.name} has no docstring")
        default = _default(f)
        shown = "required" if default is dataclasses.MISSING else f"`{default!r}`"
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        typ = " ".join(typ.split())  # inside a code span the table keeps its pipes ("float | None") as text
        name = f"`{f.name}`" + (f"<br>`--{f.name.replace('_', '-')}`" if flags else "")
        owner = _declared_in(cls, f.name)
        origin = "" if owner is cls else f"<br><small>from `{owner.__name__}`</small>"
        rows.append(f"| {name} | `{typ}` | {_cell(shown)} | {_cell(docs[f.name])}{origin} |")
    return "\n".join(rows)


def _algo(name: str) -> type:
    from polyrl import algos

    if name not in algos.REGISTRY:
        raise DocsError(f"no registered algorithm {name!r} (registered: {', '.join(algos.names())})")
    return algos.REGISTRY[name]


def config_table(name: str) -> str:
    """Every ``Config`` field of algorithm ``name``, sections flattened; the CLI flags are the ones ``polyrl train`` generates."""
    cls = _algo(name)
    flat = cls.Config.flat_fields()
    short = {f: s for s, f in cls.Config.aliases().items()}
    note = (f"All {len(flat)} fields of `{cls.Config.__module__}.{cls.Config.__name__}`, its sections flattened "
            f"(`replay.batch_size` is `replay_batch_size`), generated from the dataclasses at build time. Set them as "
            f"keyword arguments (`polyrl.make(\"{name}\", ..., field=value)`) or on the command line "
            f"(`polyrl train {name} ... --field-name value`; tuples as `256,256`); a field listed with a short name "
            f"also takes that name, as in earlier releases.")
    rows = ["| Field | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    docs = cls.Config.field_docs()
    for section in dataclasses.fields(cls.Config):  # each section as a whole (its fields follow, flattened)
        if any(f.path[0] == section.name and len(f.path) > 1 for f in flat):
            kind = getattr(section.type, "__name__", str(section.type))
            rows.append(f"| `{section.name}`<br>`--{section.name.replace('_', '-')}` | `{kind}` | {_cell(f'`{section.default!r}`')} | "
                        f"{_cell(docs.get(section.name, ''))} Sets the section's fields at once "
                        f"(`--{section.name.replace('_', '-')} FIELD=V,...`); they are listed below as `{section.name}_*`. |")
    for f in flat:
        if not f.doc:
            raise DocsError(f"{cls.Config.__name__}.{f.name} has no docstring")
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        typ = " ".join(str(typ).replace("typing.", "").split())
        names = [f.name] + ([short[f.name]] if f.name in short else [])
        flag = "<br>".join(f"`--{n.replace('_', '-')}`" for n in names)
        origin = "" if f.owner is cls.Config else f"<br><small>from `{f.owner.__name__}`</small>"
        rows.append(f"| `{f.name}`<br>{flag} | `{typ}` | {_cell(f'`{f.default!r}`')} | {_cell(f.doc)}{origin} |")
    return note + "\n\n" + "\n".join(rows)


def class_fields(path: str) -> str:
    """The fields table of the dataclass at ``module.Class`` (no CLI flags: only algorithm configs map 1:1 onto them)."""
    module, _, qualname = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError, ValueError):
        raise DocsError(f"no class {path!r}") from None
    if not dataclasses.is_dataclass(cls):
        raise DocsError(f"{path} is not a dataclass")
    return fields_table(cls, flags=False)


def module_docstring(name: str) -> str:
    """The algorithm module's docstring as a collapsed, verbatim block."""
    cls = _algo(name)
    module = importlib.import_module(cls.__module__)
    text = (module.__doc__ or "").strip("\n")
    if not text:
        raise DocsError(f"{cls.__module__} has no module docstring")
    body = "\n".join(("    " + line) if line.strip() else "" for line in ["```text", *text.splitlines(), "```"])
    return f'??? quote "The docstring of `{cls.__module__}`, verbatim"\n\n{body}\n'


def summary(name: str) -> str:
    """Class, action spaces, regime and online phase of algorithm ``name``, as the registry declares them."""
    cls = _algo(name)
    online = (f"continues online ({cls.online_regime.replace('_', '-')}) after `start_online()`" if cls.online_regime
              else "no online phase")
    how = f"`polyrl train {name} --dataset PATH`" if cls.regime == "offline" else f"`polyrl train {name} ENV`"
    return (f"**Class** `{cls.__module__}.{cls.__name__}` · **actions** {', '.join(cls.action_kinds)} · "
            f"**regime** {cls.regime.replace('_', '-')}, {online} · **train** {how}")


def algorithms_table() -> str:
    """The registry: name (linked to its page), actions, regime, online phase, first docstring line."""
    from polyrl import algos

    rows = ["| Algorithm | Actions | Regime | Continues online | Summary |", "| --- | --- | --- | --- | --- |"]
    for name in algos.names():
        cls = algos.REGISTRY[name]
        summary = (importlib.import_module(cls.__module__).__doc__ or "").strip().splitlines()[0]
        online = f"yes ({cls.online_regime.replace('_', '-')})" if cls.online_regime else "—"
        rows.append(f"| [`{name}`]({name}.md) | {', '.join(cls.action_kinds)} | {cls.regime.replace('_', '-')} | {online} "
                    f"| {_cell(summary)} |")
    return "\n".join(rows)


# -- benchmark tables --------------------------------------------------------------------------------
def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = value + 0.0  # -0.0 -> 0.0
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


def _value(record: dict[str, Any], who: str) -> str:
    text = _num(record.get(who))
    std = record.get(f"{who}_std")
    return text if std is None or record.get(who) is None else f"{text} ± {_num(std)}"


def _comparison(record: dict[str, Any]) -> tuple[str, str]:
    """(what polyrl is compared with, its value): the peer library, else the strongest polyrl baseline."""
    if record.get("peer") is not None:
        return _cell(record.get("peer_name", "peer")), _value(record, "peer")
    if record.get("baseline") is not None:
        return f"polyrl `{record.get('baseline_algo', '?')}` (baseline)", _num(record.get("baseline"))
    return _cell(record.get("peer_name") or "—"), "—"


def _verdict(record: dict[str, Any]) -> str:
    parts = []
    if record.get("ratio") is not None:
        parts.append(f"{record['ratio']:.2f}x")
    if record.get("difference") is not None:
        se = record.get("difference_se")
        parts.append(f"{record['difference']:+.1f}" + (f" ± {se:.1f}" if se is not None else "") + " (diff.)")
    if "target_met" in record:
        parts.append("target met" if record["target_met"] else "target missed")
    return "; ".join(parts) or "—"


def _algo_link(name: str) -> str:
    """``name`` linked to its algorithm page (from a page at the docs root) when it is registered."""
    from polyrl import algos

    return f"[`{name}`](algorithms/{name}.md)" if name in algos.REGISTRY else f"`{name}`"


def benchmark_records(name: str, results_dir: Path | None = None) -> list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]:
    """``(file, its header, NAME's records)`` for every results file with records of algorithm ``name``
    (``"all"``: every record)."""
    out = []
    for path in sorted((results_dir or ROOT / "benchmarks" / "results").glob("*.json")):
        data = json.loads(path.read_text())
        records = [r for r in data.get("records", []) if name == "all" or r.get("algo") == name]
        if records:
            out.append((path, data, records))
    return out


def _seeds(record: dict[str, Any]) -> Any:
    return len(record["seeds"]) if isinstance(record.get("seeds"), list) else record.get("repeats", "?")


def benchmarks(name: str, results_dir: Path | None = None) -> str:
    """NAME's benchmark records (``"all"``: everyone's) as one table per results file, with the notes of each metric.

    Seeds and budget get a column only when they differ between the file's records; otherwise the
    header states them once.
    """
    found = benchmark_records(name, results_dir)
    every = name == "all"
    if not found:
        return (f"No record for `{name}` in `benchmarks/results/` yet. The harnesses in `benchmarks/` "
                "(see [Benchmarks and published numbers](../limitations.md)) add one when they cover it.")
    parts = []
    for path, data, records in found:
        machine = data.get("machine", {})
        peers = ", ".join(f"{k} {v}" for k, v in (data.get("peer_versions") or {}).items() if isinstance(v, str))
        seeds = {_seeds(r) for r in records}
        budgets = {str(r.get("budget", "?")) for r in records}
        seed_column, budget_column = len(seeds) > 1, len(budgets) > 1
        shared = ([] if seed_column else [f"{next(iter(seeds))} seed(s)"]) + \
                 ([] if budget_column else [f"budget: {next(iter(budgets))}"])
        head = (f"**`benchmarks/results/{path.name}`** ({data.get('benchmark', path.stem)}, {data.get('date', '?')}; "
                f"{machine.get('cpus', '?')} CPUs, torch {machine.get('torch', '?')} with "
                f"{machine.get('torch_threads', '?')} thread(s)" + (f"; peers: {_cell(peers)}" if peers else "") + ")"
                + (f". {_cell('; '.join(shared))}." if shared else ""))
        columns = ["Task"] + (["Algorithm"] if every else []) + ["Metric", "polyrl", "Compared with", "Their value",
                                                                   "Ratio / difference"]
        columns += (["Seeds"] if seed_column else []) + (["Budget"] if budget_column else [])
        align = {"polyrl": "---:", "Their value": "---:", "Seeds": "---:"}
        rows = ["| " + " | ".join(columns) + " |", "| " + " | ".join(align.get(c, "---") for c in columns) + " |"]
        notes: dict[str, str] = {}
        loaded = False
        for r in records:
            metric = METRICS.get(r.get("metric", "?"), str(r.get("metric", "?")).replace("_", " "))
            flag = ""
            timed = "per_s" in str(r.get("metric")) or str(r.get("metric")).startswith("seconds")
            if timed and (r.get("max_background_load") or 0) > 0.5:
                flag, loaded = " †", True
            who, theirs = _comparison(r)
            cells = [_cell(r.get("task", "?"))] + ([_algo_link(str(r.get("algo")))] if every else [])
            cells += [_cell(metric) + flag, _value(r, "polyrl"), who, theirs, _cell(_verdict(r))]
            cells += ([str(_seeds(r))] if seed_column else []) + ([_cell(r.get("budget", "?"))] if budget_column else [])
            rows.append("| " + " | ".join(cells) + " |")
            if r.get("notes"):
                notes.setdefault(metric, str(r["notes"]))
        parts.append(head + "\n\n" + "\n".join(rows))
        if loaded:
            parts.append("† Other processes used more than half a core during these runs: treat their timings as rough.")
        parts.append("\n".join(f"- **{_cell(m)}**: {_cell(n)}" for m, n in notes.items()))
    parts.append("Ratios > 1 mean polyrl is better (faster, or higher return). The full protocol, and the command "
                 "that reproduces each record, are in `BENCHMARKS.md` and the JSON file.")
    return "\n\n".join(p for p in parts if p)


# -- page rendering ----------------------------------------------------------------------------------
def render_marker(kind: str, arg: str | None, results_dir: Path | None = None) -> str:
    """The Markdown that replaces one marker."""
    if kind == "algorithms":
        return algorithms_table()
    if arg is None:
        raise DocsError(f"marker polyrl:{kind} needs an argument")
    if kind == "config":
        return config_table(arg)
    if kind == "summary":
        return summary(arg)
    if kind == "fields":
        return class_fields(arg)
    if kind == "docstring":
        return module_docstring(arg)
    if kind == "benchmarks":
        return benchmarks(arg, results_dir)
    raise DocsError(f"unknown marker polyrl:{kind}")


def render_markdown(markdown: str, results_dir: Path | None = None) -> str:
    """``markdown`` with every ``polyrl:`` marker replaced (raises :class:`DocsError` on a bad one)."""
    return MARKER.sub(lambda m: render_marker(m["kind"], m["arg"], results_dir), markdown)


def check_math(markdown: str) -> list[str]:
    """Display-math blocks (``$$ ... $$`` on their own lines) whose braces do not balance."""
    bad = []
    for m in MATH_BLOCK.finditer(markdown):
        depth = 0
        for ch in re.sub(r"\\[{}]", "", m[1]):
            depth += (ch == "{") - (ch == "}")
            if depth < 0:
                break
        if depth != 0:
            bad.append(m[1].strip().splitlines()[0][:60])
    return bad


def algorithm_page(name: str, docs_dir: Path | None = None) -> Path:
    """Where algorithm ``name``'s page lives."""
    return (docs_dir or ROOT / "docs") / "algorithms" / f"{name}.md"


# -- MkDocs events -----------------------------------------------------------------------------------
def on_files(files: Any, config: Any) -> Any:
    from polyrl import algos

    for name in algos.names():
        page = algorithm_page(name, Path(config["docs_dir"]))
        if not page.exists():
            log.warning(f"algorithm {name!r} has no page: add docs/algorithms/{name}.md (copy another algorithm's) "
                        "and list it in mkdocs.yml's nav")
        elif f"polyrl:config {name}" not in page.read_text():
            log.warning(f"{page.name} lacks the <!-- polyrl:config {name} --> marker that generates its config table")
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for problem in check_math(markdown):
        log.warning(f"{page.file.src_uri}: unbalanced braces in the equation starting {problem!r}")
    try:
        return render_markdown(markdown, Path(config["config_file_path"]).parent / "benchmarks" / "results")
    except DocsError as e:
        log.warning(f"{page.file.src_uri}: {e}")
        return markdown


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    return ROLE.sub(lambda m: f"<code>{m[1].rsplit('.', 1)[-1] if m[0].count('~') else m[1]}</code>", html_text)
