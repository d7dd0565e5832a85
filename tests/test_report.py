"""``polyrl report`` on hand-written run directories, checked as text and, in headless Chromium, as rendered pages."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from polyrl.errors import ConfigError
from polyrl.pipeline import STAGES
from polyrl.report import cli_main, eval_curve, load_run, write_report

CURVE_TITLE = "Learning curve: iql on Hopper-v5 (seed 3)"
OPE_TITLE = "OPE estimates vs real returns"
COMPARE_TITLE = "Comparison of runs"


def make_run(root: Path, name: str = "o2o", *, algo: str = "iql", seed: int = 3, extras: bool = True,
             truncated: bool = False) -> Path:
    """A run directory as an offline-to-online pipeline leaves it: 3 offline evals (updates), then 3 online (env steps)."""
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"algo": algo, "env": "Hopper-v5", "seed": seed, "polyrl_version": "0.1.0"}))
    rows = [{"step": 10, "phase": "offline", "loss/q": 1.5, "loss/v": "nan"}]
    rows += [{"step": s, "phase": "offline", "eval/return": r, "eval/return_std": 40.0, "eval/normalized_score": r / 30}
             for s, r in ((500, 400.0), (1000, 900.0), (1500, 1200.0))]
    rows += [{"step": 200, "phase": "online", "train/episode_return": 700.0}]
    rows += [{"step": s, "phase": "online", "eval/return": r, "eval/return_std": 80.0}
             for s, r in ((400, 1100.0), (800, "inf"), (1200, 1500.0), (1600, 1700.0))]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (run / "metrics.jsonl").write_text(text + ('{"step": 2000, "phase": "online", "eval/ret' if truncated else ""))
    if extras:
        (run / "pipeline.json").write_text(json.dumps({
            "stages": {"offline": {"status": "done", "seconds": 12.5}, "online": {"status": "done", "seconds": 30.25}},
            "handoff": {"offline_updates": 1500}}))
        (run / "ope.json").write_text(json.dumps({"candidates": [
            {"name": "step_1000", "method": "fqe", "estimate": 850.0, "ci_low": 700.0, "ci_high": 990.0,
             "real_return": 900.0, "real_return_std": 50.0, "selected": False},
            {"name": "step_1500", "method": "fqe", "estimate": 1250.0, "ci_low": 1100.0, "ci_high": 1400.0,
             "real_return": 1200.0, "real_return_std": 60.0, "selected": True}]}))
        (run / "scores.json").write_text(json.dumps({
            "env": "Hopper-v5", "reference": {"random": -20.27, "expert": 3234.3, "source": "d4rl"},
            "phases": [{"name": "offline", "return": 1200.0, "return_std": 40.0, "score": 37.5},
                       {"name": "online", "return": 1700.0, "return_std": 80.0, "score": 52.9}]}))
    return run


def test_report_has_every_section(tmp_path):
    run = make_run(tmp_path)
    path = write_report([run])
    assert path == run / "report.html"
    page = path.read_text()
    assert CURVE_TITLE in page and OPE_TITLE in page and COMPARE_TITLE not in page
    assert page.count("<img ") == 2 and page.count('src="data:image/png;base64,') == 2
    assert f'alt="{CURVE_TITLE}" title="{CURVE_TITLE}"' in page and f"<figcaption>{CURVE_TITLE}</figcaption>" in page
    assert "step_1500" in page and "d4rl" in page and "30.25" in page and "52.90" in page
    assert not re.search(r'(src|href)="(?!data:)', page), "the report must not load external resources"


def test_curve_puts_online_after_offline(tmp_path):
    curve = eval_curve(load_run(make_run(tmp_path)))
    assert curve is not None and curve.handoff == 1500.0
    assert curve.x.tolist() == [500, 1000, 1500, 1900, 2700, 3100]  # online step 800 ("inf") is skipped
    assert curve.y.tolist() == [400, 900, 1200, 1100, 1500, 1700]
    assert curve.xlabel == "offline updates | online env steps"


def test_optional_files_and_truncated_line(tmp_path):
    run = make_run(tmp_path, extras=False, truncated=True)
    page = write_report([run], tmp_path / "out" / "r.html").read_text()
    assert page.count("<img ") == 1 and CURVE_TITLE in page
    assert OPE_TITLE not in page and "Pipeline" not in page and "Scores" not in page


def test_comparison_only_with_two_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b", algo="cql", seed=1, extras=False)
    path = write_report([a, b])
    assert path == Path("report.html")
    page = path.read_text()
    assert page.count(COMPARE_TITLE) == 3  # alt, title, caption
    assert page.count("<img ") == 4  # two learning curves, one OPE plot, the comparison


def test_missing_run_dir_or_metrics_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        write_report([tmp_path / "nope"])
    run = make_run(tmp_path)
    (run / "metrics.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"has no metrics\.jsonl"):
        write_report([run])


def test_text_is_escaped(tmp_path):
    run = make_run(tmp_path, algo="<b>x&y</b>")
    page = write_report([run]).read_text()
    assert "<b>x&y</b>" not in page and "&lt;b&gt;x&amp;y&lt;/b&gt;" in page


def test_cli_writes_the_report(tmp_path, capsys):
    run, out = make_run(tmp_path), tmp_path / "report" / "page.html"
    assert cli_main([str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().count("<img ") == 2


# Runs after the images load: reports each image's size and whether its pixels vary, plus the figure captions.
RENDER_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map((img) => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    let distinct = 0;
    if (img.naturalWidth > 0) {
      const ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      const seen = new Set();
      for (let i = 0; i < data.length && seen.size < 50; i += 4) seen.add(data[i] * 65536 + data[i + 1] * 256 + data[i + 2]);
      distinct = seen.size;
    }
    return {title: img.title, width: img.naturalWidth, height: img.naturalHeight, complete: img.complete, distinct};
  });
  const captions = Array.from(document.querySelectorAll("figcaption")).map((c) => c.textContent);
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({images, captions});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        if os.environ.get("POLYRL_SKIP_BROWSER") == "1":
            pytest.skip("POLYRL_SKIP_BROWSER=1")
        pytest.fail("the report's browser test needs Debian's chromium (`apt-get install chromium`; .ci/run installs it), "
                    "or set POLYRL_SKIP_BROWSER=1 to skip it")
    return found


def test_report_renders_in_chromium(tmp_path, monkeypatch):
    chromium = _chromium()
    monkeypatch.chdir(tmp_path)
    page = write_report([make_run(tmp_path, "a"), make_run(tmp_path, "b", algo="cql", seed=1)]).read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", RENDER_CHECK + "</body>"))
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    found = re.search(r'<pre id="render-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no render check in Chromium's DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))
    titles = ["Learning curve: iql on Hopper-v5 (seed 3)", OPE_TITLE, "Learning curve: cql on Hopper-v5 (seed 1)",
              OPE_TITLE, COMPARE_TITLE]
    assert result["captions"] == titles
    assert [img["title"] for img in result["images"]] == titles
    for img in result["images"]:
        assert img["complete"] and img["width"] > 300 and img["height"] > 200, img
        assert img["distinct"] > 5, f"image {img['title']!r} rendered blank: {img}"


def test_stages_in_pipeline_order_and_the_datasets_own_scores(tmp_path):
    run = make_run(tmp_path)
    pipeline = json.loads((run / "pipeline.json").read_text())
    pipeline["stages"] = {name: {"status": "done", "seconds": 1.0} for name in sorted(STAGES)}  # a sorted file
    (run / "pipeline.json").write_text(json.dumps(pipeline))
    scores = json.loads((run / "scores.json").read_text())
    scores["dataset_reference"] = {"random": 200.0, "expert": 1200.0, "source": "polyrl-measured (medium dataset)"}
    (run / "scores.json").write_text(json.dumps(scores))
    page = write_report([run]).read_text()
    cells = re.findall(r"<tr><td>(\w+)</td><td>done</td>", page)
    assert cells == list(STAGES)
    # offline 1200 -> 100.0 and online 1700 -> 150.0 on the dataset's own scale
    assert "would give offline 100.00, online 150.00" in page
