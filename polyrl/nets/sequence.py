"""Sequence backbones for world models behind one interface: GRU, causal Transformer, Mamba-style SSM.

Every backbone is built by :func:`make_sequence_model` and offers

* ``forward(x[B, T, D_in], state=None, reset=None) -> (h[B, T, d_model], state)``
  to train on whole sequences (parallel where the architecture allows), and
* ``step(x[B, D_in], state, reset=None) -> (h[B, d_model], state)`` to
  imagine or act one step at a time, continuing from ``state``.

``reset[B, T]`` (bool) clears the state *before* step ``t`` consumes its
input (an episode starts there), so one sequence may hold several episodes.
``state=None`` is the zero state (an empty context for the transformer).
``step(x, s)`` after ``forward(xs, None)`` continues exactly as if ``x`` had
been appended to ``xs`` (tested for each backbone).

Inputs first go through ``Linear -> RMSNorm -> SiLU`` (Drama's input layer),
then ``n_layers`` backbone layers, then a final RMSNorm.

* ``gru``: :class:`torch.nn.GRU`, run in segments between reset times.
* ``transformer``: pre-norm causal self-attention with rotary positions and a
  sliding window of ``context`` tokens; ``step`` keeps the last
  ``context - 1`` keys and values (a bounded KV cache), so acting costs
  ``O(context)`` per step and training ``O(T * context)`` attention scores
  (materialised as a ``T x T`` mask here, which is where its cost grows).
* ``ssm``: a Mamba-2-style selective state-space block (Dao & Gu 2024,
  arXiv:2405.21060): input-dependent step size, input and output projections
  ``Delta, B, C``; a negative scalar ``A`` per head (a diagonal ``A = a I``);
  depthwise causal convolution; SiLU gating; RMSNorm; residual. Training uses
  the chunked "state-space dual" scan, linear in ``T`` (``O(T * chunk)``
  work, ``O(T)`` memory); ``step`` is the plain recurrence
  ``s_t = exp(Delta_t a) s_{t-1} + Delta_t B_t x_t``, ``y_t = C_t s_t + D x_t``.
  When the ``mamba_ssm`` package is importable and tensors are on CUDA, the
  chunked scan is replaced by its fused kernel (no resets inside a sequence
  are passed to it, so it is used only when ``reset`` is empty after ``t = 0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KINDS = ("gru", "transformer", "ssm")


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _reset_mask(reset: Tensor | None, b: int, t: int, device: torch.device) -> Tensor:
    return torch.zeros(b, t, dtype=torch.bool, device=device) if reset is None else reset.to(torch.bool)


# ----------------------------------------------------------------------------------------------
# GRU
# ----------------------------------------------------------------------------------------------
class GRUBackbone(nn.Module):
    """A stacked GRU; the state is ``[n_layers, B, d_model]``."""

    def __init__(self, d_model: int, n_layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(d_model, d_model, num_layers=n_layers, batch_first=True)
        self.n_layers, self.d_model = n_layers, d_model

    def forward(self, x: Tensor, state: Tensor | None, reset: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _ = x.shape
        h = x.new_zeros(self.n_layers, b, self.d_model) if state is None else state
        # one nn.GRU call per stretch without resets (rows that reset get a zero state at its start)
        cuts = sorted({0, *torch.nonzero(reset.any(0)).flatten().tolist(), t})
        outs = []
        for start, end in zip(cuts[:-1], cuts[1:]):
            h = h * (~reset[:, start]).to(h.dtype)[None, :, None]
            out, h = self.gru(x[:, start:end], h.contiguous())
            outs.append(out)
        return torch.cat(outs, 1), h


# ----------------------------------------------------------------------------------------------
# Transformer
# ----------------------------------------------------------------------------------------------
def _rotary(x: Tensor, pos: Tensor) -> Tensor:
    """Rotate pairs of features of ``x [..., T, d]`` by angles ``pos * theta_i`` (RoPE, Su et al. 2021)."""
    d = x.shape[-1]
    inv = 1.0 / (10_000 ** (torch.arange(0, d, 2, device=x.device, dtype=x.dtype) / d))
    ang = pos.to(x.dtype)[:, None] * inv[None]  # [T, d/2]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2)


@dataclass
class TransformerState:
    """The bounded KV cache: unrotated keys/values of the last ``context - 1`` tokens per layer.

    Attributes:
        k, v: ``[n_layers, B, heads, W, head_dim]`` with ``W = context - 1``.
        valid: ``[B, W]`` bool, False for empty slots and tokens before an episode start.
    """

    k: Tensor
    v: Tensor
    valid: Tensor


class TransformerBackbone(nn.Module):
    """Pre-norm causal transformer with rotary positions and a sliding attention window of ``context`` tokens."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context: int) -> None:
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model {d_model} must split into {n_heads} heads of even size")
        self.d_model, self.n_layers, self.n_heads, self.context = d_model, n_layers, n_heads, context
        self.norm1 = nn.ModuleList(RMSNorm(d_model) for _ in range(n_layers))
        self.qkv = nn.ModuleList(nn.Linear(d_model, 3 * d_model) for _ in range(n_layers))
        self.proj = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        self.norm2 = nn.ModuleList(RMSNorm(d_model) for _ in range(n_layers))
        self.ff = nn.ModuleList(nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.SiLU(), nn.Linear(4 * d_model, d_model))
                                for _ in range(n_layers))

    def forward(self, x: Tensor, state: TransformerState | None, reset: Tensor) -> tuple[Tensor, TransformerState]:
        b, t, _ = x.shape
        nh, hd, w = self.n_heads, self.d_model // self.n_heads, self.context - 1
        if state is None:
            empty = x.new_zeros(self.n_layers, b, nh, w, hd)
            state = TransformerState(empty, empty.clone(), torch.zeros(b, w, dtype=torch.bool, device=x.device))
        # keys are the cache (positions 0..w-1) followed by the new tokens (w..w+t-1)
        seg_new = torch.cumsum(reset.long(), 1)  # resets seen up to and including each new token
        qi = torch.arange(t, device=x.device)[:, None] + w
        kj = torch.arange(w + t, device=x.device)[None, :]
        window = (kj <= qi) & (kj > qi - self.context)  # [t, w + t]
        seg_k = torch.cat([torch.zeros(b, w, dtype=torch.long, device=x.device), seg_new], 1)
        valid_k = torch.cat([state.valid, torch.ones(b, t, dtype=torch.bool, device=x.device)], 1)
        mask = window[None] & (seg_k[:, None, :] == seg_new[:, :, None]) & valid_k[:, None, :]  # [B, t, w + t]
        pos = torch.arange(w + t, device=x.device)
        new_k, new_v = [], []
        for i in range(self.n_layers):
            q, k, v = self.qkv[i](self.norm1[i](x)).view(b, t, 3, nh, hd).permute(2, 0, 3, 1, 4)
            k_all, v_all = torch.cat([state.k[i], k], 2), torch.cat([state.v[i], v], 2)
            new_k.append(k_all[:, :, -w:] if w else k_all[:, :, :0])
            new_v.append(v_all[:, :, -w:] if w else v_all[:, :, :0])
            att = F.scaled_dot_product_attention(_rotary(q, pos[w:]), _rotary(k_all, pos), v_all, attn_mask=mask[:, None])
            x = x + self.proj[i](att.transpose(1, 2).reshape(b, t, self.d_model))
            x = x + self.ff[i](self.norm2[i](x))
        # a cached token stays visible only if no episode started after it
        keep = valid_k & (seg_k == seg_new[:, -1:])
        return x, TransformerState(torch.stack(new_k), torch.stack(new_v), keep[:, -w:] if w else keep[:, :0])


