"""Regenerate the report images in ``docs/assets/`` from a real, tiny ``polyrl pipeline`` run.

    python docs/scripts/make_assets.py            # about 3 minutes on one CPU core
    python docs/scripts/make_assets.py --keep runs/docs-assets   # keep the run directory to look at

The run is the main job of the README at toy scale on Pendulum-v1 (no MuJoCo
needed): a *medium* dataset made with polyrl's own SAC, Uni-O4 trained
offline, model-based OPE of its candidates, online fine-tuning, evaluation and
the HTML report. The images are the report's own plots (``polyrl.report``
embeds them as PNG ``data:`` URIs), extracted and palette-compressed so the
repository stays small. Budgets are far too small for good returns: the
images show what the report looks like, not what Uni-O4 achieves.
"""

from __future__ import annotations

import argparse
import base64
import io
import re
import shutil
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
IMAGES = {"Learning curve": "report-learning-curve.png", "OPE estimates vs real returns": "report-ope.png"}


def run_pipeline(run_dir: Path) -> Path:
    """The tiny pipeline; returns the path of its ``report.html``."""
    import torch

    from polyrl.pipeline import Pipeline, PipelineConfig

    torch.set_num_threads(1)
    cfg = PipelineConfig(
        env="Pendulum-v1", recipe="medium", recipe_transitions=5_000, recipe_train_steps=6_000,
        algo="unio4", offline_steps=2_000, online_steps=10_000, eval_every=2_000, offline_evals=4, eval_episodes=5,
        ope_rollouts=20, ope_model_epochs=50, seed=0,
        algo_config={"batch_size": 128, "actor_hidden": [64, 64], "q_hidden": [64, 64], "v_hidden": [64, 64],
                     "model_hidden": [64, 64], "model_epochs": 30, "gate_every": 50, "gate_states": 128,
                     "n_steps": 1024, "selection_episodes": 3},
    )
    state = Pipeline(cfg, run_dir, progress=False).run()
    return Path(state["stages"]["report"]["path"])


def extract_images(report: Path) -> dict[str, bytes]:
    """``{figure title: PNG bytes}`` of the images embedded in a report."""
    html = report.read_text()
    found = {}
    for src, title in re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', html):
        found[title] = base64.b64decode(src)
    return found


def compress(png: bytes, colors: int = 64) -> bytes:
    """The same image as a palette PNG (plots have few colours; this cuts the size about 3x)."""
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors).save(out, format="PNG", optimize=True)
    return out.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", default=None, help="run directory to keep (default: a temporary one, deleted)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polyrl-docs-"))
    run_dir = Path(args.keep) if args.keep else tmp / "run"
    try:
        images = extract_images(run_pipeline(run_dir))
        ASSETS.mkdir(parents=True, exist_ok=True)
        for prefix, name in IMAGES.items():
            title = next((t for t in images if t.startswith(prefix)), None)
            if title is None:
                raise SystemExit(f"the report has no figure titled {prefix!r}; found {list(images)}")
            data = compress(images[title])
            (ASSETS / name).write_bytes(data)
            print(f"wrote {ASSETS / name} ({len(data) / 1024:.0f} KiB) from {title!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
