"""Multi-objective RL: vector-reward envs, C-MORL's pieces, and a short C-MORL run on Deep Sea Treasure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import polyrl
from polyrl.algos.cmorl import stage1_preferences
from polyrl.cli import main
from polyrl.errors import ConfigError, UnsupportedSpaceError
from polyrl.losses import log_barrier

pytest.importorskip("mo_gymnasium")
DST = "deep-sea-treasure-concave-v0"
QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "eval_episodes": 1}


def test_vector_reward_env_gives_per_objective_rewards_and_returns():
    env = polyrl.envs.make(DST, n_envs=2, seed=0)
    assert env.spec.reward_dim == 2 and env.spec.reward_shape == (2,)
    env.reset()
    res = env.step(np.array([1, 1]))  # down from the start: the first treasure (1) after one step
    np.testing.assert_allclose(res.reward, [[1.0, -1.0], [1.0, -1.0]])
    assert res.terminated.all()
    (ret, length), _ = env.drain_episodes()
    np.testing.assert_allclose(ret, [1.0, -1.0])
    assert length == 1
    assert polyrl.envs.make("CartPole-v1").spec.reward_dim == 0


def test_scalar_algorithms_refuse_vector_rewards_and_cmorl_refuses_scalar_ones():
    with pytest.raises(UnsupportedSpaceError, match="2 objectives.*cmorl"):
        polyrl.make("ppo", env=DST)
    with pytest.raises(UnsupportedSpaceError, match="multi-objective"):
        polyrl.make("cmorl", env="CartPole-v1")
    with pytest.raises(ConfigError, match="ref_point has 3 values"):
        polyrl.make("cmorl", env=DST, ref_point=(0.0, 0.0, 0.0))


def test_stage1_preferences_cover_the_simplex():
    np.testing.assert_allclose(stage1_preferences(2, 6), [[0, 1], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4], [0.8, 0.2], [1, 0]], atol=1e-12)
    w = stage1_preferences(3, 6)
    assert w.shape == (6, 3) and np.allclose(w.sum(1), 1.0) and len({tuple(r) for r in w}) == 6
    for corner in np.eye(3):  # every single-objective extreme is trained
        assert any(np.allclose(r, corner) for r in w)


def test_log_barrier_keeps_a_constraint_satisfied_while_the_objective_improves():
    # Toy problem: maximise G0 = theta subject to G1 = -theta^2 >= -1 (i.e. theta <= 1), from theta = 0.
    def run(barrier: bool) -> float:
        theta = torch.zeros((), requires_grad=True)
        opt = torch.optim.SGD([theta], lr=0.01)
        for _ in range(600):
            loss = -theta + (log_barrier(-theta ** 2, -1.0, t=20.0) if barrier else 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(theta)

    constrained = run(barrier=True)
    assert 0.9 < constrained < 1.0  # near the boundary, inside: G1 = -theta^2 stays above its threshold -1
    assert run(barrier=False) > 1.5  # without the barrier the objective alone breaks the constraint
    # the barrier's value and gradient by hand: -(1/t) log(g - b), d/dg = -1 / (t (g - b))
    g = torch.tensor(0.5, requires_grad=True)
    b = log_barrier(g, 0.25, t=2.0)
    b.backward()
    assert float(b) == pytest.approx(-np.log(0.25) / 2.0)
    assert float(g.grad) == pytest.approx(-1.0 / (2.0 * 0.25))
    assert float(log_barrier(torch.tensor(0.1), 0.25, t=2.0)) == pytest.approx(-np.log(1e-3) / 2.0)  # clamped below


def test_archive_keeps_non_dominated_points_above_the_reference_and_prunes_by_crowding():
    agent = polyrl.make("cmorl", env=DST, population=2, n_envs=1, n_steps=16, n_minibatches=2, archive_size=3, hidden=(8,))
    algo = agent.algo
    offer = [([1.0, -1.0], True), ([0.5, -2.0], False),  # dominated
             ([1.0, -1.0], False),  # a duplicate
             ([-1.0, -1.0], False),  # below the reference point (0, -25)
             ([2.0, -3.0], True), ([5.0, -5.0], True),
             ([3.0, -3.0], True)]  # dominates (2, -3), which leaves
    for value, kept in offer:
        assert algo._insert(0, torch.tensor(value)) is kept, value
    front = algo.front()
    assert sorted(map(tuple, front["values"])) == [(1.0, -1.0), (3.0, -3.0), (5.0, -5.0)]
    # Full (capacity 3). Offering (4, -4): ranges 4 and 4; crowding (3,-3) = 3/4 + 3/4 = 1.5,
    # (4,-4) = 2/4 + 2/4 = 1.0, the ends are infinite -> the newcomer is the most crowded: rejected.
    assert algo._insert(0, torch.tensor([4.0, -4.0])) is False
    # Offering (6, -8): ranges 5 and 7; (3,-3) = 4/5 + 4/7 = 1.371, (5,-5) = 3/5 + 5/7 = 1.314 -> (5,-5) leaves.
    assert algo._insert(1, torch.tensor([6.0, -8.0])) is True
    assert sorted(map(tuple, algo.front()["values"])) == [(1.0, -1.0), (3.0, -3.0), (6.0, -8.0)]
    assert front["hypervolume"] == pytest.approx(1 * 24 + 2 * 22 + 2 * 20)  # boxes down to (0, -25)


def _supported(points: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Which of ``points`` maximise ``w . G`` over ``front`` for some weight ``w`` (reachable by linear scalarisation)."""
    w = np.linspace(0.0, 1.0, 2001)
    weights = np.stack([w, 1.0 - w], axis=1)
    best = (weights @ front.T).max(axis=1)
    return np.array([bool(np.any(weights @ p >= best - 1e-9)) for p in points])


