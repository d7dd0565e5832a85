"""On-policy rollout storage: ``[T, N]`` steps of ``N`` envs, refilled every iteration."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyrl.returns import gae
from polyrl.types import RolloutBatch


@dataclass(frozen=True)
class Rollout:
    """A time-major on-policy rollout, as collected (advantages are the algorithm's business).

    Attributes:
        obs: ``[T, N, *O]`` normalised observations the policy acted on.
        action: ``[T, N, *A]`` (float) or ``[T, N]`` (long).
        log_prob: ``[T, N]`` behaviour log-probabilities.
        value: ``[T, N]`` (or ``[T, N, K]``) ``V(s_t)`` at collection.
        next_value: ``[T, N]`` (or ``[T, N, K]``) ``V(s_{t+1})``, the final obs's value at truncations.
        reward: ``[T, N]`` (or ``[T, N, K]``).
        terminated: ``[T, N]`` 1.0 where ``s_{t+1}`` is terminal.
        done: ``[T, N]`` 1.0 where the episode ended after step ``t``.
    """

    obs: Tensor
    action: Tensor
    log_prob: Tensor
    value: Tensor
    next_value: Tensor
    reward: Tensor
    terminated: Tensor
    done: Tensor

    def flatten(self, *, gamma: float, lam: float, reward_scale: float | Tensor = 1.0) -> RolloutBatch:
        """GAE over the ``[T, N]`` steps (rewards times ``reward_scale``; ``polyrl.returns.gae``), then every field
        flattened to ``[T * N, ...]``."""
        advantage, returns = gae(self.reward * reward_scale, self.value, self.next_value, self.terminated, self.done,
                                 gamma=gamma, lam=lam)
        return RolloutBatch(*(x.flatten(0, 1) for x in (self.obs, self.action, self.log_prob, self.value, advantage, returns)))


class RolloutBuffer:
    """Preallocated tensors for one rollout of ``n_steps`` steps from ``n_envs`` envs."""

    def __init__(
        self,
        n_steps: int,
        n_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        *,
        discrete: bool = False,
        value_shape: tuple[int, ...] = (),
        device: torch.device | str = "cpu",
    ) -> None:
        self.n_steps, self.n_envs = n_steps, n_envs
        t, n, dev = n_steps, n_envs, torch.device(device)
        self.obs = torch.zeros((t, n, *obs_shape), device=dev)
        self.action = torch.zeros((t, n, *action_shape), dtype=torch.int64 if discrete else torch.float32, device=dev)
        self.log_prob = torch.zeros((t, n), device=dev)
        self.value = torch.zeros((t, n, *value_shape), device=dev)
        self.next_value = torch.zeros((t, n, *value_shape), device=dev)
        self.reward = torch.zeros((t, n, *value_shape), device=dev)
        self.terminated = torch.zeros((t, n), device=dev)
        self.done = torch.zeros((t, n), device=dev)
        self.pos = 0

    def add(
        self,
        obs: Tensor,
        action: Tensor,
        log_prob: Tensor,
        value: Tensor,
        reward: Tensor,
        terminated: Tensor,
        done: Tensor,
        final_value: Tensor,
    ) -> None:
        """Add one step; ``final_value`` is ``V(final obs)`` for envs that were truncated (else ignored)."""
        p = self.pos
        self.obs[p], self.action[p], self.log_prob[p], self.value[p] = obs, action, log_prob, value
        self.reward[p], self.terminated[p], self.done[p] = reward, terminated, done
        self.next_value[p] = final_value
        self.pos += 1

    def finish(self, last_value: Tensor) -> Rollout:
        """Fill ``next_value`` where the episode continued and return the rollout."""
        if self.pos != self.n_steps:
            raise RuntimeError(f"rollout has {self.pos} of {self.n_steps} steps")
        following = torch.cat([self.value[1:], last_value.unsqueeze(0)], dim=0)
        done = self.done
        while done.dim() < following.dim():
            done = done.unsqueeze(-1)
        self.next_value = torch.where(done.bool(), self.next_value, following)
        self.pos = 0
        return Rollout(self.obs, self.action, self.log_prob, self.value, self.next_value.clone(), self.reward,
                       self.terminated, self.done)
