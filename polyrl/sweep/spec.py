"""What a sweep and its trials are (``Sweep``, ``TrialSpec``), how they are checked, and where they live on disk.

The trials' run settings are :class:`polyrl.train.TrainSettings`, stated once
there: every field is a sweep option (a :func:`~polyrl.sweep.run_sweep`
keyword and a ``polyrl sweep --field-name`` flag, see :func:`settings_options`)
with TrainSettings' default, except the few in :data:`SETTINGS_DEFAULTS` and
:data:`SETTINGS_FIXED`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from polyrl import algos
from polyrl.config import field_docs
from polyrl.errors import ConfigError
from polyrl.io import write_json_atomic
from polyrl.sweep.grid import config_label, expand, parse_seeds, trial_name, typed_grid
from polyrl.train import TrainSettings

TRIALS = "trials"
RESULT = "result.json"
SPEC = "trial.json"
LOG = "trial.log"
# What a sweep trains: rerunning a sweep directory with other values would mix incomparable trials.
IDENTITY = ("algo", "env", "dataset", "steps", "config")

SETTINGS_DEFAULTS: dict[str, Any] = {"checkpoint_every": 10_000}
"""A sweep's defaults where they differ from TrainSettings': a killed or retried trial resumes from its latest checkpoint."""
SETTINGS_FIXED: dict[str, Any] = {"progress": False}
"""TrainSettings fields that are no sweep option: a trial's output goes to ``trial.log``, where a progress bar is noise."""


@dataclass(frozen=True)
class SettingOption:
    """One TrainSettings field as a sweep option."""

    name: str
    type: Any
    default: Any
    """The sweep's default (TrainSettings' own unless :data:`SETTINGS_DEFAULTS` says otherwise)."""
    doc: str
    """The field's docstring."""


def settings_options() -> list[SettingOption]:
    """The TrainSettings fields a sweep takes as options, in declaration order, with their sweep defaults and docstrings.

    The docstrings are read with the parser every algorithm ``Config`` uses
    (:func:`polyrl.config.field_docs`), as the documentation's field tables do.
    """
    hints = get_type_hints(TrainSettings)
    docs = field_docs(TrainSettings)
    return [SettingOption(f.name, hints[f.name], SETTINGS_DEFAULTS.get(f.name, f.default), docs.get(f.name, ""))
            for f in dataclasses.fields(TrainSettings) if f.name not in SETTINGS_FIXED]


def train_settings(values: dict[str, Any]) -> TrainSettings:
    """A trial's TrainSettings from ``values`` (keys that are no TrainSettings option are ignored), sweep defaults for the rest."""
    names = {f.name for f in dataclasses.fields(TrainSettings)} - set(SETTINGS_FIXED)
    return TrainSettings(**SETTINGS_DEFAULTS | {k: v for k, v in values.items() if k in names} | SETTINGS_FIXED)


def settings_json(settings: TrainSettings) -> dict[str, Any]:
    """``settings`` as the flat JSON fields of ``trial.json`` and ``sweep.json`` (the fixed ones left out)."""
    return {k: v for k, v in dataclasses.asdict(settings).items() if k not in SETTINGS_FIXED}


# -- one trial --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs; written to ``trial.json`` and read back by the process that runs it."""

    dir: str
    """Absolute path of the trial's run directory."""
    algo: str
    env: str | None
    dataset: str | None
    """Absolute path of an offline algorithm's dataset."""
    seed: int
    steps: int
    """Env steps to train (gradient updates offline)."""
    config: dict[str, Any]
    """Config fields: the sweep's fixed ones and this trial's grid values."""
    grid_values: dict[str, Any]
    """This trial's grid values (its configuration's label)."""
    train: TrainSettings
    """How the trial is driven; in ``trial.json`` its fields stand beside the others (:func:`settings_json`)."""
    metric: str = "eval/return"
    device: str = "cpu"
    threads: int = 1
    """torch threads inside the trial."""

    @property
    def name(self) -> str:
        return Path(self.dir).name

    @property
    def label(self) -> str:
        return config_label(self.grid_values)

    def to_json(self) -> dict[str, Any]:
        """The flat ``trial.json`` object: the spec's fields, with ``train``'s fields in place of ``train``."""
        obj = dataclasses.asdict(self)
        del obj["train"]
        return obj | settings_json(self.train)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrialSpec:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "train"]
        return cls(**{k: obj[k] for k in names if k in obj}, train=train_settings(obj))


def read_result(trial_dir: str | Path) -> dict[str, Any] | None:
    """A trial's ``result.json`` (``None`` while it has not ended)."""
    path = Path(trial_dir) / RESULT
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_metric(run_dir: str | Path, key: str) -> tuple[float, int] | None:
    """The last logged value of ``key`` in a run's ``metrics.jsonl`` and its step (``None`` if never logged)."""
    path = Path(run_dir) / "metrics.jsonl"
    last = None
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a killed run can leave a truncated last line
            if isinstance(row, dict) and isinstance(row.get(key), (int, float)):
                last = (float(row[key]), int(row.get("step", 0)))
    return last


def prepare_trial(spec: TrialSpec) -> None:
    """Create the trial's run directory and its ``trial.json`` (kept as it is when the trial ran before)."""
    Path(spec.dir).mkdir(parents=True, exist_ok=True)
    if not (Path(spec.dir) / SPEC).is_file():
        write_json_atomic(Path(spec.dir) / SPEC, spec.to_json())


