"""What the benchmark harnesses share (standard library only).

A harness (``online.py``, ``offline.py``, ...) keeps its own cases, its own
runner invocation and its own tables; the pieces every one of them needs are
here:

* ``Harness``: a harness's results JSON, its quick-run paths and its section of
  ``BENCHMARKS.md``, with merging records into the JSON and re-rendering the
  section (``--render``);
* ``add_flags``: the command-line flags the harnesses spell the same way;
* ``Peer``: a peer library's own virtualenv, created or repaired on first use;
* running: ``child_env`` / ``run_measured`` (one measured run in a fresh
  interpreter, with the CPU other processes used meanwhile), ``alternate``
  (polyrl, peer, polyrl, peer, ... over the seeds), ``run_to_log`` /
  ``reuse_finished`` / ``run_jobs`` (resumable runs, several at a time);
* numbers: ``median_or_none``, ``ratio``, ``round_or_none``, ``fmt_number``,
  ``machine_info``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARKDOWN = ROOT / "BENCHMARKS.md"
WORK = HERE / ".work"
BUSY_WARNING = 0.25  # cores used by other processes during a run above which its timing is flagged


# -- results JSON and BENCHMARKS.md -----------------------------------------------------------------
def record_key(r: dict[str, Any]) -> tuple[str, str, str]:
    """What identifies a record: ``(task, algo, metric)``."""
    return r["task"], r["algo"], r["metric"]


def merged_records(path: Path, new: list[dict[str, Any]], sort_key: Callable[[dict[str, Any]], Any]
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(old file content, old records replaced or extended by new ones, sorted)`` for the results JSON at ``path``."""
    old = json.loads(path.read_text()) if path.exists() else {}
    records = {record_key(r): r for r in old.get("records", [])}
    records.update({record_key(r): r for r in new})
    return old, sorted(records.values(), key=sort_key)


def write_results(path: Path, data: dict[str, Any]) -> None:
    """Write the results JSON through a temporary file, so an interrupted write keeps the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (through ``<path>.lock``) for the block: two harness processes (one per
    core, say) that merge into the same results JSON and BENCHMARKS.md then take turns instead of losing records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_section(path: Path, start: str, end: str, block: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` by ``block`` (append it if absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def shown_path(path: Path) -> Path:
    """``path`` relative to the repository when it is inside it (as the markdown and the commands show it)."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


@dataclass(frozen=True)
class Peer:
    """A peer library that lives in its own virtualenv, ``benchmarks/.venvs/<flag>`` (``--<flag>-venv``)."""

    name: str  # in the messages about the virtualenv ("stable-baselines3")
    label: str  # in the help and the progress lines ("SB3")
    flag: str
    packages: tuple[str, ...]  # pip-installed after torch
    probe_code: str  # prints one JSON object of versions last, with a "torch" entry

    @property
    def venv(self) -> Path:
        return HERE / ".venvs" / self.flag

    def probe(self, venv: Path) -> dict[str, Any] | None:
        """Versions inside the venv, or None if it is missing or broken."""
        return probe_venv(venv, self.probe_code)

    def venv_arg(self, args: argparse.Namespace) -> Path:
        return getattr(args, f"{self.flag}_venv")

    def ensure(self, args: argparse.Namespace) -> dict[str, Any]:
        """Create or repair the peer's virtualenv (``--<flag>-venv``) and say which versions it holds."""
        venv = self.venv_arg(args)
        versions = ensure_venv(venv, self.name, self.packages, self.probe)
        print(f"{self.label} venv: {venv} ({json.dumps(versions)})", flush=True)
        return versions