# ----------------------------------------------------------------------------------------------
# Selective state-space model (Mamba-2 style)
# ----------------------------------------------------------------------------------------------
@dataclass
class SSMState:
    """Per layer: the last ``conv - 1`` convolution inputs and the SSM state.

    Attributes:
        conv: ``[n_layers, B, conv - 1, conv_dim]``.
        ssm: ``[n_layers, B, heads, head_dim, d_state]``.
    """

    conv: Tensor
    ssm: Tensor


def _segsum(a: Tensor) -> Tensor:
    """``out[..., i, j] = sum_{j < k <= i} a[..., k]`` for ``i >= j``, ``-inf`` above the diagonal (stable form)."""
    n = a.shape[-1]
    x = a[..., None].expand(*a.shape, n)  # x[..., k, j] = a[..., k]
    lower = torch.tril(torch.ones(n, n, dtype=torch.bool, device=a.device), -1)
    x = torch.cumsum(x.masked_fill(~lower, 0.0), dim=-2)
    return x.masked_fill(~torch.tril(torch.ones(n, n, dtype=torch.bool, device=a.device)), -math.inf)


def ssd_scan(x: Tensor, log_a: Tensor, b: Tensor, c: Tensor, reset: Tensor, state: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """The chunked parallel form of ``s_t = exp(log_a_t) s_{t-1} + x_t b_t^T``, ``y_t = s_t c_t`` (Mamba-2's SSD).

    Within each chunk of ``L`` steps the outputs are a masked ``L x L`` product;
    chunk-end states are then carried from chunk to chunk, so the cost is
    ``O(T L)`` work and ``O(T)`` memory. ``reset[:, t]`` zeroes the state before step ``t``.

    Args:
        x: ``[B, T, H, P]`` inputs (already scaled by the step size).
        log_a: ``[B, T, H]`` log decays (``<= 0``).
        b, c: ``[B, T, N]`` input and output projections (shared across heads).
        reset: ``[B, T]`` bool.
        state: ``[B, H, P, N]`` the state before step 0.
        chunk: chunk length ``L``.

    Returns:
        ``(y [B, T, H, P], final state [B, H, P, N])``.
    """
    bsz, t, h, p = x.shape
    chunk = min(chunk, t)  # a short sequence is one chunk (no padding work)
    pad = (-t) % chunk
    if pad:  # padded steps have zero input and unit decay, and are dropped from the output
        x, log_a, b, c = (F.pad(v, (0, 0) * (v.dim() - 2) + (0, pad)) for v in (x, log_a, b, c))
        reset = F.pad(reset, (0, pad))
    nc = x.shape[1] // chunk
    x = x.view(bsz, nc, chunk, h, p)
    b, c = b.view(bsz, nc, chunk, -1), c.view(bsz, nc, chunk, -1)
    log_a = log_a.view(bsz, nc, chunk, h).permute(0, 3, 1, 2)  # [B, H, nc, L]
    seg = torch.cumsum(reset.view(bsz, nc, chunk).long(), -1)  # resets in the chunk up to each step
    a_cum = torch.cumsum(log_a, -1)
    # 1. within chunks: y_i = sum_{j <= i} c_i.b_j exp(sum_{j<k<=i} log_a_k) x_j, if no reset in (j, i]
    same = (seg[..., :, None] == seg[..., None, :])[:, None]  # [B, 1, nc, L, L]
    decay = torch.exp(_segsum(log_a)) * same
    y = torch.einsum("bcln,bcsn,bhcls,bcshp->bclhp", c, b, decay, x)
    # 2. each chunk's own end state
    to_end = torch.exp(a_cum[..., -1:] - a_cum) * (seg[..., -1:] == seg)[:, None]  # [B, H, nc, L]
    chunk_states = torch.einsum("bcln,bhcl,bclhp->bchpn", b, to_end, x)
    # 3. carry states across chunks (a short sequential loop over T / L chunks)
    through = torch.exp(a_cum[..., -1]) * (seg[..., -1] == 0)[:, None]  # [B, H, nc]
    starts = []
    for i in range(nc):
        starts.append(state)
        state = through[:, :, i, None, None] * state + chunk_states[:, i]
    start = torch.stack(starts, 1)  # [B, nc, H, P, N] state entering each chunk
    # 4. the entering state's contribution, until the first reset of the chunk
    from_start = torch.exp(a_cum) * (seg == 0)[:, None]  # [B, H, nc, L]
    y = y + torch.einsum("bcln,bchpn,bhcl->bclhp", c, start, from_start)
    return y.reshape(bsz, nc * chunk, h, p)[:, :t], state


class MambaLayer(nn.Module):
    """One Mamba-2-style mixer: ``in_proj -> causal depthwise conv -> SiLU -> selective SSM -> gate -> RMSNorm -> out_proj``."""

    def __init__(self, d_model: int, d_state: int, expand: int, conv: int, head_dim: int, chunk: int) -> None:
        super().__init__()
        d_inner = expand * d_model
        if d_inner % head_dim:
            raise ValueError(f"expand * d_model = {d_inner} must be a multiple of head_dim {head_dim}")
        self.d_inner, self.d_state, self.heads, self.head_dim, self.k, self.chunk = d_inner, d_state, d_inner // head_dim, head_dim, conv, chunk
        self.conv_dim = d_inner + 2 * d_state
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * d_state + self.heads)
        self.conv_weight = nn.Parameter(torch.randn(self.conv_dim, conv) / math.sqrt(conv))
        self.conv_bias = nn.Parameter(torch.zeros(self.conv_dim))
        # A in [-16, -1] and dt in [1e-3, 0.1] at init, as in Mamba-2
        self.a_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, self.heads)))
        dt = torch.exp(torch.linspace(math.log(1e-3), math.log(0.1), self.heads))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.d_skip = nn.Parameter(torch.ones(self.heads))
        self.norm = RMSNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model)

    def _split(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z, xbc, dt = torch.split(u, [self.d_inner, self.conv_dim, self.heads], -1)
        return z, xbc, F.softplus(dt + self.dt_bias)

    def _out(self, y: Tensor, xs: Tensor, z: Tensor) -> Tensor:
        y = y + xs * self.d_skip[:, None]
        y = y.flatten(-2)
        return self.out_proj(self.norm(y * F.silu(z)))

    def forward(self, u: Tensor, conv_state: Tensor, ssm_state: Tensor, reset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bsz, t, _ = u.shape
        z, xbc, dt = self._split(self.in_proj(u))
        # causal depthwise conv that does not look across an episode start
        seq = torch.cat([conv_state, xbc], 1)  # [B, k-1+t, C]
        seg = torch.cumsum(torch.cat([torch.zeros_like(reset[:, : self.k - 1]), reset], 1).long(), 1)
        out = self.conv_bias.expand(bsz, t, -1)
        for j in range(self.k):  # tap j looks j steps back
            lo = self.k - 1 - j
            same = (seg[:, lo:lo + t] == seg[:, self.k - 1:]).unsqueeze(-1)
            out = out + seq[:, lo:lo + t] * self.conv_weight[:, self.k - 1 - j] * same
        keep = (seg[:, -(self.k - 1):] == seg[:, -1:]).unsqueeze(-1) if self.k > 1 else None
        new_conv = seq[:, -(self.k - 1):] * keep if keep is not None else seq[:, :0]
        xbc = F.silu(out)
        xs, b, c = torch.split(xbc, [self.d_inner, self.d_state, self.d_state], -1)
        xs = xs.view(bsz, t, self.heads, self.head_dim)
        log_a = -torch.exp(self.a_log) * dt  # [B, T, H]
        y = None
        if _fast_path_ok(u, reset):
            y, ssm_state = _mamba_kernel(xs, dt, self.a_log, b, c, ssm_state)
        if y is None:
            y, ssm_state = ssd_scan(xs * dt[..., None], log_a, b, c, reset, ssm_state, self.chunk)
        return self._out(y, xs, z), new_conv, ssm_state

    def step(self, u: Tensor, conv_state: Tensor, ssm_state: Tensor, reset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The recurrent form for one step, ``u [B, d_model]`` (used to act and imagine, and to test the scan)."""
        keep = (~reset).to(u.dtype)
        conv_state, ssm_state = conv_state * keep[:, None, None], ssm_state * keep[:, None, None, None]
        z, xbc, dt = self._split(self.in_proj(u))
        window = torch.cat([conv_state, xbc[:, None]], 1)  # [B, k, C]
        xbc = F.silu((window * self.conv_weight.T).sum(1) + self.conv_bias)
        xs, b, c = torch.split(xbc, [self.d_inner, self.d_state, self.d_state], -1)
        xs = xs.view(-1, self.heads, self.head_dim)
        decay = torch.exp(-torch.exp(self.a_log) * dt)  # [B, H]
        ssm_state = decay[..., None, None] * ssm_state + (dt[..., None] * xs)[..., None] * b[:, None, None, :]
        y = (ssm_state * c[:, None, None, :]).sum(-1)
        return self._out(y, xs, z), window[:, 1:], ssm_state


def _fast_path_ok(u: Tensor, reset: Tensor) -> bool:
    return u.is_cuda and not bool(reset[:, 1:].any()) and _mamba_ssm() is not None


def _mamba_ssm() -> Any:
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined  # type: ignore[import-not-found]
    except ImportError:
        return None
    return mamba_chunk_scan_combined


def _mamba_kernel(xs: Tensor, dt: Tensor, a_log: Tensor, b: Tensor, c: Tensor, state: Tensor) -> tuple[Tensor | None, Tensor]:
    """The fused Triton/CUDA scan of the ``mamba_ssm`` package (GPU only; not exercised by the CPU tests)."""
    kernel = _mamba_ssm()
    y, final = kernel(xs, dt, -torch.exp(a_log), b[:, :, None], c[:, :, None], chunk_size=256,
                      initial_states=state, return_final_states=True)
    return y, final


class SSMBackbone(nn.Module):
    """Residual stack of :class:`MambaLayer` blocks, each pre-normed with RMSNorm."""

    def __init__(self, d_model: int, n_layers: int, d_state: int, expand: int, conv: int, head_dim: int, chunk: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MambaLayer(d_model, d_state, expand, conv, head_dim, chunk) for _ in range(n_layers))
        self.norms = nn.ModuleList(RMSNorm(d_model) for _ in range(n_layers))

    def initial(self, b: int, ref: Tensor) -> SSMState:
        l0 = self.layers[0]
        return SSMState(ref.new_zeros(len(self.layers), b, l0.k - 1, l0.conv_dim),
                        ref.new_zeros(len(self.layers), b, l0.heads, l0.head_dim, l0.d_state))

    def forward(self, x: Tensor, state: SSMState | None, reset: Tensor) -> tuple[Tensor, SSMState]:
        state = state or self.initial(x.shape[0], x)
        convs, ssms = [], []
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            y, cs, ss = layer(norm(x), state.conv[i], state.ssm[i], reset)
            x = x + y
            convs.append(cs)
            ssms.append(ss)
        return x, SSMState(torch.stack(convs), torch.stack(ssms))

    def step(self, x: Tensor, state: SSMState | None, reset: Tensor) -> tuple[Tensor, SSMState]:
        state = state or self.initial(x.shape[0], x)
        convs, ssms = [], []
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            y, cs, ss = layer.step(norm(x), state.conv[i], state.ssm[i], reset)
            x = x + y
            convs.append(cs)
            ssms.append(ss)
        return x, SSMState(torch.stack(convs), torch.stack(ssms))


# ----------------------------------------------------------------------------------------------
# The shared wrapper
# ----------------------------------------------------------------------------------------------
class SequenceModel(nn.Module):
    """``Linear -> RMSNorm -> SiLU`` input layer, a backbone, and a final RMSNorm (see the module docstring).

    Args:
        kind: ``"gru"``, ``"transformer"`` or ``"ssm"``.
        input_dim: features per step.
        d_model: width of the backbone and of the output.
        n_layers: backbone layers.
        n_heads: attention heads (transformer).
        context: attention window in tokens (transformer).
        d_state: SSM state size per channel (ssm).
        expand: SSM inner width / d_model (ssm).
        conv: SSM causal convolution width (ssm).
        head_dim: SSM channels per head sharing one decay (ssm).
        chunk: SSM scan chunk length (ssm).
    """

    def __init__(self, kind: str, input_dim: int, d_model: int, n_layers: int = 2, *, n_heads: int = 4, context: int = 64,
                 d_state: int = 16, expand: int = 2, conv: int = 4, head_dim: int = 16, chunk: int = 32) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown sequence model {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind, self.d_model = kind, d_model
        self.inp = nn.Sequential(nn.Linear(input_dim, d_model), RMSNorm(d_model), nn.SiLU())
        self.core: nn.Module
        if kind == "gru":
            self.core = GRUBackbone(d_model, n_layers)
        elif kind == "transformer":
            self.core = TransformerBackbone(d_model, n_layers, n_heads, context)
        else:
            self.core = SSMBackbone(d_model, n_layers, d_state, expand, conv, head_dim, chunk)
        self.out_norm = RMSNorm(d_model)

    def forward(self, x: Tensor, state: Any = None, reset: Tensor | None = None) -> tuple[Tensor, Any]:
        """Outputs ``[B, T, d_model]`` for inputs ``[B, T, input_dim]`` and the state after the last step."""
        b, t, _ = x.shape
        h, state = self.core(self.inp(x), state, _reset_mask(reset, b, t, x.device))
        return self.out_norm(h), state

    def step(self, x: Tensor, state: Any = None, reset: Tensor | None = None) -> tuple[Tensor, Any]:
        """One step: output ``[B, d_model]`` for input ``[B, input_dim]``, and the next state."""
        r = _reset_mask(None if reset is None else reset[:, None], x.shape[0], 1, x.device)
        if self.kind == "ssm":
            h, state = self.core.step(self.inp(x), state, r[:, 0])  # type: ignore[operator]
            return self.out_norm(h), state
        h, state = self.core(self.inp(x)[:, None], state, r)
        return self.out_norm(h[:, 0]), state


def make_sequence_model(kind: str, input_dim: int, d_model: int, n_layers: int = 2, **kw: Any) -> SequenceModel:
    """Build a :class:`SequenceModel` of ``kind`` (``gru``, ``transformer``, ``ssm``); ``kw`` are its per-kind options."""
    return SequenceModel(kind, input_dim, d_model, n_layers, **kw)


def select_state(state: Any, index: Tensor) -> Any:
    """Rows ``index`` of a backbone state (batch axis 1 for stacked per-layer tensors, 0 for masks)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state[:, index]
    if isinstance(state, TransformerState):
        return TransformerState(state.k[:, index], state.v[:, index], state.valid[index])
    return SSMState(state.conv[:, index], state.ssm[:, index])