# -- the sweep --------------------------------------------------------------------------------------
@dataclass
class Sweep:
    """A sweep's definition (``sweep.json``) and its trials."""

    dir: Path
    algo: str
    env: str | None
    dataset: str | None
    steps: int
    config: dict[str, Any]
    grid: dict[str, list[Any]]
    seeds: list[int]
    metric: str = "eval/return"
    mode: str = "max"
    search: str | None = None
    trials: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """Trial options: the TrainSettings fields (:func:`settings_json`), device, threads."""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "dir"}

    @classmethod
    def from_json(cls, sweep_dir: Path, obj: dict[str, Any]) -> Sweep:
        """The sweep in ``sweep_dir`` from its ``sweep.json`` object."""
        names = {f.name for f in dataclasses.fields(cls)} - {"dir"}
        return cls(dir=sweep_dir, **{k: v for k, v in obj.items() if k in names})

    def spec(self, values: dict[str, Any], seed: int) -> TrialSpec:
        return TrialSpec.from_json({"dir": str(self.dir / TRIALS / trial_name(values, seed)), "algo": self.algo, "env": self.env,
                                    "dataset": self.dataset, "seed": seed, "steps": self.steps, "config": self.config | values,
                                    "grid_values": values, "metric": self.metric, **self.settings})

    def grid_specs(self) -> list[TrialSpec]:
        """Every (configuration, seed) trial of a grid sweep, configurations in grid order."""
        return [self.spec(values, seed) for values in expand(self.grid) for seed in self.seeds]

    def existing_specs(self) -> list[TrialSpec]:
        """The trials present in the directory (a search's trials, in the order they were created)."""
        found = []
        for path in (self.dir / TRIALS).glob(f"*/{SPEC}"):
            try:
                found.append((path.stat().st_mtime, TrialSpec.from_json(json.loads(path.read_text()))))
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return [s for _, s in sorted(found, key=lambda p: p[0]) if s.seed in self.seeds]

    def specs(self) -> list[TrialSpec]:
        return self.existing_specs() if self.search else self.grid_specs()


def checked_sweep(algo: str, env: str | None, seeds: Iterable[int] | str, grid: dict[str, Sequence[Any]] | None,
                  config: dict[str, Any] | None, dataset: str | Path | None, steps: int, run_dir: str | Path | None,
                  metric: str, mode: str, search: str | None, trials: int | None) -> Sweep:
    """The sweep :func:`~polyrl.sweep.run_sweep` describes, every value checked (each grid combination against the Config)."""
    cls = algos.get(algo)
    if mode not in ("max", "min"):
        raise ConfigError(f"mode must be 'max' or 'min', got {mode!r}")
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(dict.fromkeys(int(s) for s in seeds))
    if not seed_list:
        raise ConfigError("no seeds given; e.g. --seeds 0-4")
    fixed = cls.Config.from_dict(dict(config or {})).to_dict()
    fixed = {k: fixed[cls.Config.resolve(k)] for k in (config or {})}
    typed = typed_grid(algo, dict(grid or {}))
    both = sorted({cls.Config.resolve(k) for k in typed} & {cls.Config.resolve(k) for k in fixed})
    if both:
        raise ConfigError(f"{', '.join(both)} is both fixed (--set) and swept (--grid); give it once")
    for values in expand(typed):  # every combination must make a valid Config before any trial starts
        cls.Config.from_dict(fixed | values)
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    if search not in (None, "optuna"):
        raise ConfigError(f"unknown search {search!r}; use --search optuna (or none for the whole grid)")
    if search and not typed:
        raise ConfigError("--search optuna needs --grid fields to choose from")
    if search and (trials is None or trials < 1):
        raise ConfigError("--search optuna needs --trials N (configurations to try), N >= 1")
    if dataset is not None:
        if not Path(dataset).exists():
            raise ConfigError(f"dataset {dataset} does not exist")
        if cls.regime != "offline":
            raise ConfigError(f"{cls.name} learns online and takes no dataset; drop --dataset")
        dataset = str(Path(dataset).resolve())
    elif cls.regime == "offline":
        raise ConfigError(f"{cls.name} learns from a dataset: pass --dataset PATH")
    if env is None and dataset is None:
        raise ConfigError("no environment given; pass --env ID")
    if env is not None:
        from polyrl.envs import check_env_id

        check_env_id(env)
    where = (env or Path(dataset or "data").name).replace("/", "_").replace(":", "_")
    return Sweep(dir=Path(run_dir or f"runs/sweep-{cls.name}-{where}").resolve(), algo=cls.name, env=env, dataset=dataset,
                 steps=int(steps), config=fixed, grid=typed, seeds=seed_list, metric=metric, mode=mode, search=search,
                 trials=trials)


def check_same_sweep(sweep: Sweep) -> None:
    """Refuse to run ``sweep`` in a directory that holds a sweep training something else (:data:`IDENTITY`)."""
    path = sweep.dir / "sweep.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    new = sweep.to_json()
    changed = [k for k in IDENTITY if old.get(k) != new[k]]
    if changed:
        raise ConfigError(f"{sweep.dir} holds a sweep with other {', '.join(changed)} ({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); "
                          "use another --run-dir, or the same options to resume it")


@contextlib.contextmanager
def lock(sweep_dir: Path) -> Iterator[None]:
    """Refuse a second ``polyrl sweep`` in the same directory while one runs."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        yield
        return
    with open(sweep_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another polyrl sweep is running in {sweep_dir}; wait for it or use another --run-dir") from None
        yield
