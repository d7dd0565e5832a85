"""Sequence sampling from the replay storage: ``[B, T]`` windows for world models.

The storage is the ordinary :class:`~polyrl.data.replay.ReplayBuffer` (time
major, ``[steps, n_envs]``). A window is ``T`` consecutive stored steps of
one env in chronological order; it never runs across the ring buffer's write
head (so it never mixes the newest data with the oldest). Episode
boundaries may fall inside a window: ``is_first[b, t] = 1`` marks the first
step of an episode (the step after a terminated or truncated one), and the
sequence model clears its state there.

Window starts are drawn uniformly, or with Drama's dynamic frequency-based
sampling (DFS, Wang et al. ICLR 2025), which prefers starts the world model
has seen less often (:func:`dfs_model_weights`) and imagination starts it
has trained on but not yet imagined from (:func:`dfs_imagination_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from polyrl.data.replay import ReplayBuffer


@dataclass(frozen=True)
class SequenceBatch:
    """``B`` windows of ``T`` consecutive steps.

    Attributes:
        obs: ``[B, T, *O]`` observations ``o_t`` (normalised by the agent's normaliser).
        action: ``[B, T, *A]`` the action taken at ``o_t`` (float in [-1, 1], or long for Discrete).
        reward: ``[B, T]`` reward after ``(o_t, a_t)`` (the reward model's target: smoothed when DreamSmooth is on).
        terminated: ``[B, T]`` 1.0 where the step ended in a terminal state.
        is_first: ``[B, T]`` 1.0 where ``o_t`` starts an episode.
        index: ``[B, T]`` long, ``time * n_envs + env`` of each step in the storage.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    terminated: Tensor
    is_first: Tensor
    index: Tensor

    def to(self, device: torch.device | str) -> SequenceBatch:
        """A copy with every tensor on ``device``."""
        return SequenceBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.obs.shape[0]


@dataclass(frozen=True)
class WorldModelBatch:
    """What one Dreamer update needs: windows to train the world model on and short contexts to imagine from.

    Attributes:
        model: ``[B, T]`` windows for the world-model loss.
        context: ``[B_img, C]`` windows whose last step starts an imagined rollout.
    """

    model: SequenceBatch
    context: SequenceBatch

    def to(self, device: torch.device | str) -> WorldModelBatch:
        return WorldModelBatch(self.model.to(device), self.context.to(device))

    def __len__(self) -> int:
        return len(self.model)


def valid_starts(buffer: ReplayBuffer, length: int) -> Tensor:
    """Physical time indices ``[S]`` at which a window of ``length`` steps may start, oldest first.

    Chronological position ``c`` (0 = oldest stored step) may start a window iff
    ``c + length <= size``, so no window reaches past the newest step into overwritten data.
    """
    size = buffer.steps if buffer.full else buffer.pos
    oldest = buffer.pos if buffer.full else 0
    n = size - length + 1
    if n <= 0:
        raise RuntimeError(f"the replay buffer holds {size} steps per env, fewer than one window of {length}")
    return (oldest + torch.arange(n, device=buffer.device)) % buffer.steps


def is_first_flags(buffer: ReplayBuffer, t: Tensor, e: Tensor) -> Tensor:
    """1.0 where step ``(t, e)`` starts an episode: the previous stored step of that env ended one, or ``t`` is the oldest step."""
    prev = (t - 1) % buffer.steps
    ended = torch.maximum(buffer.terminated[prev, e], buffer.truncated[prev, e])
    oldest = buffer.pos if buffer.full else 0
    return torch.where(t == oldest, torch.ones_like(ended), ended)


def gather_windows(buffer: ReplayBuffer, t0: Tensor, e: Tensor, length: int, reward: Tensor | None = None) -> SequenceBatch:
    """The windows of ``length`` steps starting at physical times ``t0 [B]`` of envs ``e [B]``.

    ``reward``, if given, is a ``[steps, n_envs]`` tensor read instead of the buffer's rewards
    (DreamSmooth's smoothed rewards).
    """
    t = (t0[:, None] + torch.arange(length, device=buffer.device)) % buffer.steps  # [B, T]
    ee = e[:, None].expand_as(t)
    rew = buffer.reward if reward is None else reward
    return SequenceBatch(obs=buffer.obs[t, ee], action=buffer.action[t, ee], reward=rew[t, ee],
                         terminated=buffer.terminated[t, ee], is_first=is_first_flags(buffer, t, ee),
                         index=t * buffer.n_envs + ee)


def sample_windows(buffer: ReplayBuffer, batch_size: int, length: int, generator: torch.Generator,
                   weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Draw ``batch_size`` window starts ``(t0 [B], env [B])``: uniformly, or in proportion to ``weights``.

    ``weights`` is ``[S, n_envs]`` over :func:`valid_starts` (in that order), e.g. from the DFS functions.
    """
    starts = valid_starts(buffer, length)
    if weights is None:
        i = torch.randint(len(starts), (batch_size,), generator=generator, device=buffer.device)
        e = torch.randint(buffer.n_envs, (batch_size,), generator=generator, device=buffer.device)
        return starts[i], e
    flat = torch.multinomial(weights.flatten(), batch_size, replacement=True, generator=generator)
    return starts[flat // buffer.n_envs], flat % buffer.n_envs


def dfs_model_weights(counts: Tensor, *, tau: float = 10.0) -> Tensor:
    """World-model sampling weights ``p_i ~ exp(-n_i / tau)``, ``n_i`` = times start ``i`` was drawn for the world model.

    Returned normalised over all entries of ``counts`` (any shape).
    """
    logits = -counts.double() / tau
    return torch.softmax(logits.flatten(), 0).view_as(counts).float()


def dfs_imagination_weights(counts: Tensor, imagined: Tensor, *, tau: float = 10.0, scale: float = 64.0) -> Tensor:
    """Imagination-start weights ``p_i ~ softmax(min(0, n_i - m_i / scale) / tau)`` (Drama's DFS).

    ``n_i`` counts world-model draws of start ``i`` and ``m_i`` imagination draws;
    normalised over all entries (any shape).
    """
    score = torch.clamp(counts.double() - imagined.double() / scale, max=0.0) / tau
    return torch.softmax(score.flatten(), 0).view_as(counts).float()
