"""C-MORL: constrained multi-objective RL for Pareto-front discovery (Liu et al., ICLR 2025, arXiv:2410.02236).

A population of ``P`` PPO policies with vector critics (one value head per
objective) is trained as one batched module on ``P x n_envs`` env copies;
env copy ``i`` belongs to member ``i // n_envs``. Snapshots of the members,
evaluated deterministically (discounted by ``eval_gamma``; sampled actions
with ``deterministic_eval=False``), enter a Pareto
archive that keeps the non-dominated return vectors above ``ref_point`` and
caps its size by crowding distance.

**Stage 1 (initialisation).** Member ``p`` maximises the scalarised return
``w_p . G`` for a preference ``w_p`` on the simplex, with the advantage
``A = w_p . A_vec`` (per-objective advantages de-normalised, scalarised,
then standardised per minibatch); the learning rate decays linearly over the
stage. Every ``archive_every`` updates each member's snapshot is offered to the
archive.

**Stage 2 (constrained extension).** Repeatedly select the ``num_select``
archive policies with the largest crowding distance not selected before;
for each selected ``pi_r`` and each objective ``l``, a copy of ``pi_r``
(actor and critic) runs ``extension_updates`` updates of

``max_pi G_l(pi)  s.t.  G_j(pi) >= b_j  for j != l``

solved with the interior-point log barrier (paper eq. 6):

``L = L_clip(A_l) - (1/t) sum_{j != l} log(max(c_j - b_j, 1e-3)) + vf_coef L_V``,
``c_j = mean_i clip(rho_i, 1 +- eps) R_j,i``,

and every update's snapshot is offered to the archive. Members run these
tasks from a queue, so ``P`` need not equal ``num_select x K``.

**Serving.** ``preference_policy(w)`` (``polyrl eval --preference``) acts
with the archive policy maximising ``w . G``; plain ``act`` serves equal
weights.

Deviations from the paper and the authors' code (each a config field or
stated here):

* Thresholds ``b_j``: the paper uses ``beta G_j(pi_r)`` with ``G_j`` the
  evaluated return; the authors' code uses the current minibatch's mean
  return (a moving threshold). Both compare quantities in different units
  from ``c_j`` (per-sample returns-to-go at ``gamma``). polyrl measures
  ``pi_r``'s return in ``c_j``'s own units on the extension's first rollout
  (``pi_r`` has not changed yet) and holds it fixed, and relaxes it as
  ``G - (1 - beta) |G|`` so that negative objectives (time penalties) are
  relaxed too (``beta G`` would tighten them).
* The barrier takes the log of the minibatch mean ``c_j - b_j`` (the
  constraint on the expected return), not the mean of per-sample logs,
  whose clamp silences every sample below the threshold.
* Populations are batched members of one module with one Adam optimiser;
  a member taking a new task keeps Adam's second moments and has its first
  moments zeroed (the second moments of the previous occupant have the same
  scale, which acts as a warm-up).
* Stage 1's preferences: for 2 objectives ``population`` evenly spaced
  weights (6 gives the paper's step 0.2); for more, a greedy farthest-point
  subset of a simplex lattice that starts from the corners.
* Per-objective reward scaling by the running standard deviation of the
  discounted return (the authors' return normalisation), shared by members.
* Observation normalisation is per policy (``obs_norm``): each member keeps
  its own running statistics, updated after each update from its own
  rollout, and an archived policy keeps the statistics it was evaluated
  with, so serving it later reproduces its evaluation. (A normaliser shared
  and still moving would change archived policies' behaviour.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polyrl.algos.base import AlgoConfig, Algorithm, adam
from polyrl.config import RolloutConfig
from polyrl.data.rollout import Rollout
from polyrl.envs.normalize import merge_moments
from polyrl.errors import ConfigError, UnsupportedSpaceError
from polyrl.losses import log_barrier, ppo_clip_loss, value_loss
from polyrl.morl.archive import ParetoArchive
from polyrl.nets.distributions import Categorical, Gaussian
from polyrl.nets.mlp import EnsembleMLP, clip_grad_norm_per_member, copy_members
from polyrl.returns import gae


@dataclass(frozen=True)
class CMORLConfig(AlgoConfig):
    gamma: float = 0.995
    """Discount factor of the training returns."""
    n_envs: int = 4
    """Environment copies per population member (the run steps ``population x n_envs`` copies)."""
    normalize_obs: bool = False
    """The agent's shared observation normaliser: keep off (archived policies must keep the statistics they were evaluated with; see obs_norm)."""
    obs_norm: bool = True
    """Normalise each policy's observations with its own running statistics, archived with the policy."""
    population: int = 6
    """Policies trained side by side (stage 1: one per preference vector)."""
    stage1_fraction: float = 0.5
    """Share of the ``learn`` budget (env steps) spent in stage 1; the rest extends the archive (stage 2)."""
    learning_rate: float = 3e-4
    """Adam step size (decays linearly to 0 over stage 1; constant in stage 2)."""
    rollout: RolloutConfig = RolloutConfig(n_steps=512)
    """The rollout each member collects per iteration (``n_steps`` per env copy)."""
    n_minibatches: int = 32
    """Minibatches per epoch, per member."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """Surrogate clipping epsilon (also the value-clipping range, on scaled returns)."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip, per member."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of each actor and each critic."""
    activation: str = "tanh"
    """Hidden activation."""
    archive_every: int = 10
    """Stage 1: updates between archive evaluations of each member."""
    archive_episodes: int = 5
    """Episodes per archive evaluation."""
    deterministic_eval: bool = True
    """Evaluate and serve archive policies with the action distribution's mode; False samples actions (the policy
    as trained), for tasks where a PPO policy's mode gets stuck (e.g. Minecart: its stochastic policies mine ore,
    their modes do not) -- an archived value is then a mean over sampled episodes, so use more archive_episodes."""
    eval_gamma: float = 0.99
    """Discount of the evaluated return vectors the archive stores."""
    archive_size: int = 200
    """Archive capacity (pruned by crowding distance)."""
    ref_point: tuple[float, ...] = ()
    """Hypervolume reference point; archive points must exceed it (empty: the built-in one for known tasks, else none)."""
    num_select: int = 0
    """Stage 2: archive policies selected per round (0: 5 for 2 objectives, 6 otherwise)."""
    extension_updates: int = 20
    """Stage 2: constrained updates per (selected policy, objective) task."""
    beta: float = 0.9
    """Stage 2: constraint relaxation; objective j must keep G_j - (1 - beta) |G_j| of the selected policy's return."""
    barrier_t: float = 20.0
    """Stage 2: log-barrier sharpness t (the barrier is weighted 1/t)."""


