"""Networks and distributions."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.distributions import Categorical as TCategorical
from torch.distributions import Normal

from polyrl.nets import Categorical, EnsembleLinear, EnsembleMLP, Gaussian, TanhGaussian, frozen, mlp
from polyrl.nets.heads import QEnsemble


def test_mlp_shapes_and_orthogonal_init():
    net = mlp(5, 3, (8, 8), "tanh", orthogonal=True, out_gain=0.01)
    assert net(torch.randn(4, 5)).shape == (4, 3)
    last = [m for m in net if isinstance(m, nn.Linear)][-1]
    assert last.weight.abs().max() < 0.05 and torch.all(last.bias == 0)
    with pytest.raises(ValueError, match="unknown activation"):
        mlp(1, 1, act="swishy")


def test_ensemble_linear_equals_separate_linears():
    layer = EnsembleLinear(3, 4, 2)
    x = torch.randn(3, 5, 4)
    out = layer(x)
    for k in range(3):
        torch.testing.assert_close(out[k], x[k] @ layer.weight[k] + layer.bias[k])
    shared = torch.randn(5, 4)
    torch.testing.assert_close(layer(shared)[1], shared @ layer.weight[1] + layer.bias[1])


def test_ensemble_members_are_independent():
    net = EnsembleMLP(4, 3, 1, (8,))
    x = torch.randn(10, 3)
    out = net(x)
    assert out.shape == (4, 10, 1)
    out[2].sum().backward()
    grads = net.net[0].weight.grad
    assert grads[2].abs().sum() > 0 and grads[[0, 1, 3]].abs().sum() == 0


def test_q_ensemble_shape():
    q = QEnsemble(2, 3, 2, (8, 8))
    assert q(torch.randn(7, 3), torch.randn(7, 2)).shape == (2, 7)


def test_gaussian_matches_torch():
    mean, log_std = torch.randn(6, 3), torch.randn(6, 3) * 0.3
    x = torch.randn(6, 3)
    d, ref = Gaussian(mean, log_std), Normal(mean, log_std.exp())
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x).sum(-1))
    torch.testing.assert_close(d.entropy(), ref.entropy().sum(-1))


def test_tanh_gaussian_log_prob_change_of_variables():
    mean, log_std = torch.randn(5, 2), torch.randn(5, 2) * 0.3
    d = TanhGaussian(mean, log_std)
    a, logp = d.rsample_with_log_prob()
    assert a.abs().max() < 1
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    expected = Normal(mean, log_std.exp()).log_prob(u).sum(-1) - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    torch.testing.assert_close(logp, expected, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(d.log_prob(a), logp, atol=1e-3, rtol=1e-3)


def test_tanh_gaussian_repeat_rows_gives_n_samples_per_row():
    mean, log_std = torch.tensor([[0.5, -0.5], [-2.0, 2.0]]), torch.tensor([[-1.0, -1.0], [-3.0, -3.0]])
    d = TanhGaussian(mean, log_std).repeat_rows(3)
    a, logp = d.rsample_with_log_prob()
    assert a.shape == (6, 2) and logp.shape == (6,)
    torch.testing.assert_close(d.mode(), torch.tanh(mean).repeat_interleave(3, dim=0))
    torch.testing.assert_close(logp, TanhGaussian(mean.repeat_interleave(3, 0), log_std.repeat_interleave(3, 0)).log_prob(a),
                               atol=1e-3, rtol=1e-3)


def test_tanh_module_matches_torch_tanh_values_and_gradients():
    from polyrl.nets.mlp import Tanh

    for shape in [(3, 5), (2, 256, 64)]:  # below and above the size where the sigmoid form is used
        x = (torch.randn(*shape) * 4).requires_grad_()
        y = Tanh()(x)
        g = torch.randn(*shape)
        (gx,) = torch.autograd.grad(y, x, g)
        torch.testing.assert_close(y, torch.tanh(x), atol=1e-6, rtol=0)
        torch.testing.assert_close(gx, g * (1 - torch.tanh(x) ** 2), atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(Tanh()(x), torch.tanh(x), atol=1e-6, rtol=0)


def test_categorical_matches_torch():
    logits = torch.randn(4, 5)
    a = torch.tensor([0, 4, 2, 1])
    d, ref = Categorical(logits), TCategorical(logits=logits)
    torch.testing.assert_close(d.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(d.entropy(), ref.entropy())
    assert d.mode().tolist() == logits.argmax(-1).tolist()
    torch.manual_seed(0)
    counts = torch.bincount(Categorical(torch.log(torch.tensor([[0.7, 0.3]]).expand(4000, 2))).sample(), minlength=2)
    assert abs(counts[0].item() / 4000 - 0.7) < 0.03


def test_frozen_skips_weight_grads_keeps_input_grads():
    net = mlp(3, 1, (4,))
    x = torch.randn(2, 3, requires_grad=True)
    with frozen(net):
        net(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_gaussian_entropy_value():
    assert Gaussian(torch.zeros(2), torch.zeros(2)).entropy().item() == pytest.approx(math.log(2 * math.pi * math.e))


def test_ensemble_inference_in_chunks_equals_one_pass():
    torch.manual_seed(0)
    net = EnsembleMLP(3, 5, 4, (16, 16), "silu")
    net.inference_chunk = 7  # 50 rows: 8 chunks, the last one short
    x = torch.randn(50, 5)
    with torch.no_grad():
        chunked, per_member = net(x), net(torch.randn(3, 50, 5))
    whole = net(x)  # with autograd: one pass
    assert whole.requires_grad and chunked.shape == whole.shape == (3, 50, 4) and per_member.shape == (3, 50, 4)
    torch.testing.assert_close(chunked, whole.detach())
    with torch.no_grad():
        torch.testing.assert_close(net(x, slice(1, 3)), whole.detach()[1:3])


@pytest.mark.parametrize("shared", [True, False])
def test_ensemble_member_by_member_path_equals_batched(shared: bool):
    """Large autograd batches run member by member; values and gradients match the batched matmuls."""
    torch.manual_seed(0)
    net = EnsembleMLP(3, 5, 2, (16, 16), "relu")
    x = torch.randn(40, 5) if shared else torch.randn(3, 40, 5)
    grads = []
    for rows in (10**9, 8):  # batched, then member by member (40 rows >= 8)
        net.per_member_rows = rows
        net.zero_grad()
        out = net(x)
        (out * torch.arange(1.0, 4.0).view(3, 1, 1)).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)
    net.per_member_rows = 8
    torch.testing.assert_close(net(x if shared else x[1:3], slice(1, 3)), grads[0][0][1:3])


def _adam_pair(**kw: float) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer]:
    from polyrl.algos.base import LeanAdam

    torch.manual_seed(0)
    a = QEnsemble(2, 5, 2, (16, 16))
    b = QEnsemble(2, 5, 2, (16, 16))
    b.load_state_dict(a.state_dict())
    groups_a = [{"params": list(a.net.net[0].parameters()), "weight_decay": 1e-3}, {"params": list(a.net.net[2:].parameters())}]
    groups_b = [{"params": list(b.net.net[0].parameters()), "weight_decay": 1e-3}, {"params": list(b.net.net[2:].parameters())}]
    return a, b, torch.optim.Adam(groups_a, fused=True, **kw), LeanAdam(groups_b, fused=True, **kw)


def _step(q: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, act: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    q(x, act).pow(2).mean().backward()
    opt.step()


def test_lean_adam_equals_fused_adam_bit_for_bit():
    """LeanAdam's direct kernel call is torch's fused Adam, step for step: per-group weight decay, a learning
    rate changed on the fly, a step where one parameter has no gradient, and a state_dict either way."""
    a, b, opt_a, opt_b = _adam_pair(lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        x, act = torch.randn(8, 5, generator=g), torch.randn(8, 2, generator=g)
        if i == 5:
            for o in (opt_a, opt_b):
                o.param_groups[1]["lr"] = 3e-4
        if i == 7:  # the output layer's bias gets no gradient: both skip it
            for q in (a, b):
                q.net.net[-1].bias.requires_grad_(False)
        if i == 8:
            for q in (a, b):
                q.net.net[-1].bias.requires_grad_(True)
        _step(a, opt_a, x, act)
        _step(b, opt_b, x, act)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb), f"step {i}"
    assert opt_b._lists  # the fast path ran
    assert any(pb.grad is not None for pb in b.parameters())
    opt_b.zero_grad()
    assert all(pb.grad is None for pb in b.parameters())
    # checkpoints: LeanAdam's state loads into torch's Adam and back, and both go on alike
    state_b = copy.deepcopy(opt_b.state_dict())  # (load_state_dict keeps the very tensors it is given)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    opt_a.load_state_dict(state_b)
    x, act = torch.randn(8, 5, generator=g), torch.randn(8, 2, generator=g)
    _step(a, opt_a, x, act)
    _step(b, opt_b, x, act)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_lean_adam_follows_replaced_state():
    """State tensors swapped behind the optimiser's back (a hand-made device move) are the ones it updates."""
    a, b, opt_a, opt_b = _adam_pair(lr=1e-3)
    x, act = torch.randn(8, 5), torch.randn(8, 2)
    for _ in range(3):
        _step(a, opt_a, x, act)
        _step(b, opt_b, x, act)
    for opt in (opt_a, opt_b):
        for st in opt.state.values():
            st["exp_avg"], st["exp_avg_sq"], st["step"] = st["exp_avg"].clone(), st["exp_avg_sq"].clone(), st["step"].clone()
    for _ in range(2):
        _step(a, opt_a, x, act)
        _step(b, opt_b, x, act)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
        for key in ("exp_avg", "exp_avg_sq", "step"):  # the new tensors moved on, as Adam's did
            assert torch.equal(opt_a.state[pa][key], opt_b.state[pb][key]), key