@dataclass(frozen=True)
class Harness:
    """One harness's outputs: ``benchmarks/results/<name>.json`` and the ``<name>`` section of BENCHMARKS.md."""

    name: str
    peer: Peer | None = None
    quick_markdown_name: str | None = None  # default BENCHMARKS-<name>-quick.md

    @property
    def results(self) -> Path:
        return HERE / "results" / f"{self.name}.json"

    @property
    def start(self) -> str:
        return f"<!-- {self.name}:start -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"

    def outputs(self, args: argparse.Namespace) -> tuple[Path, Path]:
        """``(results JSON, markdown file)`` of a run: ``--out`` / ``--markdown``, else the real ones, or files under
        ``benchmarks/.work/`` with ``--quick``."""
        quick_md = self.quick_markdown_name or f"BENCHMARKS-{self.name}-quick.md"
        out = args.out or (WORK / f"{self.name}-quick.json" if args.quick else self.results)
        md = args.markdown or (WORK / quick_md if args.quick else MARKDOWN)
        return out, md

    def header(self, polyrl_version: str, threads: int, date: str, **extra: Any) -> dict[str, Any]:
        """The fields a results JSON starts with, then ``extra``."""
        return {"benchmark": self.name, "polyrl_version": polyrl_version, "machine": machine_info(threads),
                "date": date, **extra}

    def merge(self, path: Path, new: list[dict[str, Any]], header: dict[str, Any],
              sort_key: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        """Merge ``new`` into the records at ``path`` (a record replaces the one with its key), under ``header``;
        write and return the file's content."""
        data = dict(header, records=merged_records(path, new, sort_key)[1])
        write_results(path, data)
        return data

    def write_markdown(self, path: Path, block: str) -> None:
        write_section(path, self.start, self.end, block)

    def render_stored(self, block: Callable[[dict[str, Any]], str], out: Path | None = None, md: Path | None = None,
                      announce: bool = False) -> None:
        """``--render``: rebuild the section in ``md`` (default BENCHMARKS.md) from the results JSON ``out``
        (default the real one); ``announce`` prints which file was written."""
        out, md = out or self.results, md or MARKDOWN
        self.write_markdown(md, block(json.loads(out.read_text())))
        if announce:
            print(f"wrote {md}")


def cached(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The run's result (``spec["result_path"]``) if it finished before with exactly this spec."""
    path = Path(spec["result_path"])
    if not path.exists():
        return None
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return res if res.get("spec") == spec else None


_print_lock = threading.Lock()


def say(msg: str) -> None:
    """Print one line whole, even from several harness threads."""
    with _print_lock:
        print(msg, flush=True)


def today() -> str:
    return datetime.date.today().isoformat()


# -- the command line -------------------------------------------------------------------------------
def add_flags(p: argparse.ArgumentParser, harness: Harness, *names: str, **helps: str) -> None:
    """Add the flags the harnesses share, in the order ``names`` gives, each with its shared help text unless
    ``helps`` has another under its name. ``venv`` and ``setup`` are the harness's peer's."""
    peer = harness.peer
    flags: dict[str, tuple[str, dict[str, Any], str]] = {
        "repeats": ("--repeats", dict(type=int, default=None), "seeds per case (default 3; 1 with --quick)"),
        "jobs": ("--jobs", dict(type=int, default=1), "runs at once (default 1; 2 on a 2-core machine)"),
        "threads": ("--threads", dict(type=int, default=1), "torch threads for both libraries (default 1)"),
        "quick": ("--quick", dict(action="store_true"), "smoke run with tiny budgets; writes under benchmarks/.work/"),
        "fresh": ("--fresh", dict(action="store_true"), "rerun runs that already have a result"),
        "render": ("--render", dict(action="store_true"), "only regenerate the markdown section from the results JSON"),
        "list": ("--list", dict(action="store_true"), "list the cases and exit"),
        "out": ("--out", dict(type=Path, default=None), f"results JSON (default benchmarks/results/{harness.name}.json)"),
        "markdown": ("--markdown", dict(type=Path, default=None), "markdown file to update (default BENCHMARKS.md)"),
    }
    if peer is not None:
        flags["setup"] = ("--setup", dict(action="store_true"), f"only create/check the {peer.label} virtualenv")
        flags["venv"] = (f"--{peer.flag}-venv", dict(type=Path, default=peer.venv),
                         f"{peer.label} virtualenv (default {peer.venv.relative_to(ROOT)})")
    unknown = set(helps) - set(names)
    if unknown:
        raise ValueError(f"help text for flags not added: {sorted(unknown)}")
    for name in names:
        flag, kwargs, help_text = flags[name]
        p.add_argument(flag, help=helps.get(name, help_text), **kwargs)


def split_csv(values: list[str] | None, lower: bool = True) -> list[str] | None:
    """The items of repeated and/or comma-separated option values (``--task a,b --task c``), or None if none."""
    if not values:
        return None
    return [v.strip().lower() if lower else v.strip() for item in values for v in item.split(",") if v.strip()]


def csv_set(values: list[str] | None) -> set[str] | None:
    """``split_csv`` as a set (lower-cased)."""
    items = split_csv(values)
    return None if items is None else set(items)


# -- peer virtualenvs -------------------------------------------------------------------------------
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


# -- running ----------------------------------------------------------------------------------------
def child_env(threads: int, pythonpath: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a run's interpreter: every thread pool at ``threads``, a fixed hash seed, ``extra``, and
    ``PYTHONPATH`` set to ``pythonpath`` (where the polyrl this process imports lives) or removed."""
    t = str(threads)
    env = dict(os.environ, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, PYTHONHASHSEED="0", **extra)
    if pythonpath is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(pythonpath)
    return env


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


def run_measured(python: str, script: str, spec: dict[str, Any], env: dict[str, str], log: Path, what: str,
                 timeout: float) -> dict[str, Any]:
    """One measured run: ``python benchmarks/<script> '<spec>'`` in a fresh interpreter, its command and output
    kept in ``log``; returns the runner's result line (the last stdout line starting with ``{``) with the
    ``background_load`` during the run. ``what`` names the run in the error if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    load = BackgroundLoad()
    proc = subprocess.run([python, str(HERE / script), json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=str(HERE), timeout=timeout)
    background = load.cores()
    log.write_text(f"$ {python} {script} '{json.dumps(spec)}'\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); log: {log}\n{tail}")
    result = json.loads(lines[-1])
    result["background_load"] = background
    return result


def alternate(seeds: list[int], libs: tuple[str, str], run: Callable[..., dict[str, Any]],
              summarize: Callable[[str, dict[str, Any]], str]) -> dict[str, list[dict[str, Any]]]:
    """Every seed's run of both libraries, alternating (polyrl, peer, polyrl, peer, ...): ``run(lib=..., seed=...)``,
    each reported as it ends (``summarize(lib, result)``) and flagged when other processes competed for the CPU;
    the results by library, in seed order."""
    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    for seed in seeds:
        for lib in libs:
            t = time.perf_counter()
            res = run(lib=lib, seed=seed)
            runs[lib].append(res)
            print(f"  seed {seed} {summarize(lib, res)}  [{time.perf_counter() - t:.0f} s wall]", flush=True)
            if (res["background_load"] or 0.0) > BUSY_WARNING:
                print(f"  WARNING: other processes used {res['background_load']:.2f} cores during this run; "
                      "its timing is skewed (run on an idle machine)", flush=True)
    return runs


def run_to_log(cmd: list[str], shown: str, result_path: Path, env: dict[str, str], timeout: float) -> int:
    """Run ``cmd`` with its output in ``log.txt`` next to ``result_path`` (which is removed first, so a stale
    result cannot pass for this run's); the log starts with ``$ <shown>``. Returns the exit code."""
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.unlink(missing_ok=True)
    with open(result_path.parent / "log.txt", "w") as f:
        f.write(f"$ {shown}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=str(HERE), timeout=timeout).returncode


def run_failed(result_path: Path, returncode: int) -> RuntimeError:
    """The error for a run of ``run_to_log`` that failed, with the end of its log."""
    log = result_path.parent / "log.txt"
    tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
    return RuntimeError(f"exit {returncode}; log: {log}\n{tail}")


def reuse_finished(keys: Iterable[str], specs: dict[str, dict[str, Any]], fresh: bool, width: int,
                   done_text: Callable[[str, dict[str, Any]], str] = lambda key, res: "",
                   skip_rest: bool = False) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``(results of the runs that finished before with the same spec, keys still to run)``; each finished run is
    reported (``done_text``: what follows "done before"). ``skip_rest``: run nothing else (``--publish-only``)."""
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for key in keys:
        res = None if fresh else cached(specs[key])
        if res is not None:
            results[key] = res
            print(f"  {key:{width}s} done before{done_text(key, res)}", flush=True)
        elif skip_rest:
            print(f"  {key:{width}s} not run: left out of the records (--publish-only)", flush=True)
        else:
            todo.append(key)
    return results, todo


def plan_line(n_runs: int, n_done: int, jobs: int, work: Path, eta_todo_s: float) -> str:
    return (f"{n_runs} runs ({n_done} done before), {jobs} at a time, logs in "
            f"{work.relative_to(ROOT)}/<run>/log.txt; rough estimate {eta_todo_s / 60 / max(jobs, 1):.0f} min")


def run_jobs(todo: dict[str, Callable[[], dict[str, Any]]], jobs: int, results: dict[str, dict[str, Any]],
             width: int, describe: Callable[[str, dict[str, Any], float], str], publish: Callable[[], None],
             started: float) -> list[str]:
    """Run ``todo`` (key -> run), ``jobs`` at a time, into ``results``; report each run as it ends (``describe``
    gets the minutes since ``started``) and ``publish`` after each and at the end. A failed run does not stop the
    others; returns the failed keys."""
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures = {pool.submit(fn): key for key, fn in todo.items()}
        for fut in as_completed(futures):
            key = futures[fut]
            try:
                results[key] = fut.result()
                say(f"  {key:{width}s} {describe(key, results[key], (time.perf_counter() - started) / 60)}")
            except Exception as e:  # noqa: BLE001 - keep the other runs going; report at the end
                failed.append(key)
                say(f"  {key:{width}s} FAILED: {e}")
            publish()
    publish()
    return failed


def exit_if_failed(failed: Sequence[str]) -> None:
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(failed)} (rerun the same command to retry them)")


# -- numbers ----------------------------------------------------------------------------------------
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


def ratio(ours: float | None, peer: float | None, higher_is_better: bool = True) -> float | None:
    """How many times better polyrl is (ours / peer, or peer / ours when lower is better); None unless both are > 0."""
    if ours is None or peer is None or not (ours > 0 and peer > 0):
        return None
    return ours / peer if higher_is_better else peer / ours


def round_or_none(x: float | None, digits: int) -> float | None:
    return None if x is None else round(float(x), digits)


def fmt_number(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


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
