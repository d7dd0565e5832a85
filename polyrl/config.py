"""Configs: the machinery every config dataclass shares, and the data-source fields algorithms declare.

* :class:`AlgoConfig`: a frozen dataclass with a one-line docstring per field, read from the class source
  (:meth:`AlgoConfig.field_docs`), built from JSON or CLI strings with typo hints (:meth:`AlgoConfig.from_dict`);
* the source configs, mixed into an algorithm's ``Config`` to say where its batches come from:
  :class:`OffPolicyConfig` (a replay buffer the env fills), :class:`OfflineConfig` (a fixed dataset),
  :class:`FinetuneConfig` (an offline algorithm's online phase: replay mixed with the dataset) and
  :class:`ModelRolloutConfig` (real data mixed with rollouts of a learned dynamics ensemble).

A leaf: the algorithms, the data sources and the CLI read these; nothing here imports them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar, get_type_hints

from polyrl.errors import ConfigError
from polyrl.models.dynamics import DynamicsConfig, layer_weight_decays
from polyrl.optim import ClipObjective


@dataclass(frozen=True)
class FlatField:
    """One settable field of a config, its nested sections flattened: ``replay.batch_size`` is ``replay_batch_size``."""

    name: str
    """The flat name (``replay_batch_size``): the key in ``to_dict`` and the ``--replay-batch-size`` option."""
    path: tuple[str, ...]
    """Attribute path from the top config (``("replay", "batch_size")``)."""
    type: Any
    default: Any
    doc: str
    owner: type
    """The dataclass that declares the field."""


@dataclass(frozen=True)
class Section:
    """A frozen dataclass of config fields, each with a one-line docstring; fields may themselves be sections.

    A section field (e.g. ``replay: ReplayConfig``) groups the settings of one concern, typically where the
    algorithm's batches come from. Serialised (``to_dict``), on the command line and in sweeps its fields are
    flat: ``replay_batch_size`` / ``--replay-batch-size``. ``from_dict`` also takes a nested dict, and a field's
    own name (``batch_size``) where that names exactly one field, so the flat configs of earlier releases load.
    """

    RETIRED: ClassVar[dict[str, Any]] = {}
    """Fields of earlier releases this config no longer has, with the value they always had in effect: accepted
    (and ignored) at that value, so old checkpoints load; any other value is an error naming the reason."""
    RETIRED_WHY: ClassVar[str] = ""
    """Why the retired fields went (the error's hint)."""
    ALIASES: ClassVar[dict[str, str]] = {}
    """Names of earlier releases -> the flat names they now are (where a field moved into a section under another name)."""
    SHORT: ClassVar[tuple[str, ...]] = ()
    """Fields of this section that may also be given by their own name (``batch_size`` for ``replay_batch_size``),
    as earlier releases spelled them, where no top-level field has that name."""

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Flat field name -> its one-line docstring (a section field's own docstring under the section's name)."""
        docs = field_docs(cls)
        return docs | {f.name: f.doc for f in cls.flat_fields()}

    @classmethod
    def flat_fields(cls) -> list[FlatField]:
        """Every settable field, sections flattened, in declaration order (computed once per class)."""
        cached = _FLAT.get(cls)
        if cached is None:
            cached = _FLAT[cls] = cls._flat_fields()
        return list(cached)

    @classmethod
    def _flat_fields(cls) -> list[FlatField]:
        out: list[FlatField] = []
        docs, hints = field_docs(cls), get_type_hints(cls)
        for f in fields(cls):
            typ = hints[f.name]
            if _is_section(typ):
                default = f.default if f.default is not dataclasses.MISSING else typ()
                for inner in typ.flat_fields():
                    out.append(FlatField(f"{f.name}_{inner.name}", (f.name, *inner.path), inner.type,
                                         getattr_path(default, inner.path), inner.doc, inner.owner))
            else:
                out.append(FlatField(f.name, (f.name,), typ, f.default, docs.get(f.name, ""), _declared_in(cls, f.name)))
        return out

    @classmethod
    def aliases(cls) -> dict[str, str]:
        """Short names -> flat names: a field of a section that lists it in ``SHORT`` may be given by its own name
        (``batch_size`` for ``replay_batch_size``) when no top-level field has that name; the first section wins."""
        if cls in _ALIASES:
            return dict(_ALIASES[cls])
        flat = cls.flat_fields()
        names = {f.name for f in flat}
        out: dict[str, str] = dict(cls.ALIASES)
        for f in flat:
            short = f.path[-1]
            if len(f.path) > 1 and short in f.owner.SHORT and short not in names and short not in cls.RETIRED:
                out.setdefault(short, f.name)
        _ALIASES[cls] = out
        return dict(out)

    @classmethod
    def resolve(cls, key: str) -> str:
        """The flat name ``key`` stands for (itself, or an alias); ``ConfigError`` with a suggestion if none."""
        import difflib

        flat = {f.name for f in cls.flat_fields()}
        if key in flat:
            return key
        alias = cls.aliases().get(key)
        if alias is not None:
            return alias
        known = sorted(flat | set(cls.aliases()))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown config field {key!r} for {cls.__qualname__}{hint} (known: {', '.join(sorted(flat))})")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        """Build a config from flat names, short aliases or nested dicts (JSON or CLI strings are coerced to the
        field types); unknown fields are rejected with a suggestion."""
        flat = {f.name: f for f in cls.flat_fields()}
        given: dict[str, Any] = {}
        for key, value in _flatten_input(cls, values).items():
            if key in cls.RETIRED:
                if value != cls.RETIRED[key] and not (isinstance(value, list) and tuple(value) == cls.RETIRED[key]):
                    raise ConfigError(f"{cls.__qualname__} has no field {key!r} any more ({cls.RETIRED_WHY or 'it was never used'})")
                continue
            name = cls.resolve(key)
            if name in given:
                raise ConfigError(f"config field {name!r} given twice for {cls.__qualname__} (as {key!r} too)")
            given[name] = coerce(value, flat[name].type, key)  # errors name the field as the user spelled it
        return cls._build({flat[name].path: value for name, value in given.items()}, ())

    @classmethod
    def _build(cls, given: dict[tuple[str, ...], Any], prefix: tuple[str, ...]) -> Any:
        """The config (at the top, ``prefix == ()``) or a section's keyword arguments from values keyed by path."""
        hints, kwargs = get_type_hints(cls), {}
        for f in fields(cls):
            typ = hints[f.name]
            if _is_section(typ):
                inner = {k: v for k, v in given.items() if k[:len(prefix) + 1] == (*prefix, f.name)}
                if inner or f.default is dataclasses.MISSING:
                    base = f.default if f.default is not dataclasses.MISSING else typ()
                    kwargs[f.name] = dataclasses.replace(base, **typ._build(inner, (*prefix, f.name)))
            elif (*prefix, f.name) in given:
                kwargs[f.name] = given[(*prefix, f.name)]
        return cls(**kwargs) if not prefix else kwargs

    def to_dict(self) -> dict[str, Any]:
        """Flat name -> value (tuples as lists): what checkpoints and ``run.json`` store."""
        return {f.name: (list(v) if isinstance(v := getattr_path(self, f.path), tuple) else v) for f in self.flat_fields()}


@dataclass(frozen=True)
class AlgoConfig(Section):
    """Fields every algorithm has."""

    gamma: float = 0.99
    """Discount factor."""
    n_envs: int = 1
    """Parallel environment copies used for collection."""
    normalize_obs: bool = False
    """Normalise observations with running statistics (saved with the agent)."""


def getattr_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _is_section(typ: Any) -> bool:
    return isinstance(typ, type) and issubclass(typ, Section)


def _declared_in(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO whose own body declares field ``name`` (the most derived one)."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def _flatten_input(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``{"replay": {"batch_size": 16}}`` -> ``{"replay_batch_size": 16}``; flat keys pass through."""
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        typ = hints.get(key)
        if typ is not None and _is_section(typ) and isinstance(value, dict):
            out |= {f"{key}_{k}": v for k, v in _flatten_input(typ, value).items()}
        elif typ is not None and _is_section(typ) and isinstance(value, Section):
            out |= {f"{key}_{k}": v for k, v in value.to_dict().items()}
        else:
            out[key] = value
    return out


_FLAT: dict[type, list[FlatField]] = {}
_DOCS: dict[type, dict[str, str]] = {}
_ALIASES: dict[type, dict[str, str]] = {}


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring under it, for any dataclass (its bases included), read from the class source
    (once per class: a class's source does not change while it exists)."""
    if cls not in _DOCS:
        _DOCS[cls] = _read_field_docs(cls)
    return dict(_DOCS[cls])


def _read_field_docs(cls: type) -> dict[str, str]:
    import ast
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass).lstrip())
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)):
                docs[node.target.id] = str(nxt.value.value).strip()
    return docs


