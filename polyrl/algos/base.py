"""The algorithm contract and the machinery derived from a declared trainable state.

An algorithm is one class in one file:

* ``Config``: a dataclass with a default and a one-line docstring per field
  (the CLI and checkpoints are generated from it);
* ``build()``: returns a dataclass of its networks, optimisers and learnable
  scalars (the *state*). Saving, loading, device placement and train/eval
  mode are derived from that one declaration;
* ``act(obs, deterministic)`` and ``update(batch) -> metrics``.

Trainers drive it; they differ by where the batches come from.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from polyrl.clock import Clock
from polyrl.config import AlgoConfig, coerce  # noqa: F401  (re-exported: the contract's config type)
from polyrl.envs import EnvSpec
from polyrl.errors import ConfigError, UnsupportedSpaceError
from polyrl.optim import LeanAdam, adam  # noqa: F401  (re-exported: algorithm files build their optimisers with adam)


class Algorithm(abc.ABC):
    """Base class: subclasses set the class attributes and implement ``build``, ``act`` and ``update``."""

    name: ClassVar[str]
    """Registry name (``polyrl train <name>``)."""
    Config: ClassVar[type[AlgoConfig]]
    """The algorithm's config dataclass."""
    action_kinds: ClassVar[tuple[str, ...]]
    """Action spaces handled: ``"box"`` and/or ``"discrete"``."""
    regime: ClassVar[str]
    """``"on_policy"`` (fed rollouts), ``"off_policy"`` (transitions from a replay buffer the env fills)
    or ``"offline"`` (transitions from a fixed dataset)."""
    vector_reward: ClassVar[bool] = False
    """True for multi-objective algorithms, which learn from vector rewards (and only from them)."""
    online_regime: ClassVar[str | None] = None
    """For offline algorithms that can continue in the environment after offline training
    (``Agent.start_online``): the regime of that online phase; ``None`` if they cannot."""

    def __init__(self, cfg: AlgoConfig, spec: EnvSpec, device: torch.device | str = "cpu", clock: Clock | None = None) -> None:
        if spec.action_kind not in self.action_kinds:
            raise UnsupportedSpaceError(
                f"{self.name} cannot handle {spec.action_kind} actions of {spec.env_id}; "
                f"it supports {'/'.join(self.action_kinds)} (see `polyrl list`)"
            )
        if spec.reward_dim and not self.vector_reward:
            raise UnsupportedSpaceError(
                f"{self.name} learns from a scalar reward, but {spec.env_id} has {spec.reward_dim} objectives; use a "
                "multi-objective algorithm (cmorl), or scalarise the env (mo_gymnasium.wrappers.LinearReward)"
            )
        self.cfg = cfg
        self.spec = spec
        self.device = torch.device(device)
        self.clock = clock if clock is not None else Clock()
        """The run's counters and budget (:class:`polyrl.clock.Clock`), shared with the trainer and the data source."""
        self.online = regime_is_online(self.regime)
        """True while the algorithm learns from the environment (always, for online algorithms;
        after ``start_online`` for offline ones)."""
        self.state = self.build()

    # -- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self) -> Any:
        """Create and return the trainable-state dataclass (networks, optimisers, learnable scalars)."""

    @abc.abstractmethod
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions for a batch of normalised observations ``[B, *O]`` (in normalised action space)."""

    @abc.abstractmethod
    def update(self, batch: Any) -> dict[str, Any]:
        """One update from a batch; returns metrics (floats or 0-d tensors) keyed ``loss/...``, ``train/...``."""

    def prepare(self, dataset: Any, normalize: Any) -> None:
        """Called once with the training dataset before offline training (e.g. to derive a reward scale).

        ``normalize`` maps raw observations to what ``update`` receives (the agent's normaliser).

        Whatever it derives must live in the declared state so it is saved with the weights.
        Most algorithms need nothing from the data, hence the empty default.
        """
        return None

    def start_online(self) -> None:
        """Switch an offline-trained algorithm to its online phase (``online_regime``).

        Called once by ``Agent.start_online``, after which ``env_steps`` counts from 0.
        Algorithms whose online update differs from the offline one (Uni-O4) override
        this; most need nothing beyond the flag.
        """
        if self.online_regime is None:
            raise ConfigError(f"{self.name} has no online phase; algorithms that continue online: see `polyrl list`")
        self.online = True

    # -- the clock, as algorithms read it ---------------------------------------------------
    @property
    def n_updates(self) -> int:
        """Optimiser steps so far (``clock.updates``): drives delays and target-network schedules."""
        return self.clock.updates

    @n_updates.setter
    def n_updates(self, value: int) -> None:
        self.clock.updates = int(value)

    @property
    def env_steps(self) -> int:
        """Environment steps so far in this phase (``clock.env_steps``, advanced by the data source)."""
        return self.clock.env_steps

    @env_steps.setter
    def env_steps(self, value: int) -> None:
        self.clock.env_steps = int(value)

    @property
    def total_steps(self) -> int:
        """The budget of the current ``learn`` call (``clock.budget``, set by the trainer): schedules anneal over it."""
        return self.clock.budget

    # -- derived from the declared state -------------------------------------------------------
    def _items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` of every declared field; a nested dataclass's fields are ``<outer>_<inner>``."""
        return _state_items(self.state, "")

    def modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in self._items() if isinstance(v, nn.Module)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: v for k, v in self._items() if isinstance(v, torch.optim.Optimizer)}

    def weights(self) -> dict[str, Tensor]:
        """Every network's parameters and buffers, and every learnable scalar, as one flat dict."""
        out: dict[str, Tensor] = {}
        for k, v in self._items():
            if isinstance(v, nn.Module):
                out.update({f"{k}.{n}": t for n, t in v.state_dict().items()})
            elif isinstance(v, Tensor):
                out[k] = v
        return out

    @torch.no_grad()
    def load_weights(self, weights: dict[str, Tensor]) -> None:
        """Inverse of :meth:`weights` (strict: missing or unexpected keys raise)."""
        for k, v in self._items():
            if isinstance(v, nn.Module):
                prefix = f"{k}."
                v.load_state_dict({n[len(prefix):]: t for n, t in weights.items() if n.startswith(prefix)})
            elif isinstance(v, Tensor):
                v.copy_(weights[k])

    def optimizer_state(self) -> dict[str, Any]:
        return {k: opt.state_dict() for k, opt in self.optimizers().items()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        for k, opt in self.optimizers().items():
            opt.load_state_dict(state[k])

    def counters(self) -> dict[str, int]:
        return {"n_updates": self.n_updates, "env_steps": self.env_steps, "online": int(self.online)}

    def load_counters(self, counters: dict[str, int]) -> None:
        self.n_updates, self.env_steps = int(counters["n_updates"]), int(counters["env_steps"])
        self.online = bool(counters.get("online", self.online))

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)