# Reference points used in the MORL literature for tasks polyrl knows (Hypervolume needs one).
REF_POINTS: dict[str, tuple[float, ...]] = {
    "deep-sea-treasure-v0": (0.0, -25.0),
    "deep-sea-treasure-concave-v0": (0.0, -25.0),
    "minecart-v0": (-1.0, -1.0, -200.0),
    "mo-hopper-2obj-v5": (-100.0, -100.0),
}


@dataclass
class ArchiveSlots:
    """The policies of the Pareto archive, one slot each (``C = archive_size + 1``: a newcomer is stored before the
    archive prunes). These tensors are the archive's persistent truth; :class:`~polyrl.morl.ParetoArchive` is
    rebuilt from them for each decision."""

    obs_stats: Tensor
    """``[C, 3, O]`` the observation statistics each archived policy acted with."""
    actor: EnsembleMLP
    log_std: Tensor
    critic: EnsembleMLP
    value: Tensor
    """``[C, K]`` evaluated (``eval_gamma``-discounted) return vector of each archive slot."""
    id: Tensor
    """``[C]`` insertion id of each slot (-1: empty)."""
    stage: Tensor
    """``[C]`` the stage (1 or 2) whose snapshot the slot holds."""
    selected: Tensor
    """``[C]`` 1 once a slot's policy was selected for extension."""