def coerce(value: Any, typ: Any, name: str) -> Any:
    """Convert ``value`` (from JSON or a CLI string) to the field type ``typ``, or raise ``ConfigError``."""
    origin = getattr(typ, "__origin__", None)
    args = getattr(typ, "__args__", ())
    if type(None) in args:  # Optional[X]: None / "none" stay None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, next(a for a in args if a is not type(None)), name)
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if typ is float:
            return float(value)
        if typ is str:
            return str(value)
        if origin is tuple:
            item = typ.__args__[0]
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            return tuple(coerce(v, item, name) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"config field {name!r} expects {getattr(typ, '__name__', typ)}, got {value!r}") from None
    return value


# -- data-source sections ------------------------------------------------------------------------------
# Each algorithm's Config holds the sections of the sources it learns from (``replay``, ``data``, ``online``,
# ``model``, ``rollout``, ``sequence``); the source of a phase reads its section and nothing else of the config.


@dataclass(frozen=True)
class ReplayConfig(Section):
    """A replay buffer the environment fills, and how batches are drawn from it (``ReplaySource``)."""

    SHORT = ("buffer_size", "batch_size", "learning_starts", "train_freq", "gradient_steps", "n_step")

    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    batch_size: int = 256
    """Transitions per gradient update."""
    learning_starts: int = 5000
    """Env steps of uniformly random actions before learning starts."""
    train_freq: int = 1
    """Env steps (per env) between rounds of updates."""
    gradient_steps: int = 1
    """Gradient updates per round."""
    n_step: int = 1
    """Steps summed in the TD target (stopped at episode ends)."""


