"""Seed lists and hyperparameter grids: parsing the CLI's text, typing the values, expanding and naming configurations."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

from polyrl import algos
from polyrl.errors import ConfigError


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-9"`` (inclusive range), ``"0,3,5"`` or a mix (``"0-2,7"``), in order, without repeats."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise ConfigError(f"bad seed list {text!r}; write a range 0-9, a list 0,3,5 or both (0-2,7)")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise ConfigError(f"bad seed range {part!r} in {text!r}; write the smaller seed first (e.g. {hi}-{lo})")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    return seeds


def parse_assignment(item: str, option: str) -> tuple[str, str]:
    """Split ``"field=value"`` (a ``-`` in the field name reads as ``_``)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"{option} expects FIELD=VALUE, got {item!r}")
    return key.strip().replace("-", "_"), value.strip()


def parse_grid(items: Iterable[str], algo: str) -> dict[str, list[Any]]:
    """Grid options ``"field=v1,v2"`` as typed value lists, checked against the algorithm's ``Config``.

    Values are separated by commas; for a tuple-valued field (e.g. ``hidden``)
    by semicolons, since each value is itself a comma list: ``hidden=64,64;256,256``.
    """
    config_cls = algos.get(algo).Config
    types = {f.name: f.type for f in config_cls.flat_fields()}
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, raw = parse_assignment(item, "--grid")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one option ({key}=v1,v2)")
        sep = ";" if getattr(types.get(config_cls.resolve(key)), "__origin__", None) is tuple else ","
        grid[key] = [v.strip() for v in raw.split(sep) if v.strip()]
    return typed_grid(algo, grid)


def typed_grid(algo: str, grid: dict[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Each grid field's values converted to the ``Config`` field's type (JSON form), without repeats."""
    config_cls = algos.get(algo).Config
    out: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(f"grid field {key!r} needs a list of values, got {values!r}")
        typed: list[Any] = []
        for v in values:
            try:
                value = config_cls.from_dict({key: v}).to_dict()[config_cls.resolve(key)]
            except ConfigError as e:
                raise ConfigError(f"--grid {key}: {e}") from None
            if value not in typed:
                typed.append(value)
        if not typed:
            raise ConfigError(f"--grid {key} has no values; give one or more ({key}=v1,v2)")
        out[key] = typed
    return out


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid, first field varying slowest (one empty configuration for no grid)."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def format_value(value: Any) -> str:
    """A grid value as it appears in labels, CSV cells and Ray Tune's choices (``hidden`` ``[64, 64]`` -> ``64x64``)."""
    if isinstance(value, (list, tuple)):
        return "x".join(format_value(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def config_label(values: dict[str, Any]) -> str:
    """A configuration's name: ``"field=value,field=value"`` over its grid fields (``"default"`` for none)."""
    return ",".join(f"{k}={format_value(v)}" for k, v in values.items()) or "default"


def trial_name(values: dict[str, Any], seed: int) -> str:
    """A trial's directory name: its label and seed, safe for file systems (long ones shortened with a hash)."""
    name = re.sub(r"[^A-Za-z0-9._=,+x-]", "_", f"{config_label(values)},seed={seed}")
    if len(name) > 120:
        name = f"{name[:100]}~{hashlib.sha1(name.encode()).hexdigest()[:10]},seed={seed}"
    return name
