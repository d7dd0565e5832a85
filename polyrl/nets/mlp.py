"""Multi-layer perceptrons and batched ensembles with stacked weights."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class _SigmoidTanh(torch.autograd.Function):
    """``tanh(x) = 2 sigmoid(2x) - 1`` with tanh's own backward ``g (1 - y^2)``."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        y = torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Module):
    """``tanh``, computed as ``2 sigmoid(2x) - 1`` on large CPU tensors.

    On CPU, PyTorch's vectorised ``tanh`` is about 5x slower than its
    ``sigmoid`` (84 us vs 16 us for a 2 x 256 x 64 float tensor, one thread,
    torch 2.13); on a PPO minibatch that made the activation cost more than the
    matmuls (one rollout-and-update cycle of PPO on CartPole, 64x64 tanh
    networks, is ~3% faster with this form). The identity agrees with
    ``torch.tanh`` to 2e-7. Small tensors (below ``min_numel``, e.g. acting on
    a few envs) and other devices use ``torch.tanh``, where the extra kernels
    would cost more than they save.
    """

    min_numel = 4096

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or x.numel() < self.min_numel:
            return torch.tanh(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _SigmoidTanh.apply(x)
        return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def activation(name: str) -> type[nn.Module]:
    """Look up an activation class by name (``relu``, ``tanh``, ``elu``, ``silu``, ``gelu``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (256, 256),
    act: str = "relu",
    *,
    out_gain: float | None = None,
    orthogonal: bool = False,
) -> nn.Sequential:
    """Build ``Linear -> act -> ... -> Linear``.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers.
        act: activation name.
        out_gain: with ``orthogonal``, the gain of the output layer (e.g. 0.01
            for a policy head, 1.0 for a value head).
        orthogonal: orthogonal initialisation with gain sqrt(2) and zero
            biases (the PPO implementation detail of Engstrom et al. 2020).
    """
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), activation(act)()]
    layers.append(nn.Linear(dims[-1], out_dim))
    net = nn.Sequential(*layers)
    if orthogonal:
        linears = [m for m in net if isinstance(m, nn.Linear)]
        for i, m in enumerate(linears):
            gain = math.sqrt(2.0) if i < len(linears) - 1 else (1.0 if out_gain is None else out_gain)
            nn.init.orthogonal_(m.weight, gain)
            nn.init.zeros_(m.bias)
    return net


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers computed as one batched matmul.

    Weights are stacked as ``[E, in, out]``. Input ``[E, B, in]`` gives
    ``[E, B, out]``; an input ``[B, in]`` without the ensemble axis is shared
    by every member.
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.n_members, self.in_dim, self.out_dim = n_members, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(n_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Same distribution as ``nn.Linear`` (uniform in +-1/sqrt(in)), per member."""
        bound = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, members: slice | None = None) -> Tensor:
        """``members`` selects a contiguous subset of the ensemble (default: all)."""
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
        return torch.baddbmm(bias, x, weight)

    def extra_repr(self) -> str:
        return f"members={self.n_members}, in={self.in_dim}, out={self.out_dim}"


class EnsembleMLP(nn.Module):
    """An ensemble of ``E`` MLPs of identical shape as one module (stacked weights).

    ``forward([B, in] or [E, B, in]) -> [E, B, out]``. ``orthogonal`` and
    ``out_gain`` initialise every member as :func:`mlp` does.
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256), act: str = "relu",
                 *, out_gain: float | None = None, orthogonal: bool = False) -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [EnsembleLinear(n_members, a, b), activation(act)()]
        layers.append(EnsembleLinear(n_members, dims[-1], out_dim))
        self.net = nn.Sequential(*layers)
        self.n_members = n_members
        if orthogonal:
            linears = [m for m in self.net if isinstance(m, EnsembleLinear)]
            with torch.no_grad():
                for i, m in enumerate(linears):
                    gain = math.sqrt(2.0) if i < len(linears) - 1 else (1.0 if out_gain is None else out_gain)
                    for w in m.weight:  # [in, out] per member; nn.Linear's weight is its transpose
                        nn.init.orthogonal_(w.T, gain)
                    nn.init.zeros_(m.bias)

    inference_chunk: int = 1024
    """Without autograd, batches longer than this run through the network in chunks of this many rows: an
    ``[E, B, hidden]`` activation of a large batch (model rollouts from 10^4-10^5 states) falls out of the CPU's
    caches, and chunking made a 7 x 4 x 200 ensemble's forward on 10^4 rows 1.6x faster."""

    def forward(self, x: Tensor, members: slice | None = None) -> Tensor:
        """``[E', B, out]`` for the selected ``members`` (default: all ``E``)."""
        rows, chunk = x.shape[-2], self.inference_chunk
        if rows > chunk and not torch.is_grad_enabled():
            return torch.cat([self._forward(x[..., i:i + chunk, :], members) for i in range(0, rows, chunk)], dim=-2)
        return self._forward(x, members)

    per_member_rows: int = 4096
    """With autograd, batches of at least this many rows run member by member (one 2-D ``addmm`` per layer and
    member, stacked at the end) instead of as batched matmuls: on one CPU thread torch's ``bmm`` and its backward
    ran large products below the throughput of plain matrix products (CQL's critic pass over 7680 sampled actions)."""

    def _forward(self, x: Tensor, members: slice | None) -> Tensor:
        if x.shape[-2] >= self.per_member_rows and torch.is_grad_enabled():
            return self._forward_per_member(x, members)
        for layer in self.net:
            x = layer(x, members) if isinstance(layer, EnsembleLinear) else layer(x)
        return x

    def _forward_per_member(self, x: Tensor, members: slice | None) -> Tensor:
        index = range(self.n_members)[slice(None) if members is None else members]
        if x.dim() == 3 and x.shape[0] != len(index):
            raise ValueError(f"input has {x.shape[0]} members, expected {len(index)}")
        outs = []
        for i, e in enumerate(index):
            h = x if x.dim() == 2 else x[i]
            for layer in self.net:
                h = torch.addmm(layer.bias[e], h, layer.weight[e]) if isinstance(layer, EnsembleLinear) else layer(h)
            outs.append(h)
        return torch.stack(outs)


@torch.no_grad()
def copy_members(dst: nn.Module, src: nn.Module, dst_index: int, src_index: int) -> None:
    """Copy member ``src_index`` of ensemble ``src`` into member ``dst_index`` of ``dst`` (same layer shapes).

    Every parameter of an ensemble module carries the member axis first, so
    this copies one slice per parameter.
    """
    for d, s in zip(dst.parameters(), src.parameters(), strict=True):
        d[dst_index].copy_(s[src_index])


@torch.no_grad()
def clip_grad_norm_per_member(params: list[Tensor], max_norm: float) -> Tensor:
    """Clip each ensemble member's gradient norm to ``max_norm`` separately (members train independently,
    so one member's large gradient must not shrink the others'); returns the ``[E]`` norms before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    sq = torch.stack([g.pow(2).flatten(1).sum(1) for g in grads]).sum(0)
    norm = sq.sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norm


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``module``'s parameters get no gradients (inputs still do).

    Used when a loss flows *through* a network that another optimiser owns
    (the actor loss through the critics): it skips the weight-gradient
    matmuls instead of computing and discarding them.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)