@dataclass(frozen=True)
class DataConfig(Section):
    """Batches drawn uniformly from a fixed dataset (``DatasetSource``)."""

    SHORT = ("batch_size",)

    batch_size: int = 256
    """Transitions per gradient update."""


@dataclass(frozen=True)
class OnlineReplayConfig(Section):
    """An offline-trained algorithm's online phase (IQL, TD3+BC, PRDC, MOPO): a fresh replay buffer the env fills
    with the offline policy (no random warm-up actions), each batch mixing online and dataset transitions; the
    observation normaliser stays frozen to the dataset. Batches have the offline ``batch_size``."""

    buffer_size: int = 1_000_000
    """Online replay capacity (transitions) in the fine-tuning phase."""
    offline_ratio: float = 0.5
    """Share of each fine-tuning batch drawn from the offline dataset (0.5: symmetric sampling; 0: online data only)."""
    warmup: int = 1000
    """Fine-tuning env steps collected with the offline policy before updates start."""
    updates_per_step: int = 1
    """Gradient updates per fine-tuning env step (update-to-data ratio)."""


@dataclass(frozen=True)
class RolloutConfig(Section):
    """On-policy rollouts of the current policy (``RolloutSource``)."""

    SHORT = ("n_steps",)

    n_steps: int = 2048
    """Steps collected per env per rollout."""


