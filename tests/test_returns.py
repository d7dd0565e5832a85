"""Returns and targets against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polyrl.returns import gae, lambda_returns, nstep_returns

R = torch.tensor([1.0, 2.0, 3.0])
V = torch.tensor([0.5, 1.0, 1.5])
NV = torch.tensor([1.0, 1.5, 2.0])
Z = torch.zeros(3)


def test_gae_no_episode_end():
    adv, ret = gae(R, V, NV, Z, Z, gamma=0.9, lam=0.8)
    # delta = [1.4, 2.35, 3.3]; A2 = 3.3, A1 = 2.35 + .72 * 3.3, A0 = 1.4 + .72 * A1
    torch.testing.assert_close(adv, torch.tensor([4.80272, 4.726, 3.3]))
    torch.testing.assert_close(ret, torch.tensor([5.30272, 5.726, 4.8]))


def test_gae_truncation_bootstraps_but_cuts_recursion():
    done = torch.tensor([0.0, 1.0, 0.0])
    adv, _ = gae(R, V, NV, Z, done, gamma=0.9, lam=0.8)
    # step 1 still bootstraps from V(final obs) = 1.5: delta1 = 2.35, but A1 does not see A2.
    torch.testing.assert_close(adv, torch.tensor([1.4 + 0.72 * 2.35, 2.35, 3.3]))


def test_gae_termination_does_not_bootstrap():
    term = torch.tensor([0.0, 1.0, 0.0])
    adv, _ = gae(R, V, NV, term, term, gamma=0.9, lam=0.8)
    # delta1 = 2 - 1.0 = 1.0
    torch.testing.assert_close(adv, torch.tensor([1.4 + 0.72 * 1.0, 1.0, 3.3]))


def test_gae_broadcasts_envs_and_objectives():
    r = torch.stack([R, 2 * R], dim=-1).unsqueeze(1).expand(3, 4, 2)  # [T, N, K]
    v, nv = (x.view(3, 1, 1).expand(3, 4, 2) for x in (V, NV))
    adv, _ = gae(r, v, nv, torch.zeros(3, 4), torch.zeros(3, 4), gamma=0.9, lam=0.8)
    assert adv.shape == (3, 4, 2)
    torch.testing.assert_close(adv[:, 2, 0], torch.tensor([4.80272, 4.726, 3.3]))


def test_lambda_returns_hand_computed():
    g = lambda_returns(R, NV, Z, Z, gamma=0.9, lam=0.8)
    # G2 = 3 + .9*2 = 4.8; G1 = 2 + .9(.2*1.5 + .8*4.8) = 5.726; G0 = 1 + .9(.2*1 + .8*5.726) = 5.30272
    torch.testing.assert_close(g, torch.tensor([5.30272, 5.726, 4.8]))


def test_lambda_returns_limits():
    torch.testing.assert_close(lambda_returns(R, NV, Z, Z, gamma=0.9, lam=0.0), R + 0.9 * NV)
    # lam = 1: Monte-Carlo returns bootstrapped at the horizon
    torch.testing.assert_close(lambda_returns(R, NV, Z, Z, gamma=0.9, lam=1.0),
                               torch.tensor([1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 2, 2 + 0.9 * 3 + 0.81 * 2, 3 + 0.9 * 2]))


def test_lambda_returns_truncation_and_termination():
    done = torch.tensor([1.0, 0.0, 0.0])
    g_trunc = lambda_returns(R, NV, Z, done, gamma=0.9, lam=0.8)
    assert g_trunc[0].item() == pytest.approx(1 + 0.9 * 1.0)  # bootstraps from V(final obs) only
    g_term = lambda_returns(R, NV, done, done, gamma=0.9, lam=0.8)
    assert g_term[0].item() == pytest.approx(1.0)


def test_nstep_full_window():
    g, disc, last, term = nstep_returns(torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(1, 3), torch.zeros(1, 3), gamma=0.5)
    assert (g.item(), disc.item(), last.item(), term.item()) == (2.75, 0.125, 2, 0.0)


def test_nstep_stops_at_termination_and_truncation():
    r = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    term = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    done = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    g, disc, last, t = nstep_returns(r, term, done, gamma=0.5)
    torch.testing.assert_close(g, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(disc, torch.tensor([0.25, 0.5]))
    assert last.tolist() == [1, 0]
    assert t.tolist() == [1.0, 0.0]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=12), st.floats(0.0, 0.99))
def test_gae_with_lambda_one_is_discounted_return_minus_value(rewards, gamma):
    r = torch.tensor(rewards, dtype=torch.float64)
    t = len(rewards)
    v = torch.zeros(t, dtype=torch.float64)
    term = torch.zeros(t, dtype=torch.float64)
    term[-1] = 1.0
    adv, _ = gae(r, v, v, term, term, gamma=gamma, lam=1.0)
    expected = sum(gamma**i * x for i, x in enumerate(rewards))
    assert adv[0].item() == pytest.approx(expected, abs=1e-9)