def test_cmorl_finds_concave_pareto_points_that_stage_one_misses(tmp_path):
    """Deep Sea Treasure (concave): constrained extension reaches Pareto points that scalarised training does not."""
    import mo_gymnasium.envs.deep_sea_treasure.deep_sea_treasure as dst

    agent = polyrl.make("cmorl", env=DST, seed=0, run_dir=tmp_path / "run", population=4, n_envs=2, n_steps=128,
                        n_minibatches=4, archive_every=2, archive_episodes=1)
    agent.learn(60_000, **QUIET)
    gamma = agent.cfg.eval_gamma
    # the true front, discounted as the archive's evaluations are: treasure after n steps, and -sum_{i<n} gamma^i
    true = np.array([[t * gamma ** (-time - 1), -(1 - gamma ** -time) / (1 - gamma)] for t, time in dst.CONCAVE_FRONT])
    concave = true[~_supported(true, true)]
    assert len(concave) >= 3
    front = json.loads((agent.run_dir / "pareto.json").read_text())
    values, stages = np.asarray(front["values"]), np.asarray(front["stages"])

    def found(points: np.ndarray) -> set[int]:
        return {i for i, c in enumerate(concave) if len(points) and np.abs(points - c).max(axis=1).min() < 1e-3}

    from_stage2 = found(values[stages == 2]) - found(values[stages == 1])
    assert from_stage2, f"stage 2 found no concave point beyond stage 1's; archive: {front['values']}"
    assert (agent.run_dir / "pareto.png").stat().st_size > 1000


def test_eval_serves_the_archive_policy_for_a_preference(tmp_path, capsys):
    agent = polyrl.make("cmorl", env=DST, seed=1, run_dir=tmp_path / "run", population=2, n_envs=2, n_steps=32,
                        n_minibatches=2, archive_every=1, archive_episodes=1, hidden=(16, 16))
    agent.learn(2_000, **QUIET)
    front = json.loads((agent.run_dir / "pareto.json").read_text())
    values = np.asarray(front["values"])
    for w in ([1.0, 0.0], [0.0, 1.0], [0.3, 0.7]):
        expected = values[np.argmax(values @ np.asarray(w))]
        res = agent.evaluate(1, preference=w)
        gamma = agent.cfg.eval_gamma  # the archive stores discounted returns; evaluate reports undiscounted ones
        steps = res.lengths[0]
        np.testing.assert_allclose(res.mean_vector[1], -steps)
        np.testing.assert_allclose(expected[1], -(1 - gamma ** steps) / (1 - gamma), rtol=1e-5)
    assert main(["eval", str(agent.run_dir), "--episodes", "1", "--preference", "0.3,0.7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["mean_vector_return"]) == 2
    with pytest.raises(ConfigError, match="2 non-negative weights"):
        agent.evaluate(1, preference=[1.0, 0.0, 0.0])
    ppo = polyrl.make("ppo", env="CartPole-v1", n_steps=16)
    with pytest.raises(ConfigError, match="scalar reward"):
        ppo.evaluate(1, preference=[1.0])


def test_archive_policies_are_the_archive_and_can_sample(tmp_path):
    cfg = dict(population=2, n_envs=1, n_steps=32, n_minibatches=2, archive_every=1, archive_episodes=1, hidden=(16, 16),
               eval_gamma=1.0)
    agent = polyrl.make("cmorl", env=DST, seed=0, run_dir=tmp_path / "det", **cfg)
    agent.learn(640, **QUIET)
    entries = agent.algo.archive_policies()
    front = json.loads((agent.run_dir / "pareto.json").read_text())
    assert [e[0] for e in entries] == sorted(front["ids"]) and len(entries) == agent.algo.archive_size() > 0
    for _, value, policy in entries:  # deterministic policies in a deterministic env reproduce their archived value
        np.testing.assert_allclose(agent.evaluate_policy(policy, 1).mean_vector, value, rtol=1e-5)

    sampled = polyrl.make("cmorl", env=DST, seed=0, run_dir=tmp_path / "sto", deterministic_eval=False, **cfg)
    obs = torch.zeros(64, *sampled.spec.obs_shape)
    policy = sampled.algo.preference_policy(np.array([0.5, 0.5]))
    assert len(torch.unique(policy(obs))) > 1  # an untrained policy's samples differ; its mode would not
    det = polyrl.make("cmorl", env=DST, seed=0, **cfg).algo.preference_policy(np.array([0.5, 0.5]))
    assert len(torch.unique(det(obs))) == 1