@dataclass(frozen=True)
class ModelRolloutConfig(Section):
    """Real data mixed with short rollouts of a learned dynamics ensemble (``ModelSource``: MBPO, MOPO)."""

    SHORT = ("real_ratio", "rollout_freq", "rollout_batch_size", "penalty_coef", "termination")

    real_ratio: float = 0.05
    """Share of each batch drawn from real data (the rest from model rollouts; the paper's 5%, but on Pendulum-v1
    0.5 learns ~500 env steps sooner, even with the true dynamics: docs/algorithms/mbpo.md, note 8)."""
    rollout_freq: int = 250
    """Steps (env steps online, gradient updates offline) between rounds of model rollouts."""
    rollout_batch_size: int = 10_000
    """Real start states rolled out per round."""
    retain_rounds: int = 4
    """Rollout rounds kept in the model buffer's sampling window (older model data is dropped)."""
    penalty_coef: float = 0.0
    """MOPO's lambda: model rewards become r - lambda * max_i ||Sigma_i(s, a)||_F (0: no penalty, MBPO)."""
    termination: str = "auto"
    """Model terminations: 'auto' (the task's known rule if polyrl has one, else learned) or 'learned'."""
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    """Hidden widths of each of the 7 dynamics-ensemble members (5 elites)."""
    max_epochs: int = 50
    """Maximum epochs per model fit (holdout early stopping after 5 epochs without improvement usually ends sooner)."""
    min_updates: int = 1000
    """Gradient steps a model fit may take whatever ``model_max_epochs`` says (early stopping still applies): MBPO's
    first fits see a few hundred transitions, one or two steps per epoch, and an epoch cap alone leaves that model
    badly underfitted while its rollouts make up most of every batch for the next ``model_retain_rounds`` rounds."""

    def dynamics_config(self) -> DynamicsConfig:
        """The ensemble's configuration (MBPO's spec: 7 members, 5 elites, per-layer weight decay), after validating
        the section's fields."""
        if self.termination not in ("auto", "learned"):
            raise ConfigError(f"termination must be 'auto' or 'learned', got {self.termination!r}")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ConfigError(f"real_ratio must lie in [0, 1], got {self.real_ratio}")
        return DynamicsConfig(hidden=self.hidden, max_epochs=self.max_epochs, min_updates=self.min_updates,
                              holdout=0.2, max_holdout=1000, weight_decays=layer_weight_decays(len(self.hidden)),
                              standardize_targets=True)


@dataclass(frozen=True)
class SequenceReplayConfig(Section):
    """A replay buffer the environment fills, sampled as windows of sequences (``SequenceReplaySource``: Dreamer)."""

    SHORT = ("buffer_size", "batch_size", "seq_len", "learning_starts", "train_freq", "gradient_steps", "imag_batch",
             "imag_context", "sampling", "reward_smoothing", "smoothing_amount")

    buffer_size: int = 100_000
    """Replay capacity in transitions."""
    batch_size: int = 16
    """Windows per world-model update."""
    seq_len: int = 64
    """Steps per window (also the transformer's attention window)."""
    learning_starts: int = 1000
    """Env steps of uniformly random actions before learning starts."""
    train_freq: int = 4
    """Env steps (per env) between updates."""
    gradient_steps: int = 1
    """Updates (world model + actor-critic) per round."""
    imag_batch: int = 64
    """Imagined rollouts per update."""
    imag_context: int = 8
    """Replayed steps that set the sequence state before imagining."""
    sampling: str = "uniform"
    """Window sampling: uniform, or dfs (Drama's frequency-based sampling)."""
    reward_smoothing: str = "none"
    """DreamSmooth kernel for the reward targets: none, gaussian, uniform or ema."""
    smoothing_amount: float | None = None
    """Gaussian sigma, uniform window or EMA alpha (None: the authors' 3, 9, 0.33)."""


# -- parameter sections shared by several algorithms ----------------------------------------------------------


@dataclass(frozen=True)
class PPOUpdate(Section):
    """The optimisation phase of a PPO-style update (Schulman et al. 2017): ``n_epochs`` passes of minibatches over a
    rollout on ``L_clip + vf_coef L_V - ent_coef H``, advantages by GAE (PPO; Uni-O4's online phase)."""

    SHORT = ("n_epochs", "batch_size", "gae_lambda", "clip_range", "clip_range_vf", "ent_coef", "vf_coef",
             "normalize_advantage", "target_kl")

    n_epochs: int = 10
    """Passes over each rollout."""
    batch_size: int = 64
    """Minibatch size."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """Surrogate clipping epsilon."""
    clip_range_vf: float | None = None
    """Clip value updates to +- this around the old value (None: no clipping)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient c_e."""
    vf_coef: float = 0.5
    """Value loss coefficient c_v."""
    normalize_advantage: bool = True
    """Standardise advantages per minibatch."""
    target_kl: float | None = None
    """Stop the epoch loop once the approximate KL exceeds this (None: never)."""

    def objective(self, *, max_grad_norm: float, clip: float | None = None) -> ClipObjective:
        """The clipped objective of one phase (``clip``: an annealed clip range instead of ``clip_range``)."""
        return ClipObjective(clip=self.clip_range if clip is None else clip, clip_vf=self.clip_range_vf, vf_coef=self.vf_coef,
                             ent_coef=self.ent_coef, max_grad_norm=max_grad_norm, normalize_advantage=self.normalize_advantage,
                             target_kl=self.target_kl)


# -- what algorithm configs mix in: the sections of their regime ------------------------------------------


@dataclass(frozen=True)
class OffPolicyConfig(AlgoConfig):
    """Off-policy algorithms: batches from a replay buffer the env fills."""

    replay: ReplayConfig = ReplayConfig()
    """The replay buffer and how batches are drawn from it."""


@dataclass(frozen=True)
class OfflineConfig(AlgoConfig):
    """Offline algorithms: batches from a fixed dataset, observations standardised with its statistics."""

    normalize_obs: bool = True
    """Standardise observations with the dataset's mean and std (frozen, saved with the agent)."""
    data: DataConfig = DataConfig()
    """How batches are drawn from the dataset."""


