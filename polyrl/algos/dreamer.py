"""A Dreamer-style world-model agent with a swappable sequence model (DreamerV3 / STORM / Drama).

World model, trained on replayed windows ``(o_t, a_t, r_t, terminated_t)``:

* encoder ``q(z_t | o_t)``: ``G`` categoricals of ``K`` classes, mixed with 1%
  uniform, sampled with straight-through gradients (DreamerV3 sec. 3);
* sequence model ``h_t = f(z_{<=t}, a_{<=t})``: ``gru``, ``transformer`` or
  ``ssm`` (:mod:`polyrl.nets.sequence`), run in parallel over the window,
  with its state cleared where an episode starts;
* heads on ``h_t``: prior ``p(z_{t+1} | h_t)``, reward ``r_t`` (255-bin
  symlog two-hot), continuation ``1 - terminated_t`` (Bernoulli); decoder
  ``o_t`` from ``z_t`` (symlog MSE for vectors, MSE for pixels);
* ``L = L_rec + L_rew + L_cont + b_dyn max(1, KL[sg(q) || p]) + b_rep max(1, KL[q || sg(p)])``
  (free bits clip each sample's KL at ``free_nats``; Drama's weights 1 and 0.1).

Behaviour, learned purely in imagination: the agent state is
``s_t = [h_{t-1}, z_t]``. From the last step of a short context window, the
world model rolls out ``imag_horizon`` steps with actions from the actor;
``R^lambda`` (eq. 12.18 of Sutton & Barto, bootstrapped by a slow EMA critic,
with predicted continuations as discounts) is the critic's two-hot target; the
actor maximises ``sg((R^lambda - v) / max(1, S)) log pi(a|s) + eta H[pi]``
with ``S`` an EMA of the 5th-95th percentile range of returns (DreamerV3 eq. 7;
REINFORCE for both discrete and continuous actions, as DreamerV3 does).

DreamSmooth (Lee et al. 2024) optionally smooths each episode's rewards before
they become the reward head's targets; Drama's frequency-based sampling
(DFS) optionally replaces uniform window sampling. Both live in the data
source (:mod:`polyrl.train.sequence_source`).

Deviations from the papers: smaller networks and latents by default, for CPU
(authors: 32x32 latents, d_model 512); the actor sees ``h_{t-1}`` (the
sequence output before ``z_t``, as in STORM) rather than a GRU state that
already absorbed ``z_t``; no critic regulariser towards the slow critic (the
slow critic provides the bootstrap values instead); acting from a single
call to :meth:`Dreamer.act` starts from an empty history (the trainer and
``evaluate`` use :meth:`Dreamer.act_recurrent`, which carries the state).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import polyrl.envs.pixels  # noqa: F401  (registers the pixel tasks, so checkpoints on them load)
from polyrl.algos.base import AlgoConfig, Algorithm, adam
from polyrl.config import SequenceReplayConfig
from polyrl.data.sequence import SequenceBatch, WorldModelBatch
from polyrl.errors import ConfigError
from polyrl.losses import polyak_update
from polyrl.nets.distributions import Categorical, Gaussian
from polyrl.nets.mlp import mlp
from polyrl.nets.observation import Decoder, Encoder
from polyrl.nets.sequence import KINDS, make_sequence_model
from polyrl.returns import lambda_returns, percentile_scale, symlog, twohot, twohot_mean


@dataclass(frozen=True)
class DreamerConfig(AlgoConfig):
    gamma: float = 0.985
    """Discount factor of imagined returns (Drama: 0.985)."""
    backbone: str = "gru"
    """Sequence model: gru, transformer or ssm (Mamba-2-style)."""
    d_model: int = 128
    """Width of the sequence model (authors: 512)."""
    n_layers: int = 2
    """Sequence-model layers."""
    n_heads: int = 4
    """Attention heads (transformer)."""
    d_state: int = 16
    """SSM state size (ssm)."""
    latent_groups: int = 16
    """Categorical latents per step (authors: 32)."""
    latent_classes: int = 16
    """Classes per categorical latent (authors: 32)."""
    unimix: float = 0.01
    """Uniform mixture in latent and prior distributions."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of encoder/decoder MLPs, heads, actor and critic."""
    cnn_depth: int = 16
    """Channels of the first CNN layer for pixel observations (doubled per layer)."""
    model_lr: float = 1e-4
    """World-model learning rate."""
    actor_lr: float = 3e-5
    """Actor learning rate."""
    critic_lr: float = 3e-5
    """Critic learning rate."""
    model_grad_clip: float = 1000.0
    """Gradient-norm clip of the world model."""
    ac_grad_clip: float = 100.0
    """Gradient-norm clip of actor and critic."""
    free_nats: float = 1.0
    """Free bits: each sample's KL below this is not penalised."""
    kl_dyn: float = 1.0
    """Weight of the dynamics KL (trains the prior)."""
    kl_rep: float = 0.1
    """Weight of the representation KL (trains the encoder)."""
    bins: int = 255
    """Two-hot bins over symlog [-20, 20] for reward and critic."""
    imag_horizon: int = 16
    """Imagined steps per rollout."""
    lam: float = 0.95
    """Lambda of the imagined lambda-returns."""
    entropy: float = 3e-4
    """Actor entropy bonus."""
    critic_ema: float = 0.98
    """Decay of the slow critic that bootstraps the returns."""
    return_norm_decay: float = 0.99
    """Decay of the EMA of the return percentile range."""
    sequence: SequenceReplayConfig = SequenceReplayConfig()
    """The replay buffer the env fills and the windows drawn from it (world-model and imagination batches)."""


