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
from typing import Any, get_type_hints

from polyrl.errors import ConfigError
from polyrl.models.dynamics import DynamicsConfig, layer_weight_decays


@dataclass(frozen=True)
class AlgoConfig:
    """Fields every algorithm has."""

    gamma: float = 0.99
    """Discount factor."""
    n_envs: int = 1
    """Parallel environment copies used for collection."""
    normalize_obs: bool = False
    """Normalise observations with running statistics (saved with the agent)."""

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Field name -> its one-line docstring, read from the class source."""
        return field_docs(cls)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AlgoConfig:
        """Build a config, rejecting unknown fields with a suggestion and coercing JSON lists to tuples."""
        import difflib

        known = {f.name: f for f in fields(cls)}
        hints = get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown config field {key!r} for {cls.__qualname__}{hint} (known: {', '.join(sorted(known))})")
            kwargs[key] = coerce(value, hints[key], key)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring under it, for any dataclass (its bases included), read from the class source."""
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


# -- data-source fields ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OffPolicyConfig(AlgoConfig):
    """The replay source of off-policy algorithms (``ReplaySource``): how the env fills the buffer and batches are drawn."""

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
class OfflineConfig(AlgoConfig):
    batch_size: int = 256
    """Transitions per gradient update."""
    normalize_obs: bool = True
    """Standardise observations with the dataset's mean and std (frozen, saved with the agent)."""


@dataclass(frozen=True)
class FinetuneConfig(OfflineConfig):
    """Offline algorithms that continue online from replay (IQL, TD3+BC, PRDC): the online phase's data source.

    Online, the env fills a fresh replay buffer with the offline-trained policy
    (no random warm-up actions) and each update's batch mixes online and
    dataset transitions; observation normalisation stays frozen to the dataset.
    """

    online_buffer_size: int = 1_000_000
    """Online replay capacity (transitions) in the fine-tuning phase."""
    online_offline_ratio: float = 0.5
    """Share of each fine-tuning batch drawn from the offline dataset (0.5: symmetric sampling; 0: online data only)."""
    online_warmup: int = 1000
    """Fine-tuning env steps collected with the offline policy before updates start."""
    online_updates_per_step: int = 1
    """Gradient updates per fine-tuning env step (update-to-data ratio)."""


@dataclass(frozen=True)
class ModelRolloutConfig(AlgoConfig):
    """Config fields of every algorithm fed by a :class:`ModelSource` (the model and its rollouts)."""

    real_ratio: float = 0.05
    """Share of each batch drawn from real data (the rest from model rollouts; the paper's 5%, but on Pendulum-v1
    0.5 learns ~500 env steps sooner, even with the true dynamics: docs/algorithms/mbpo.md, note 8)."""
    rollout_freq: int = 250
    """Steps (env steps online, gradient updates offline) between rounds of model rollouts."""
    rollout_batch_size: int = 10_000
    """Real start states rolled out per round."""
    model_retain_rounds: int = 4
    """Rollout rounds kept in the model buffer's sampling window (older model data is dropped)."""
    penalty_coef: float = 0.0
    """MOPO's lambda: model rewards become r - lambda * max_i ||Sigma_i(s, a)||_F (0: no penalty, MBPO)."""
    termination: str = "auto"
    """Model terminations: 'auto' (the task's known rule if polyrl has one, else learned) or 'learned'."""
    model_hidden: tuple[int, ...] = (200, 200, 200, 200)
    """Hidden widths of each of the 7 dynamics-ensemble members (5 elites)."""
    model_max_epochs: int = 50
    """Maximum epochs per model fit (holdout early stopping after 5 epochs without improvement usually ends sooner)."""
    model_min_updates: int = 1000
    """Gradient steps a model fit may take whatever ``model_max_epochs`` says (early stopping still applies): MBPO's
    first fits see a few hundred transitions, one or two steps per epoch, and an epoch cap alone leaves that model
    badly underfitted while its rollouts make up most of every batch for the next ``model_retain_rounds`` rounds."""

    def dynamics_config(self) -> DynamicsConfig:
        """The ensemble's configuration (MBPO's spec: 7 members, 5 elites, per-layer weight decay), after validating
        the source's fields."""
        if self.termination not in ("auto", "learned"):
            raise ConfigError(f"termination must be 'auto' or 'learned', got {self.termination!r}")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ConfigError(f"real_ratio must lie in [0, 1], got {self.real_ratio}")
        return DynamicsConfig(hidden=self.model_hidden, max_epochs=self.model_max_epochs, min_updates=self.model_min_updates,
                              holdout=0.2, max_holdout=1000, weight_decays=layer_weight_decays(len(self.model_hidden)),
                              standardize_targets=True)


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