@dataclass
class CMORLState:
    actor: EnsembleMLP
    """``P`` actors: logits (Discrete) or Gaussian means (Box)."""
    log_std: nn.Parameter
    """``[P, A]`` state-independent log-std (Box; unused for Discrete)."""
    critic: EnsembleMLP
    """``P`` vector critics, ``[P, B, K]`` in scaled-return units."""
    optimizer: torch.optim.Optimizer
    weight: Tensor
    """``[P, K]`` scalarisation of each member's advantage (a preference, or one-hot on the extended objective)."""
    objective: Tensor
    """``[P]`` the objective a member extends in stage 2 (-1: a stage-1 member with a preference)."""
    threshold: Tensor
    """``[P, K]`` constraint thresholds ``b_j``."""
    constrained: Tensor
    """``[P, K]`` 1 where ``G_j >= b_j`` constrains member ``p``."""
    task_updates: Tensor
    """``[P]`` updates done in each member's current task (-1: idle)."""
    return_acc: Tensor
    """``[P * n_envs, K]`` running discounted return per env copy (for the reward scale)."""
    return_stats: Tensor
    """``[3, K]`` count, mean and M2 of the discounted returns (Welford)."""
    obs_stats: Tensor
    """``[P, 3, O]`` each member's observation count, mean and M2 (Welford), for its input normalisation."""
    archive: ArchiveSlots
    """The Pareto archive's ``C`` slots (saved as ``archive_<field>``)."""
    queue: Tensor
    """``[Q, 3]`` pending extension tasks: (archive slot, archive id, objective); -1 rows are empty."""
    next_id: Tensor
    """``[]`` the next insertion id."""


