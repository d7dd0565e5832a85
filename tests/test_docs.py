"""The documentation cannot drift from the code.

* Every registered algorithm has a page whose generated config table lists every
  ``Config`` field with its default and docstring (rendered by the MkDocs hook's
  own functions; CI's ``mkdocs build --strict`` covers links and the full build).
* Every page is in the navigation, and every equation's braces balance.
* The Python blocks marked ``<!-- test -->`` run, in order per page, in a
  temporary directory (tiny budgets, CPU).
* Every ``polyrl ...`` command line in a bash block names a real command and
  only options that command accepts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

from polyrl import algos
from polyrl.cli import COMMANDS
from polyrl.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if not {"hooks", "scripts"} & set(p.relative_to(DOCS).parts))
TEST_BLOCK = re.compile(r"<!--\s*test\s*-->\n```python\n(.*?)\n```", re.S)
TEST_MARKER = re.compile(r"<!--\s*test\s*-->")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _load_hook():
    spec = importlib.util.spec_from_file_location("polyrl_docs_hook", DOCS / "hooks" / "polyrl_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


def _rel(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


# -- algorithm pages and generated tables -------------------------------------------------------
@pytest.mark.parametrize("name", algos.names())
def test_every_algorithm_has_a_page_with_its_generated_parts(name):
    page = hook.algorithm_page(name)
    assert page.exists(), f"add docs/algorithms/{name}.md for the registered algorithm {name!r}"
    text = page.read_text()
    for kind in ("summary", "config", "docstring", "benchmarks"):
        assert f"<!-- polyrl:{kind} {name} -->" in text, f"{page.name} lacks its polyrl:{kind} marker"
    for section in ("## What it is for", "## Losses", "## Implementation details and deviations", "## Configuration"):
        assert section in text, f"{page.name} lacks the section {section!r}"


@pytest.mark.parametrize("name", algos.names())
def test_config_table_lists_every_field_with_default_and_meaning(name):
    cfg = algos.get(name).Config
    rendered = hook.render_markdown(hook.algorithm_page(name).read_text())
    assert "<!-- polyrl:" not in rendered
    docs = cfg.field_docs()
    rows = {line.split("`")[1]: line for line in rendered.splitlines() if line.startswith("| `")}
    for field in dataclasses.fields(cfg):
        assert field.name in rows, f"{name}: field {field.name} missing from the generated table"
        row = rows[field.name]
        assert f"`--{field.name.replace('_', '-')}`" in row
        assert f"`{field.default!r}`" in row, f"{name}.{field.name}: default {field.default!r} not shown"
        assert hook._cell(docs[field.name]) in row, f"{name}.{field.name}: docstring not shown"


def test_field_tables_of_other_dataclasses_and_their_errors():
    table = hook.class_fields("polyrl.pipeline.PipelineConfig")
    assert "`algo_config`" in table and "`{}`" in table and "`'unio4'`" in table
    assert "`eval_every`" in hook.class_fields("polyrl.train.trainer.TrainSettings")

    @dataclasses.dataclass
    class Undocumented:
        x: int = 1

    with pytest.raises(hook.DocsError, match="no docstring"):
        hook.fields_table(Undocumented)
    with pytest.raises(hook.DocsError, match="no registered algorithm"):
        hook.render_markdown("<!-- polyrl:config nope -->")
    with pytest.raises(hook.DocsError, match="unknown marker"):
        hook.render_markdown("<!-- polyrl:nonsense ppo -->")


def test_algorithm_overview_lists_the_registry():
    table = hook.algorithms_table()
    for name, cls in algos.REGISTRY.items():
        assert f"[`{name}`]({name}.md)" in table
        assert cls.regime.replace("_", "-") in table


# -- benchmarks ---------------------------------------------------------------------------------
def test_benchmark_tables_show_every_stored_record():
    results = ROOT / "benchmarks" / "results"
    for path in sorted(results.glob("*.json")):
        for record in json.loads(path.read_text()).get("records", []):
            if record.get("algo") not in algos.REGISTRY:
                continue
            table = hook.benchmarks(record["algo"], results)
            assert f"benchmarks/results/{path.name}" in table
            assert hook._cell(record["task"]) in table
    assert "No record for `ppo`" in hook.benchmarks("ppo", results / "nonexistent")


def test_benchmark_tables_render_records_without_a_peer(tmp_path):
    record = {"task": "hopper-medium", "algo": "unio4", "metric": "offline_score", "polyrl": 52.5, "peer": None,
              "ratio": None, "baseline_algo": "iql", "baseline": 50.0, "difference": 2.5, "target_met": True,
              "seeds": [0, 1], "budget": "20000 updates", "runs": {"polyrl": [50.0, 55.0]}}
    (tmp_path / "offline_to_online.json").write_text(json.dumps({"benchmark": "offline_to_online", "records": [record]}))
    table = hook.benchmarks("unio4", tmp_path)
    assert "polyrl `iql` (baseline)" in table and "52.5" in table and "+2.5 (diff.)" in table and "target met" in table
    assert "[`unio4`](algorithms/unio4.md)" in hook.benchmarks("all", tmp_path)


# -- site structure -----------------------------------------------------------------------------
def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return [f for item in node for f in _nav_files(item)]


def test_every_page_is_in_the_navigation_and_exists():
    yaml = pytest.importorskip("yaml")  # PyYAML comes with MkDocs (the docs extra)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_files(config["nav"])
    assert sorted(nav) == sorted(_rel(p) for p in PAGES)
    assert config["hooks"] == ["docs/hooks/polyrl_docs.py"]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_equations_balance_and_test_markers_precede_python(page):
    text = page.read_text()
    assert hook.check_math(text) == []
    assert len(TEST_MARKER.findall(text)) == len(TEST_BLOCK.findall(text)), \
        f"{_rel(page)}: every <!-- test --> must sit on the line right before a ```python block"


def test_sphinx_roles_in_docstrings_become_code():
    html = "see :class:<code>~polyrl.data.Dataset</code> and :meth:<code>Agent.load</code>"
    assert hook.on_page_content(html, None, None, None) == "see <code>Dataset</code> and <code>Agent.load</code>"


# -- runnable snippets --------------------------------------------------------------------------
SNIPPET_PAGES = [p for p in PAGES if TEST_BLOCK.search(p.read_text())]


def test_the_guides_have_runnable_snippets():
    covered = {_rel(p) for p in SNIPPET_PAGES}
    for page in ("getting-started.md", "guides/datasets.md", "guides/offline-to-online.md", "guides/ope.md",
                 "guides/sweeps.md", "guides/deployment.md"):
        assert page in covered, f"{page} has no <!-- test --> block"


@pytest.mark.parametrize("page", SNIPPET_PAGES, ids=_rel)
def test_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for i, code in enumerate(TEST_BLOCK.findall(page.read_text())):
        exec(compile(code, f"{_rel(page)}[block {i + 1}]", "exec"), namespace)


# -- command lines ------------------------------------------------------------------------------
def _command_lines() -> list[tuple[str, list[str]]]:
    """``(page, tokens after 'polyrl')`` for every polyrl invocation in a bash block."""
    found = []
    for page in PAGES:
        for lang, body in FENCE.findall(page.read_text()):
            if lang not in ("bash", "sh"):
                continue
            for line in body.splitlines():
                line = line.split(" #")[0]
                for segment in re.split(r"&&|;|\|", line):
                    words = shlex.split(segment, comments=True)
                    if "polyrl" in words:
                        found.append((_rel(page), words[words.index("polyrl") + 1:]))
    return found


COMMAND_LINES = _command_lines()


def test_the_docs_show_commands():
    assert {words[0] for _, words in COMMAND_LINES if words} >= {"train", "pipeline", "ope", "report", "eval", "dataset",
                                                                 "collect"}


@pytest.mark.parametrize(("page", "words"), COMMAND_LINES, ids=[f"{p}:{' '.join(w)[:60]}" for p, w in COMMAND_LINES])
def test_command_lines_use_real_commands_and_options(page, words, capsys):
    assert words and words[0] in COMMANDS, f"{page}: unknown command in `polyrl {' '.join(words)}`"
    argv = [words[0]]
    if words[0] == "train" and len(words) > 1 and not words[1].startswith("-"):
        assert words[1] in algos.REGISTRY, f"{page}: unknown algorithm {words[1]!r}"
        argv.append(words[1])
    if words[0] == "dataset":
        argv.append(words[1])
    try:
        cli_main([*argv, "--help"])  # argparse exits after printing; `train --help` alone returns
    except SystemExit as e:
        assert e.code in (0, None)
    help_text = capsys.readouterr().out
    for word in words[1:]:
        if word.startswith("--"):
            flag = word.split("=")[0]
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text), \
                f"{page}: `polyrl {' '.join(argv)}` has no option {flag}"
