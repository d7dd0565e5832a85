"""Losses and targets against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from polyrl import losses


def test_ppo_clip_loss():
    log_prob = torch.log(torch.tensor([1.5, 0.5, 1.0]))
    adv = torch.tensor([1.0, -1.0, 2.0])
    # ratios 1.5, 0.5, 1.0 -> min(unclipped, clipped) = 1.2, -0.8, 2.0
    loss = losses.ppo_clip_loss(log_prob, torch.zeros(3), adv, clip=0.2)
    assert loss.item() == pytest.approx(-(1.2 - 0.8 + 2.0) / 3)


def test_value_loss_plain_and_clipped():
    v, target, old = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0])
    assert losses.value_loss(v, target).item() == pytest.approx(2.0)
    # clipped value = 1 + clamp(1, -.5, .5) = 1.5 -> max(4, 2.25) = 4
    assert losses.value_loss(v, target, old_value=old, clip=0.5).item() == pytest.approx(2.0)
    v2 = torch.tensor([0.0])  # unclipped err 0, clipped value 0.5 -> err 0.25 -> max is 0.25
    assert losses.value_loss(v2, target, old_value=old, clip=0.5).item() == pytest.approx(0.125)


def test_entropies():
    assert losses.gaussian_entropy(torch.zeros(3)).item() == pytest.approx(3 * 0.5 * math.log(2 * math.pi * math.e))
    assert losses.categorical_entropy(torch.zeros(4)).item() == pytest.approx(math.log(4))
    assert losses.categorical_entropy(torch.tensor([0.0, -1e9])).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_q_target():
    next_q = torch.tensor([[2.0], [3.0]])  # [E=2, B=1]
    y = losses.soft_q_target(torch.tensor([1.0]), next_q, torch.tensor([0.5]), alpha=0.2, discount=0.99, terminated=torch.zeros(1))
    assert y.item() == pytest.approx(1 + 0.99 * (2.0 - 0.1))
    y_term = losses.soft_q_target(torch.tensor([1.0]), next_q, torch.tensor([0.5]), alpha=0.2, discount=0.99, terminated=torch.ones(1))
    assert y_term.item() == pytest.approx(1.0)


def test_double_q_target_uses_online_argmax_and_target_value():
    y = losses.double_q_target(torch.tensor([0.5]), torch.tensor([[1.0, 3.0]]), torch.tensor([[5.0, 2.0]]),
                               discount=0.9, terminated=torch.zeros(1))
    assert y.item() == pytest.approx(0.5 + 0.9 * 2.0)


def test_td_target_broadcasts_objectives():
    y = losses.td_target(torch.tensor([[1.0, 2.0]]), torch.tensor([[10.0, 20.0]]), discount=torch.tensor([[0.5]]),
                         terminated=torch.tensor([[0.0]]))
    torch.testing.assert_close(y, torch.tensor([[6.0, 12.0]]))


def test_temperature_loss_gradient_sign():
    log_alpha = torch.zeros((), requires_grad=True)
    # policy entropy (−log pi = 2) above target (−1): alpha should decrease -> positive gradient
    losses.temperature_loss(log_alpha, torch.full((4,), -2.0), target_entropy=-1.0).backward()
    assert log_alpha.grad.item() > 0


def test_polyak_update():
    target, online = [torch.zeros(2)], [torch.tensor([1.0, 2.0])]
    losses.polyak_update(target, online, tau=0.1)
    torch.testing.assert_close(target[0], torch.tensor([0.1, 0.2]))
    losses.polyak_update(target, online, tau=1.0)
    torch.testing.assert_close(target[0], online[0])
