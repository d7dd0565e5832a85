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
from dataclasses import fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

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

    def __init__(self, cfg: AlgoConfig, spec: EnvSpec, device: torch.device | str = "cpu") -> None:
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
        self.n_updates = 0
        """Gradient-update calls so far (drives delays and target-network schedules)."""
        self.env_steps = 0
        """Environment steps so far, set by the trainer before acting/updating (drives schedules)."""
        self.total_steps = 1
        """The trainer's step budget, set by the trainer (drives annealing)."""
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

    def episode_policy(self, deterministic: bool = True) -> Any:
        """A policy for whole episodes, ``(obs [B, *O], is_first [B] bool) -> actions``, that keeps any per-copy
        memory (recurrent agents such as Dreamer) and clears it where ``is_first``. Memoryless by default:
        :meth:`act`, ignoring ``is_first``."""
        return lambda obs, is_first: self.act(obs, deterministic=deterministic)

    def env_copies(self) -> int:
        """Training environment copies the trainer steps (``n_envs``; a population multiplies it)."""
        return int(getattr(self.cfg, "n_envs", 1))

    def end_round(self, evaluate: Any) -> dict[str, Any]:
        """Called online after every round of updates; returns metrics to log.

        ``evaluate(policy, episodes, gamma=1.0) -> EvalResult`` runs a
        deterministic policy (as in :meth:`candidates`) in the evaluation env,
        for algorithms whose learning uses real evaluations (C-MORL's Pareto
        archive). Nothing to do by default.
        """
        return {}

    def preference_policy(self, preference: Any) -> Any:
        """The deterministic policy (normalised obs -> normalised action) to serve for ``preference``, a ``[K]``
        weighting of the objectives. Only multi-objective algorithms serve preferences."""
        raise ConfigError(f"{self.name} learns one policy for a scalar reward; a preference needs a multi-objective "
                          "algorithm (cmorl) on a multi-objective env")

    def write_run_files(self, run_dir: Any) -> None:
        """Write the algorithm's own outputs into the run directory after each checkpoint (C-MORL: its Pareto front)."""
        return None

    def candidates(self) -> dict[str, Any]:
        """Named deterministic policies (normalised obs ``[B, *O]`` -> normalised actions) worth comparing
        offline, e.g. by OPE. One for most algorithms; Uni-O4 has one per ensemble member."""
        return {"policy": lambda obs: self.act(obs, deterministic=True)}

    def deployed_candidate(self) -> str:
        """The name (a key of :meth:`candidates`) of the policy ``act`` uses."""
        return "policy"

    def end_offline(self, evaluate: Any) -> dict[str, Any]:
        """Called when an offline training call reaches its budget; returns metrics to log.

        ``evaluate(policy, episodes) -> mean return`` runs a policy (as in :meth:`candidates`)
        in the evaluation env, for algorithms whose model selection may use a few real
        episodes (Uni-O4). Nothing to do by default.
        """
        return {}

    # -- derived from the declared state -------------------------------------------------------
    def _items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self.state, f.name)) for f in fields(self.state)]

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


def regime_is_online(regime: str) -> bool:
    return regime != "offline"