class CMORL(Algorithm):
    """C-MORL for Box and Discrete actions on vector-reward (MO-Gymnasium) environments."""

    name = "cmorl"
    Config = CMORLConfig
    action_kinds = ("box", "discrete")
    regime = "on_policy"
    vector_reward = True
    cfg: CMORLConfig

    def build(self) -> CMORLState:
        c, spec = self.cfg, self.spec
        if not spec.reward_dim:
            raise UnsupportedSpaceError(f"cmorl needs a multi-objective environment (vector reward); {spec.env_id} has a scalar "
                                        "reward (MO-Gymnasium ids, e.g. deep-sea-treasure-concave-v0, need `pip install mo-gymnasium`)")
        k, p, dev = spec.reward_dim, c.population, self.device
        if p < 1 or c.archive_size < 1:
            raise ConfigError(f"population and archive_size must be >= 1, got {p} and {c.archive_size}")
        if c.ref_point and len(c.ref_point) != k:
            raise ConfigError(f"ref_point has {len(c.ref_point)} values but {spec.env_id} has {k} objectives")
        if (c.rollout.n_steps * c.n_envs) % c.n_minibatches:
            raise ConfigError(f"n_steps * n_envs = {c.rollout.n_steps * c.n_envs} must be divisible by n_minibatches = {c.n_minibatches}")
        self.discrete = spec.action_kind == "discrete"
        a = spec.action_dim

        def actor(n: int) -> EnsembleMLP:
            return EnsembleMLP(n, spec.obs_dim, a, c.hidden, c.activation, orthogonal=True, out_gain=0.01).to(dev)

        def critic(n: int) -> EnsembleMLP:
            return EnsembleMLP(n, spec.obs_dim, k, c.hidden, c.activation, orthogonal=True, out_gain=1.0).to(dev)

        pi, v = actor(p), critic(p)
        log_std = nn.Parameter(torch.zeros(p, a, device=dev))
        params = [*pi.parameters(), *v.parameters()] + ([] if self.discrete else [log_std])
        n_sel = c.num_select or (5 if k == 2 else 6)
        self.preferences = torch.as_tensor(stage1_preferences(k, p), dtype=torch.float32, device=dev)
        cap = c.archive_size + 1  # one slot more than kept: a newcomer is stored before the archive prunes
        return CMORLState(
            pi, log_std, v, adam(params, c.learning_rate, eps=1e-5),
            weight=self.preferences.clone(), objective=torch.full((p,), -1, dtype=torch.long, device=dev), threshold=torch.zeros(p, k, device=dev), constrained=torch.zeros(p, k, dtype=torch.bool, device=dev),
            task_updates=torch.zeros(p, dtype=torch.long, device=dev),
            return_acc=torch.zeros(p * c.n_envs, k, device=dev),
            return_stats=torch.tensor([[0.0] * k, [0.0] * k, [0.0] * k], device=dev),
            obs_stats=torch.zeros(p, 3, spec.obs_dim, device=dev), archive=ArchiveSlots(
                obs_stats=torch.zeros(cap, 3, spec.obs_dim, device=dev), actor=actor(cap).requires_grad_(False),
                log_std=torch.zeros(cap, a, device=dev), critic=critic(cap).requires_grad_(False),
                value=torch.zeros(cap, k, device=dev), id=torch.full((cap,), -1, dtype=torch.long, device=dev),
                stage=torch.zeros(cap, dtype=torch.long, device=dev), selected=torch.zeros(cap, dtype=torch.long, device=dev)),
            queue=torch.full((n_sel * k, 3), -1, dtype=torch.long, device=dev),
            next_id=torch.zeros((), dtype=torch.long, device=dev))

    # -- acting -------------------------------------------------------------------------------
    def env_copies(self) -> int:
        return self.cfg.population * self.cfg.n_envs

    def _members(self, obs: Tensor) -> Tensor:
        """``[P * n_envs, O]`` -> ``[P, n_envs, O]``: env copy ``i`` belongs to member ``i // n_envs``."""
        return obs.flatten(1).view(self.cfg.population, -1, self.spec.obs_dim)

    def _normalize(self, obs: Tensor, stats: Tensor) -> Tensor:
        """``[P', B, O]`` observations of ``P'`` policies, normalised by their ``[P', 3, O]`` statistics (clipped to +-10)."""
        if not self.cfg.obs_norm:
            return obs
        count, mean, m2 = stats.unbind(-2)
        var = torch.where(count > 1, m2 / count.clamp(min=1), torch.ones_like(m2))
        return ((obs - mean.unsqueeze(-2)) / torch.sqrt(var.unsqueeze(-2) + 1e-8)).clamp(-10.0, 10.0)

    @torch.no_grad()
    def _update_obs_stats(self, obs: Tensor) -> None:
        """Merge each member's ``[P, n, O]`` rollout observations into its statistics (Chan et al.'s parallel formula, :func:`~polyrl.envs.normalize.merge_moments`)."""
        s = self.state
        n, mean, m2 = s.obs_stats.unbind(1)
        b_n = float(obs.shape[1])
        s.obs_stats.copy_(torch.stack(merge_moments(n, mean, m2, b_n, obs.mean(1), obs.var(1, unbiased=False) * b_n), dim=1))

    def _dist(self, mean: Tensor, log_std: Tensor) -> Categorical | Gaussian:
        return Categorical(mean) if self.discrete else Gaussian(mean, log_std.unsqueeze(-2))

    @torch.no_grad()
    def policy_step(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``(action, log_prob, value [N, K])`` for collection, member by member."""
        s = self.state
        x = self._normalize(self._members(obs), s.obs_stats)
        dist = self._dist(s.actor(x), s.log_std)
        action = dist.sample()
        return action.flatten(0, 1), dist.log_prob(action).flatten(), s.critic(x).flatten(0, 1)

    @torch.no_grad()
    def value(self, obs: Tensor) -> Tensor:
        return self.state.critic(self._normalize(self._members(obs), self.state.obs_stats)).flatten(0, 1)

    def archive_size(self) -> int:
        return int((self.state.archive.id >= 0).sum())

    def archive_policies(self) -> list[tuple[int, np.ndarray, Callable[[Tensor], Tensor]]]:
        """``(id, archived return vector, policy)`` of every archive entry, by id; each policy maps normalised
        observations to actions as archive evaluation does (mode, or samples with ``deterministic_eval=False``)."""
        s = self.state
        return [(int(s.archive.id[j]), s.archive.value[j].double().cpu().numpy(),
                 lambda obs, j=j: self._pick(self._policy_dist(s.archive.actor, s.archive.log_std, s.archive.obs_stats, j, obs)))
                for j in self._archive_slots().tolist()]

    def _archive_slots(self) -> Tensor:
        """The archive's filled slots, ordered by entry id (the order entries were kept in)."""
        s = self.state
        filled = torch.nonzero(s.archive.id >= 0).flatten()
        return filled[torch.argsort(s.archive.id[filled])]

    def _served(self, preference: np.ndarray) -> tuple[EnsembleMLP, Tensor, Tensor, int]:
        """(actor ensemble, log-stds, member) of the policy served for ``preference``: the archive policy maximising
        ``w . G``, or before anything was archived the population member whose preference is closest."""
        s = self.state
        w = torch.as_tensor(np.asarray(preference, dtype=np.float32), device=self.device)
        filled = torch.nonzero(s.archive.id >= 0).flatten()
        if len(filled) == 0:
            return s.actor, s.log_std, s.obs_stats, int(torch.argmax(self.preferences @ w))
        return s.archive.actor, s.archive.log_std, s.archive.obs_stats, int(filled[torch.argmax(s.archive.value[filled] @ w)])

    def _policy_dist(self, actor: EnsembleMLP, log_std: Tensor, stats: Tensor, j: int, obs: Tensor) -> Categorical | Gaussian:
        x = self._normalize(obs.flatten(1).unsqueeze(0), stats[j:j + 1])
        return self._dist(actor(x, slice(j, j + 1))[0], log_std[j])

    def preference_policy(self, preference: np.ndarray) -> Callable[[Tensor], Tensor]:
        """The deterministic policy served for ``preference`` (``[K]`` weights): the archive policy maximising ``w . G``."""
        served = self._served(preference)
        return lambda obs: self._pick(self._policy_dist(*served, obs))

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Act with the policy served for equal weights (``preference_policy`` serves another preference)."""
        k = self.spec.reward_dim
        dist = self._policy_dist(*self._served(np.full(k, 1.0 / k)), obs)
        return dist.mode() if deterministic else dist.sample()

    # -- learning -----------------------------------------------------------------------------
    def _stage(self) -> int:
        return 1 if self.env_steps <= self.cfg.stage1_fraction * self.total_steps else 2

    def _scale(self, rollout: Rollout) -> Tensor:
        """Update the running std of each objective's discounted return with this rollout; return ``[K]`` scales."""
        s, g = self.state, self.cfg.gamma
        returns = []
        for t in range(rollout.reward.shape[0]):
            s.return_acc.mul_(g).add_(rollout.reward[t])
            returns.append(s.return_acc.clone())
            s.return_acc.mul_(1.0 - rollout.done[t].unsqueeze(-1))
        batch = torch.cat(returns)
        n, mean, m2 = s.return_stats
        b_n = float(batch.shape[0])
        s.return_stats.copy_(torch.stack(merge_moments(n, mean, m2, b_n, batch.mean(0), batch.var(0, unbiased=False) * b_n)))
        return (s.return_stats[2] / s.return_stats[0]).sqrt().clamp(min=1e-4)

    def update(self, batch: Rollout) -> dict[str, float | Tensor]:
        c, s, k = self.cfg, self.state, self.spec.reward_dim
        p = c.population
        stage = self._stage()
        frac = max(1.0 - self.env_steps / max(c.stage1_fraction * self.total_steps, 1.0), 0.0) if stage == 1 else 1.0
        for group in s.optimizer.param_groups:
            group["lr"] = c.learning_rate * frac if stage == 1 else c.learning_rate

        scale = self._scale(batch)
        adv, ret = gae(batch.reward / scale, batch.value, batch.next_value, batch.terminated, batch.done,
                       gamma=c.gamma, lam=c.gae_lambda)

        def members(x: Tensor) -> Tensor:  # [T, P * E, ...] -> [P, T * E, ...]
            return x.unflatten(1, (p, -1)).transpose(0, 1).flatten(1, 2)

        raw_obs, action, old_log_prob, old_value, adv, ret = (members(x) for x in (batch.obs.flatten(2), batch.action, batch.log_prob,
                                                                                   batch.value, adv, ret))
        obs = self._normalize(raw_obs, s.obs_stats)  # the statistics the rollout was collected with
        real_ret = ret * scale  # [P, n, K] returns-to-go in the env's units (for the constraints)
        first = (s.objective >= 0) & (s.task_updates == 0)
        if first.any():  # pi_r's own return, in the constraint's units (pi_r collected this rollout): the reference
            g = real_ret.mean(1)
            b = g - (1.0 - c.beta) * g.abs()
            extended = nn.functional.one_hot(s.objective.clamp(min=0), k).bool()
            s.threshold[first] = b[first]
            s.constrained[first] = ~extended[first]
        scalar_adv = ((adv * scale) * s.weight.unsqueeze(1)).sum(-1)  # [P, n]
        constrained = s.constrained
        active = (s.task_updates >= 0).float()  # idle members take no gradient

        n = obs.shape[1]
        mb = n // c.n_minibatches
        params = [q for group in s.optimizer.param_groups for q in group["params"]]
        stats = torch.zeros(5, device=self.device)
        steps = 0
        for _ in range(c.n_epochs):
            perm = torch.randperm(n, device=self.device)
            for start in range(0, n, mb):
                idx = perm[start:start + mb]
                dist = self._dist(s.actor(obs[:, idx]), s.log_std)
                log_prob, entropy = dist.log_prob(action[:, idx]), dist.entropy()
                value = s.critic(obs[:, idx])
                a = scalar_adv[:, idx]
                a = (a - a.mean(1, keepdim=True)) / (a.std(1, keepdim=True) + 1e-8)
                pi_loss = ppo_clip_loss(log_prob, old_log_prob[:, idx], a, clip=c.clip_range, dim=1)  # [P]
                # Log barrier on the constraints G_j >= b_j, with G_j's clipped-surrogate estimate c_j.
                ratio = torch.exp(log_prob - old_log_prob[:, idx])
                clipped_ratio = ratio.clamp(1.0 - c.clip_range, 1.0 + c.clip_range)
                c_j = (clipped_ratio.unsqueeze(-1) * real_ret[:, idx]).mean(1)  # [P, K]
                barrier = (log_barrier(c_j, s.threshold, t=c.barrier_t) * constrained).sum(-1)  # [P]
                v_loss = value_loss(value, ret[:, idx], old_value=old_value[:, idx], clip=c.clip_range, dim=(1, 2))
                ent = entropy.mean(1)
                loss = ((pi_loss + barrier + c.vf_coef * v_loss - c.ent_coef * ent) * active).sum()
                s.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_grad_norm_per_member(params, c.max_grad_norm)
                s.optimizer.step()
                with torch.no_grad():
                    log_ratio = log_prob - old_log_prob[:, idx]
                    kl = ((log_ratio.exp() - 1) - log_ratio).mean()
                    stats += torch.stack([pi_loss.mean().detach(), v_loss.mean().detach(), ent.mean().detach(),
                                          ((ratio - 1).abs() > c.clip_range).float().mean(), kl])
                steps += 1
        self._update_obs_stats(raw_obs)  # after the epochs: the next rollout uses the new statistics
        self.n_updates += 1
        s.task_updates[s.task_updates >= 0] += 1
        stats /= max(steps, 1)
        return {"loss/policy": stats[0], "loss/value": stats[1], "train/entropy": stats[2], "train/clip_fraction": stats[3],
                "train/approx_kl": stats[4], "train/stage": float(stage), "train/learning_rate": s.optimizer.param_groups[0]["lr"],
                "train/barrier_members": float(constrained.any(-1).sum())}

    def end_round(self, evaluate: Callable[..., Any]) -> dict[str, Any]:
        """After each update: offer evaluated member snapshots to the archive (every ``archive_every`` updates of a
        stage-1 member, every update of an extension), then hand finished members their next task in stage 2."""
        c, s = self.cfg, self.state
        due = [m for m in range(c.population) if s.task_updates[m] > 0
               and (s.objective[m] >= 0 or int(s.task_updates[m]) % c.archive_every == 0)]
        added = 0
        for m in due:
            res = evaluate(self._member_policy(m), c.archive_episodes, gamma=c.eval_gamma)
            added += self._insert(m, torch.as_tensor(res.mean_vector, dtype=torch.float32, device=self.device))
        if self._stage() == 2:
            s.task_updates[(s.objective >= 0) & (s.task_updates >= c.extension_updates)] = -1  # finished tasks
            self._fill_idle()
        return {"train/archive_size": float(self.archive_size()), "train/archive_added": float(added)} if due else {}

    def _member_policy(self, m: int) -> Callable[[Tensor], Tensor]:
        return lambda obs: self._pick(self._policy_dist(self.state.actor, self.state.log_std, self.state.obs_stats, m, obs))

    def _pick(self, dist: Categorical | Gaussian) -> Tensor:
        """The action archive evaluation and serving take: the mode, or a sample (``deterministic_eval=False``)."""
        return dist.mode() if self.cfg.deterministic_eval else dist.sample()

    # -- the archive ----------------------------------------------------------------------------
    def reference_point(self) -> tuple[float, ...] | None:
        return self.cfg.ref_point or REF_POINTS.get(self.spec.env_id)

    def _archive(self) -> ParetoArchive:
        """The Pareto logic (:class:`ParetoArchive`) over the stored slots; each entry's payload is its slot.

        The slots' tensors are the persistent truth (saved with the weights), so
        the archive object is rebuilt from them for each operation.
        """
        s, k = self.state, self.spec.reward_dim
        ref = self.reference_point()
        archive = ParetoArchive(k, ref if ref is not None else [-math.inf] * k, self.cfg.archive_size)
        filled = self._archive_slots()
        archive.load_state_dict({"n_objectives": k, "ref_point": archive.ref_point.tolist(), "capacity": self.cfg.archive_size,
                                 "values": s.archive.value[filled].double().cpu().numpy(), "ids": s.archive.id[filled].tolist(),
                                 "next_id": int(s.next_id), "payloads": filled.tolist()})
        return archive

    @torch.no_grad()
    def _insert(self, member: int, value: Tensor) -> bool:
        """Offer member ``member``'s snapshot with evaluated return ``value`` [K]; True if the archive kept it."""
        s = self.state
        archive = self._archive()
        slot = int(torch.nonzero(s.archive.id < 0).flatten()[0])  # capacity + 1 slots: one is always free
        kept = archive.add(value.double().cpu().numpy(), payload=slot)
        live = set(archive.payloads)
        for j in torch.nonzero(s.archive.id >= 0).flatten().tolist():  # dominated or pruned entries leave
            if j not in live:
                s.archive.id[j] = -1
        if kept:
            s.archive.value[slot] = value
            s.archive.id[slot] = archive.ids[archive.payloads.index(slot)]
            s.archive.selected[slot] = 0
            s.archive.stage[slot] = 1 if int(s.objective[member]) < 0 else 2
            copy_members(s.archive.actor, s.actor, slot, member)
            copy_members(s.archive.critic, s.critic, slot, member)
            s.archive.log_std[slot] = s.log_std[member]
            s.archive.obs_stats[slot] = s.obs_stats[member]
        s.next_id.fill_(archive.next_id)
        return kept

    @torch.no_grad()
    def _fill_idle(self) -> None:
        """Give idle members the next extension task, selecting a new round of archive policies when the queue is empty."""
        s, k = self.state, self.spec.reward_dim
        # idle members first, then stage-1 members (they keep their preference until a task is available)
        free = torch.nonzero(s.task_updates < 0).flatten().tolist() + torch.nonzero((s.objective < 0) & (s.task_updates >= 0)).flatten().tolist()
        for m in free:
            task = self._next_task()
            if task is None:
                return
            slot, objective = task
            copy_members(s.actor, s.archive.actor, m, slot)
            copy_members(s.critic, s.archive.critic, m, slot)
            s.log_std[m] = s.archive.log_std[slot]
            s.obs_stats[m] = s.archive.obs_stats[slot]
            for group in s.optimizer.param_groups:  # a new task: forget the previous occupant's momentum
                for q in group["params"]:
                    state = s.optimizer.state.get(q)
                    if state and "exp_avg" in state:
                        state["exp_avg"][m].zero_()
            s.weight[m] = nn.functional.one_hot(torch.tensor(objective), k).float()
            s.objective[m] = objective
            s.constrained[m] = False
            s.task_updates[m] = 0

    def _next_task(self) -> tuple[int, int] | None:
        s = self.state
        while True:
            pending = torch.nonzero(s.queue[:, 0] >= 0).flatten()
            for row in pending.tolist():
                slot, ident, objective = s.queue[row].tolist()
                s.queue[row] = -1
                if int(s.archive.id[slot]) == ident:  # still in the archive
                    return slot, objective
            if not self._select_round():
                return None

    def _select_round(self) -> bool:
        """Queue (policy, objective) tasks for the ``num_select`` least crowded archive policies not selected before."""
        s, k = self.state, self.spec.reward_dim
        archive = self._archive()
        if not len(archive):
            return False
        slots = dict(zip(archive.ids, archive.payloads))
        done = [i for i, slot in slots.items() if s.archive.selected[slot]]
        if len(done) == len(slots):  # every kept policy has been extended: start over
            s.archive.selected.zero_()
            done = []
        chosen = archive.select_sparse(s.queue.shape[0] // k, exclude=done)
        for i, ident in enumerate(chosen):
            s.archive.selected[slots[ident]] = 1
            for objective in range(k):
                s.queue[i * k + objective] = torch.tensor([slots[ident], ident, objective])
        return bool(chosen)

    # -- outputs ------------------------------------------------------------------------------
    def front(self) -> dict[str, Any]:
        """The archive as JSON: return vectors, their ids, the reference point and metrics."""
        from polyrl.morl.metrics import expected_utility, hypervolume, sparsity

        s = self.state
        order = self._archive_slots()
        values = s.archive.value[order].cpu().numpy().astype(float)
        ref = self.reference_point()
        out: dict[str, Any] = {"env": self.spec.env_id, "objectives": self.spec.reward_dim, "eval_gamma": self.cfg.eval_gamma,
                               "ids": s.archive.id[order].tolist(), "stages": s.archive.stage[order].tolist(), "values": values.tolist(),
                               "ref_point": list(ref) if ref is not None else None}
        if len(values):
            out["expected_utility"] = float(expected_utility(values))
            out["sparsity"] = float(sparsity(values))
            if ref is not None:
                out["hypervolume"] = float(hypervolume(values, np.asarray(ref, dtype=float)))
        return out

    def write_run_files(self, run_dir: Path) -> None:
        """``pareto.json`` (the archive) and ``pareto.png`` (its front) in the run directory."""
        from polyrl.io import write_json_atomic
        from polyrl.morl.plots import plot_front

        front = self.front()
        write_json_atomic(run_dir / "pareto.json", front)
        if front["values"]:
            values, stages = np.asarray(front["values"]), np.asarray(front["stages"])
            stage1 = {"found in stage 1": values[stages == 1]} if (stages == 1).any() and (stages == 2).any() else None
            plot_front(values, run_dir / "pareto.png", ref_point=front["ref_point"], label="archive", overlays=stage1,
                       title=f"C-MORL Pareto front\n{self.spec.env_id}")


def stage1_preferences(n_objectives: int, population: int) -> np.ndarray:
    """``population`` preference vectors spread over the simplex (``[P, K]``, rows sum to 1).

    Two objectives: evenly spaced, ``(i / (P - 1), 1 - i / (P - 1))``. More: a
    greedy farthest-point subset of the smallest simplex lattice with at least
    ``P`` points, starting from the corners.
    """
    k = n_objectives
    if population == 1:
        return np.full((1, k), 1.0 / k)
    if k == 2:
        w = np.linspace(0.0, 1.0, population)
        return np.stack([w, 1.0 - w], axis=1)
    h = 1
    while math.comb(h + k - 1, k - 1) < population:
        h += 1
    lattice = np.array([np.bincount(c, minlength=k) for c in combinations_with_replacement(range(k), h)], dtype=float) / h
    chosen = [int(np.argmax(lattice[:, i])) for i in range(min(k, population))]
    while len(chosen) < population:
        d = np.min(np.linalg.norm(lattice[:, None] - lattice[chosen][None], axis=-1), axis=1)
        chosen.append(int(np.argmax(d)))
    return lattice[chosen]