@dataclass(frozen=True)
class FinetuneConfig(OfflineConfig):
    """Offline algorithms that continue online from replay (IQL, TD3+BC, PRDC, MOPO)."""

    online: OnlineReplayConfig = OnlineReplayConfig()
    """The online phase's source: replay mixed with the dataset (``Agent.start_online``)."""


def rollout_schedule(epoch: int, *, min_length: int, max_length: int, min_epoch: int, max_epoch: int) -> int:
    """MBPO's rollout length: ``min_length`` until ``min_epoch``, linear to ``max_length`` at ``max_epoch``, then flat.

    ``k = clip(min_length + (epoch - a) / (b - a) * (max_length - min_length), min_length, max_length)``, rounded down
    (Janner et al. 2019, appendix C; ``[a, b, k_min, k_max] = [20, 100, 1, 15]`` for Hopper).
    """
    if max_epoch <= min_epoch:
        return max_length if epoch >= max_epoch else min_length
    frac = (epoch - min_epoch) / (max_epoch - min_epoch)
    k = min_length + frac * (max_length - min_length)
    return int(min(max(k, min(min_length, max_length)), max(min_length, max_length)))


def add_options(group: Any, cls: type, *, dest_prefix: str = "", defaults: dict[str, Any] | None = None,
                skip: tuple[str, ...] = (), choices: dict[str, tuple[str, ...]] | None = None, given_only: bool = False) -> list[str]:
    """One ``argparse`` option per field of the dataclass ``cls``, its type, default and docstring read from the class,
    so a setting is said once, where it is declared: ``--eval-every N`` for a value, ``--no-progress`` for a bool
    that is on by default (``--flag`` for one that is off). The CLI of ``polyrl train`` (run settings), of
    ``polyrl pipeline`` and of ``polyrl sweep`` are generated with it.

    ``defaults`` overrides a field's default; ``skip`` leaves fields out; ``choices`` restricts string fields; with
    ``given_only`` an option that is not given is absent from the parsed namespace (``argparse.SUPPRESS``), so the
    default stays with the class. Returns the ``dest`` of each option (``dest_prefix`` + field name).
    """
    import argparse

    docs, hints = field_docs(cls), get_type_hints(cls)
    dests = []
    for f in fields(cls):
        if f.name in skip:
            continue
        typ = hints[f.name]
        args = getattr(typ, "__args__", ())
        if type(None) in args:  # Optional[X]: the option takes an X
            typ = next(a for a in args if a is not type(None))
        default = (defaults or {}).get(f.name, f.default)
        flag, dest = f.name.replace("_", "-"), dest_prefix + f.name
        text = docs.get(f.name, "").replace("%", "%%")  # argparse %-formats help strings
        unset = argparse.SUPPRESS if given_only else default
        if typ is bool:
            group.add_argument(f"--no-{flag}" if default else f"--{flag}", dest=dest, action="store_const", const=not default,
                               default=unset, help=f"{text} (on by default; this flag turns it off)" if default else text)
        else:
            group.add_argument(f"--{flag}", dest=dest, type=typ if typ in (int, float, str) else str, default=unset,
                               choices=(choices or {}).get(f.name), metavar=None if (choices or {}).get(f.name) else "V",
                               help=f"{text} (default {default})")
        dests.append(dest)
    return dests