def test_lean_adam_runs_step_hooks():
    """With a hook registered, LeanAdam takes Adam's own step, hooks included."""
    _, b, _, opt_b = _adam_pair(lr=1e-3)
    calls: list[int] = []
    opt_b.register_step_post_hook(lambda *_: calls.append(1))
    for _ in range(2):
        _step(b, opt_b, torch.randn(4, 5), torch.randn(4, 2))
    assert calls == [1, 1]


def test_gaussian_policy_tanh_mean_bounds_the_mean_only():
    """IQL's actor: an unsquashed Gaussian whose mean is tanh of the network output."""
    from polyrl.nets.heads import GaussianPolicy

    torch.manual_seed(0)
    pi = GaussianPolicy(3, 2, (16,), state_dependent_std=False, squash=False, tanh_mean=True, log_std_bounds=(-5.0, 2.0))
    obs = torch.randn(64, 3) * 100  # large inputs: the raw output would leave [-1, 1]
    dist = pi(obs)
    raw = pi.net(obs)
    torch.testing.assert_close(dist.mode(), torch.tanh(raw))
    a = torch.rand(64, 2) * 2 - 1
    expected = Normal(torch.tanh(raw), pi.log_std.clamp(-5.0, 2.0).exp()).log_prob(a).sum(-1)
    torch.testing.assert_close(dist.log_prob(a), expected)
    with pytest.raises(ValueError, match="tanh_mean"):
        GaussianPolicy(3, 2, (16,), squash=True, tanh_mean=True)