def _state_items(state: Any, prefix: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for f in fields(state):
        value = getattr(state, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            out += _state_items(value, f"{prefix}{f.name}_")
        else:
            out.append((prefix + f.name, value))
    return out


def regime_is_online(regime: str) -> bool:
    return regime != "offline"


# -- what a data source needs of an algorithm, beyond act and update ------------------------------------
# Checked once when the run is built (``require``), with a one-line error naming the missing member.


@runtime_checkable
class OnPolicyLearner(Protocol):
    """Fed on-policy rollouts (``RolloutSource``): samples with their log-probabilities and values."""

    def policy_step(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(action, log_prob, value)`` for a batch of normalised observations, sampled for collection."""
        ...

    def value(self, obs: Tensor) -> Tensor:
        """``V(s)`` (``[B]`` or ``[B, K]``) for bootstrapping truncated and unfinished episodes."""
        ...


@runtime_checkable
class RecurrentLearner(Protocol):
    """Acts with a per-env-copy memory (``SequenceReplaySource``; Dreamer's world-model state)."""

    def act_recurrent(self, obs: Tensor, is_first: Tensor, carry: Any, deterministic: bool = False) -> tuple[Tensor, Any]:
        """Actions for ``obs`` continuing ``carry``; rows with ``is_first`` start a new episode."""
        ...

    def episode_policy(self, deterministic: bool = True) -> Callable[[Tensor, Tensor], Tensor]:
        """A policy ``(obs, is_first) -> action`` for whole episodes that keeps the memory between calls."""
        ...


@runtime_checkable
class ModelBasedLearner(Protocol):
    """Learns from real data mixed with rollouts of its dynamics ensemble (``ModelSource``: MBPO, MOPO)."""

    max_rollout_horizon: int
    """The longest model rollout the algorithm asks for (sizes the model buffer)."""
    model_metrics: dict[str, float]
    """Where the source reports its latest fit and rollout statistics, logged with the updates."""

    def rollout_horizon(self, step: int) -> int:
        """Model rollout length at ``step`` (env steps online, updates offline)."""
        ...


@runtime_checkable
class OnlineModelLearner(ModelBasedLearner, Protocol):
    """A model-based learner in the environment (MBPO): also says how often to refit the model."""

    model_train_freq: int
    """Env steps between fits of the dynamics ensemble."""


def require(algo: Algorithm, protocol: type, what: str) -> None:
    """Raise ``ConfigError`` naming the members of ``protocol`` that ``algo`` lacks, for a source that needs ``what``."""
    if isinstance(algo, protocol):
        return
    wanted = [n for n in getattr(protocol, "__protocol_attrs__", None) or _protocol_members(protocol) if not hasattr(algo, n)]
    raise ConfigError(f"{algo.name} cannot be fed {what}: it lacks {', '.join(wanted)} ({protocol.__name__}); "
                      f"implement them, or pick an algorithm of that regime (`polyrl list`)")


def _protocol_members(protocol: type) -> list[str]:
    names: list[str] = []
    for klass in protocol.__mro__:
        if klass in (Protocol, object) or not getattr(klass, "_is_protocol", False):
            continue
        names += [n for n in (*vars(klass), *getattr(klass, "__annotations__", {})) if not n.startswith("_")]
    return list(dict.fromkeys(names))


# -- opt-in hooks: what the agent, trainer and pipeline use when an algorithm offers it ---------------------


@runtime_checkable
class Population(Protocol):
    """Trains several policies side by side on more env copies than ``n_envs`` (C-MORL)."""

    def env_copies(self) -> int:
        """Training environment copies the trainer steps."""
        ...


@runtime_checkable
class RoundHook(Protocol):
    """Acts after every online round of updates, possibly with real evaluations (C-MORL's Pareto archive)."""

    def end_round(self, evaluate: Callable[..., Any]) -> dict[str, Any]:
        """``evaluate(policy, episodes, gamma=1.0) -> EvalResult`` runs a deterministic policy in the evaluation env;
        returns metrics to log."""
        ...


@runtime_checkable
class PreferenceServer(Protocol):
    """Serves a policy per preference over the objectives (multi-objective algorithms)."""

    def preference_policy(self, preference: Any) -> Callable[[Tensor], Tensor]:
        """The deterministic policy (normalised obs -> normalised action) for a ``[K]`` weighting of the objectives."""
        ...


@runtime_checkable
class RunFileWriter(Protocol):
    """Writes outputs of its own into the run directory after each checkpoint (C-MORL: its Pareto front)."""

    def write_run_files(self, run_dir: Any) -> None:
        ...


@runtime_checkable
class CandidateSet(Protocol):
    """Has several named deterministic policies worth comparing offline, e.g. by OPE (Uni-O4's members)."""

    def candidates(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """Named policies (normalised obs ``[B, *O]`` -> normalised actions)."""
        ...

    def deployed_candidate(self) -> str:
        """The name (a key of :meth:`candidates`) of the policy ``act`` uses."""
        ...


@runtime_checkable
class OfflineSelection(Protocol):
    """Selects what to deploy when an offline training call reaches its budget (Uni-O4)."""

    def end_offline(self, evaluate: Callable[..., Any]) -> dict[str, Any]:
        """``evaluate(policy, episodes) -> EvalResult`` runs a few real episodes; returns metrics to log."""
        ...


def env_copies(algo: Algorithm) -> int:
    """Training environment copies: ``n_envs``, or what a :class:`Population` asks for."""
    return algo.env_copies() if isinstance(algo, Population) else int(algo.cfg.n_envs)


def episode_policy(algo: Algorithm, deterministic: bool = True) -> Callable[[Tensor, Tensor], Tensor]:
    """``(obs [B, *O], is_first [B]) -> actions`` for whole episodes: a :class:`RecurrentLearner`'s own, else memoryless ``act``."""
    if isinstance(algo, RecurrentLearner):
        return algo.episode_policy(deterministic=deterministic)
    return lambda obs, is_first: algo.act(obs, deterministic=deterministic)


def candidates(algo: Algorithm) -> dict[str, Callable[[Tensor], Tensor]]:
    """Named deterministic policies worth comparing offline: a :class:`CandidateSet`'s, else the one policy."""
    if isinstance(algo, CandidateSet):
        return algo.candidates()
    return {"policy": lambda obs: algo.act(obs, deterministic=True)}


def deployed_candidate(algo: Algorithm) -> str:
    """The key of :func:`candidates` that ``act`` uses."""
    return algo.deployed_candidate() if isinstance(algo, CandidateSet) else "policy"


def preference_policy(algo: Algorithm, preference: Any) -> Callable[[Tensor], Tensor]:
    """The policy a :class:`PreferenceServer` serves for ``preference``; a one-line error for any other algorithm."""
    if not isinstance(algo, PreferenceServer):
        raise ConfigError(f"{algo.name} learns one policy for a scalar reward; a preference needs a multi-objective "
                          "algorithm (cmorl) on a multi-objective env")
    return algo.preference_policy(preference)