@dataclass
class DreamerState:
    encoder: nn.Module
    decoder: nn.Module
    seq: nn.Module
    prior: nn.Module
    reward: nn.Module
    cont: nn.Module
    actor: nn.Module
    critic: nn.Module
    critic_slow: nn.Module
    return_scale: Tensor
    model_opt: torch.optim.Optimizer
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer


@dataclass
class ActCarry:
    """What acting carries from step to step: the sequence model's state and its last output ``h_{t-1}`` ``[B, d_model]``."""

    seq_state: Any
    h: Tensor


class Actor(nn.Module):
    """``pi(a | s)``: categorical, or a Gaussian with ``tanh`` mean and std in [0.1, 1] (DreamerV3)."""

    def __init__(self, feat: int, spec_kind: str, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.discrete = spec_kind == "discrete"
        self.net = mlp(feat, action_dim if self.discrete else 2 * action_dim, hidden, "silu")

    def forward(self, s: Tensor) -> Categorical | Gaussian:
        out = self.net(s)
        if self.discrete:
            return Categorical(out)
        mean, std = out.chunk(2, -1)
        return Gaussian(torch.tanh(mean), torch.log(0.9 * torch.sigmoid(std + 2.0) + 0.1))


def _zero_last(net: nn.Sequential) -> nn.Sequential:
    """Zero the output layer (DreamerV3 does this for reward and critic heads, so early predictions are 0)."""
    last = [m for m in net if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return net


class Dreamer(Algorithm):
    """Dreamer-style agent; the sequence model is ``cfg.backbone`` (Box and Discrete actions, vector or pixel observations)."""

    name = "dreamer"
    Config = DreamerConfig
    action_kinds = ("box", "discrete")
    regime = "world_model"
    cfg: DreamerConfig

    # -- state ------------------------------------------------------------------------------------
    def build(self) -> DreamerState:
        c, d = self.cfg, self.spec
        if c.backbone not in KINDS:
            raise ConfigError(f"backbone must be one of {', '.join(KINDS)}, got {c.backbone!r}")
        if c.sequence.sampling not in ("uniform", "dfs"):
            raise ConfigError(f"sampling must be 'uniform' or 'dfs', got {c.sequence.sampling!r}")
        if c.sequence.imag_context < 1 or c.sequence.imag_context > c.sequence.seq_len:
            raise ConfigError(f"imag_context must lie in [1, seq_len={c.sequence.seq_len}], got {c.sequence.imag_context}")
        if len(d.obs_shape) not in (1, 3):
            raise ConfigError(f"dreamer takes vector observations or [H, W, C] images, got shape {d.obs_shape}")
        if len(d.obs_shape) == 3 and c.normalize_obs:
            raise ConfigError("dreamer scales image observations itself (x / 255 - 0.5); set normalize_obs=False")
        self.discrete = d.action_kind == "discrete"
        self.z_dim = c.latent_groups * c.latent_classes
        feat = c.d_model + self.z_dim
        dev = self.device
        encoder = Encoder(d.obs_shape, self.z_dim, c.hidden, c.cnn_depth)
        decoder = Decoder(d.obs_shape, self.z_dim, c.hidden, c.cnn_depth)
        seq = make_sequence_model(c.backbone, self.z_dim + d.action_dim, c.d_model, c.n_layers, n_heads=c.n_heads,
                                  context=c.sequence.seq_len, d_state=c.d_state)
        prior = mlp(c.d_model, self.z_dim, c.hidden, "silu")
        reward = _zero_last(mlp(c.d_model, c.bins, c.hidden, "silu"))
        cont = mlp(c.d_model, 1, c.hidden, "silu")
        actor = Actor(feat, d.action_kind, d.action_dim, c.hidden)
        critic = _zero_last(mlp(feat, c.bins, c.hidden, "silu"))
        critic_slow = copy.deepcopy(critic).requires_grad_(False)
        mods = [m.to(dev) for m in (encoder, decoder, seq, prior, reward, cont, actor, critic, critic_slow)]
        self.bin_values = torch.linspace(-20.0, 20.0, c.bins, device=dev)
        model_params = [p for m in mods[:6] for p in m.parameters()]
        return DreamerState(*mods, torch.ones((), device=dev),  # type: ignore[arg-type]
                            adam(model_params, c.model_lr, eps=1e-8), adam(actor.parameters(), c.actor_lr, eps=1e-5),
                            adam(critic.parameters(), c.critic_lr, eps=1e-5))

    # -- pieces -------------------------------------------------------------------------------------
    def _latent(self, logits: Tensor, mode: str) -> Tensor:
        """A flat one-hot latent from logits ``[..., G*K]``: ``sample`` (straight-through) or ``mode``."""
        c = self.cfg
        probs = self._probs(logits)
        if mode == "mode":
            z = F.one_hot(probs.argmax(-1), c.latent_classes).to(probs.dtype)
        else:
            idx = torch.multinomial(probs.reshape(-1, c.latent_classes), 1).reshape(probs.shape[:-1])
            z = F.one_hot(idx, c.latent_classes).to(probs.dtype) + probs - probs.detach()
        return z.flatten(-2)

    def _probs(self, logits: Tensor) -> Tensor:
        c = self.cfg
        p = torch.softmax(logits.unflatten(-1, (c.latent_groups, c.latent_classes)), -1)
        return (1.0 - c.unimix) * p + c.unimix / c.latent_classes

    def _action_input(self, action: Tensor) -> Tensor:
        if self.discrete:
            return F.one_hot(action.long(), self.spec.action_dim).float()
        return action.clamp(-1.0, 1.0)

    def _kl(self, q_logits: Tensor, p_logits: Tensor) -> Tensor:
        """``KL[q || p]`` summed over the latent groups; ``[...]``."""
        q, p = self._probs(q_logits), self._probs(p_logits)
        return (q * (q.log() - p.log())).sum((-2, -1))

    def _context(self, ctx: SequenceBatch) -> tuple[Tensor, Tensor, Any, Tensor]:
        """Run the sequence model over a context window; returns ``(z_last, h_last, state, reset_next)``."""
        z = self._latent(self.state.encoder(ctx.obs), "sample")
        first = ctx.is_first > 0
        b = z.shape[0]
        if ctx.obs.shape[1] == 1:
            return z[:, -1], z.new_zeros(b, self.cfg.d_model), None, torch.ones(b, dtype=torch.bool, device=z.device)
        reset = first[:, :-1].clone()
        reset[:, 0] = True
        out, state = self.state.seq(torch.cat([z[:, :-1], self._action_input(ctx.action[:, :-1])], -1), None, reset)
        h = out[:, -1] * (~first[:, -1]).float()[:, None]
        return z[:, -1], h, state, first[:, -1]

    # -- world model ----------------------------------------------------------------------------
    def world_model_loss(self, b: SequenceBatch) -> tuple[Tensor, dict[str, Tensor]]:
        s, c = self.state, self.cfg
        post = s.encoder(b.obs)  # [B, T, G*K]
        z = self._latent(post, "sample")
        reset = b.is_first > 0
        reset[:, 0] = True  # every window starts from an empty state
        h, _ = s.seq(torch.cat([z, self._action_input(b.action)], -1), None, reset)
        rec = s.decoder.loss(z, b.obs).mean()
        rew = -(twohot(symlog(b.reward), self.bin_values) * torch.log_softmax(s.reward(h), -1)).sum(-1).mean()
        cont = F.binary_cross_entropy_with_logits(s.cont(h).squeeze(-1), 1.0 - b.terminated)
        # h_t predicts z_{t+1}, except across an episode start
        prior, target = s.prior(h[:, :-1]), post[:, 1:]
        mask = 1.0 - b.is_first[:, 1:]
        dyn = torch.clamp(self._kl(target.detach(), prior), min=c.free_nats)
        rep = torch.clamp(self._kl(target, prior.detach()), min=c.free_nats)
        kl = ((c.kl_dyn * dyn + c.kl_rep * rep) * mask).sum() / mask.sum().clamp(min=1.0)
        loss = rec + rew + cont + kl
        return loss, {"loss/model": loss.detach(), "loss/recon": rec.detach(), "loss/reward": rew.detach(),
                      "loss/cont": cont.detach(), "loss/kl_dyn": (dyn * mask).sum().detach() / mask.sum().clamp(min=1.0)}

    # -- imagination and behaviour -------------------------------------------------------------
    @torch.no_grad()
    def imagine(self, ctx: SequenceBatch) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Roll the world model out ``imag_horizon`` steps from each context's last step.

        Returns ``(features [H+1, B, F], actions [H, B, *A], rewards [H, B], continuations [H, B])``.
        """
        s, c = self.state, self.cfg
        z, h, state, reset = self._context(ctx)
        feats, actions, rewards, conts = [torch.cat([h, z], -1)], [], [], []
        for _ in range(c.imag_horizon):
            a = s.actor(feats[-1]).sample()
            h, state = s.seq.step(torch.cat([z, self._action_input(a)], -1), state, reset)
            reset = torch.zeros_like(reset)
            z = self._latent(s.prior(h), "sample")
            feats.append(torch.cat([h, z], -1))
            actions.append(a)
            rewards.append(twohot_mean(s.reward(h), self.bin_values))
            conts.append(torch.sigmoid(s.cont(h).squeeze(-1)))
        return torch.stack(feats), torch.stack(actions), torch.stack(rewards), torch.stack(conts)

    def behaviour_losses(self, feats: Tensor, actions: Tensor, rewards: Tensor, conts: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        s, c = self.state, self.cfg
        with torch.no_grad():
            v_slow = twohot_mean(s.critic_slow(feats), self.bin_values)  # [H+1, B]
            ret = lambda_returns(rewards, v_slow[1:], 1.0 - conts, torch.zeros_like(conts), gamma=c.gamma, lam=c.lam)
            # weight of step k: probability the rollout is still alive, times the discount
            weight = torch.cumprod(torch.cat([torch.ones_like(conts[:1]), c.gamma * conts[:-1]]), 0)
            s.return_scale.copy_(percentile_scale(ret, s.return_scale, decay=c.return_norm_decay))
        logits = s.critic(feats[:-1])
        critic_loss = -(weight * (twohot(symlog(ret), self.bin_values) * torch.log_softmax(logits, -1)).sum(-1)).mean()
        adv = (ret - twohot_mean(logits.detach(), self.bin_values)) / torch.clamp(s.return_scale, min=1.0)
        dist = s.actor(feats[:-1])
        entropy = dist.entropy()
        actor_loss = -(weight * (adv * dist.log_prob(actions) + c.entropy * entropy)).mean()
        return actor_loss, critic_loss, {"loss/actor": actor_loss.detach(), "loss/critic": critic_loss.detach(),
                                         "train/entropy": entropy.detach().mean(), "train/imag_return": ret.mean(),
                                         "train/return_scale": s.return_scale.clone()}

    def update(self, batch: WorldModelBatch) -> dict[str, Any]:
        s, c = self.state, self.cfg
        model_loss, metrics = self.world_model_loss(batch.model)
        s.model_opt.zero_grad(set_to_none=True)
        model_loss.backward()
        nn.utils.clip_grad_norm_([p for g in s.model_opt.param_groups for p in g["params"]], c.model_grad_clip)
        s.model_opt.step()

        actor_loss, critic_loss, ac = self.behaviour_losses(*self.imagine(batch.context))
        s.actor_opt.zero_grad(set_to_none=True)
        s.critic_opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        nn.utils.clip_grad_norm_(s.actor.parameters(), c.ac_grad_clip)
        nn.utils.clip_grad_norm_(s.critic.parameters(), c.ac_grad_clip)
        s.actor_opt.step()
        s.critic_opt.step()
        polyak_update(s.critic_slow.parameters(), s.critic.parameters(), tau=1.0 - c.critic_ema)
        self.n_updates += 1
        return metrics | ac

    # -- acting ---------------------------------------------------------------------------------
    @torch.no_grad()
    def act_recurrent(self, obs: Tensor, is_first: Tensor, carry: ActCarry | None,
                      deterministic: bool = False) -> tuple[Tensor, ActCarry]:
        """Act on ``obs [B, *O]`` continuing ``carry``; rows with ``is_first`` (bool ``[B]``) start a new episode.

        Returns the actions and the carry for the next step (``carry=None`` starts every row afresh).
        """
        s = self.state
        first = is_first.to(device=obs.device, dtype=torch.bool)
        if carry is None or carry.h.shape[0] != obs.shape[0]:
            carry, first = ActCarry(None, obs.new_zeros(obs.shape[0], self.cfg.d_model)), torch.ones_like(first)
        z = self._latent(s.encoder(obs), "mode" if deterministic else "sample")
        h = carry.h * (~first).float()[:, None]
        dist = s.actor(torch.cat([h, z], -1))
        action = dist.mode() if deterministic else dist.sample()
        if not self.discrete:
            action = action.clamp(-1.0, 1.0)
        h_next, seq_state = s.seq.step(torch.cat([z, self._action_input(action)], -1), carry.seq_state, first)
        return action, ActCarry(seq_state, h_next)

    def episode_policy(self, deterministic: bool = True) -> Callable[[Tensor, Tensor], Tensor]:
        """A policy that carries the recurrent state across steps, per env copy, cleared where ``is_first``
        (what ``agent.evaluate`` and ``polyrl eval`` run)."""
        carry: list[ActCarry | None] = [None]

        def policy(obs: Tensor, is_first: Tensor) -> Tensor:
            action, carry[0] = self.act_recurrent(obs, is_first, carry[0], deterministic=deterministic)
            return action

        return policy

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions as at the first step of an episode (no history); see :meth:`act_recurrent` to carry one."""
        return self.act_recurrent(obs, torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device), None, deterministic)[0]
