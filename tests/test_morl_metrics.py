"""Multi-objective metrics, the Pareto archive and front plots against hand-computed values."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyrl.morl import (
    ParetoArchive,
    crowding_distance,
    expected_utility,
    hypervolume,
    non_dominated,
    plot_front,
    simplex_grid,
    sparsity,
)

# ----------------------------------------------------------------- helpers


def brute_force_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Count unit cells of an integer grid that some point dominates (points and ref on integers)."""
    lo = ref.astype(int)
    hi = points.max(axis=0).astype(int)
    count = 0
    for cell in itertools.product(*(range(a, b) for a, b in zip(lo, hi))):
        upper = np.asarray(cell) + 1  # the cell [c, c + 1] is covered when a point is >= its upper corner
        if np.any(np.all(points >= upper, axis=1)):
            count += 1
    return float(count)


int_points = st.integers(min_value=2, max_value=3).flatmap(
    lambda m: st.lists(
        st.lists(st.integers(min_value=-1, max_value=5), min_size=m, max_size=m), min_size=1, max_size=7
    )
)

# ----------------------------------------------------------- non-dominated


def test_non_dominated_by_hand():
    pts = np.array([[1, 2], [2, 1], [1, 1], [1, 2], [0, 3], [0, 2]])
    # (1,1) is dominated by (1,2); the second (1,2) is a duplicate (first copy kept);
    # (0,2) is dominated by (1,2) and (0,3).
    np.testing.assert_array_equal(non_dominated(pts), [True, True, False, False, True, False])


def test_non_dominated_empty():
    assert non_dominated(np.zeros((0, 3))).shape == (0,)


# ------------------------------------------------------------- hypervolume


def test_hypervolume_2d_staircase():
    # Boxes from ref (0,0): (1,3) -> x in [0,1] up to 3, (2,2) -> x in [1,2] up to 2, (3,1) -> x in [2,3] up to 1:
    # 1*3 + 1*2 + 1*1 = 6.
    pts = np.array([[1, 3], [2, 2], [3, 1]])
    assert hypervolume(pts, [0, 0]) == pytest.approx(6.0)
    # A dominated point, a duplicate and points not strictly above ref change nothing.
    more = np.vstack([pts, [[1, 1], [2, 2], [-1, 5], [4, 0]]])
    assert hypervolume(more, [0, 0]) == pytest.approx(6.0)


def test_hypervolume_2d_with_offset_reference():
    # Deep-Sea-Treasure-like: ref (0, -25); points (1, -1) and (5, -3): boxes 1*24 and 5*22, overlap 1*22.
    # 24 + 110 - 22 = 112.
    assert hypervolume([[1, -1], [5, -3]], [0, -25]) == pytest.approx(112.0)


def test_hypervolume_3d_hand_boxes():
    ref = np.zeros(3)
    # One box: 2*2*2 = 8; the point (1,1,1) inside it adds nothing.
    assert hypervolume([[2, 2, 2], [1, 1, 1]], ref) == pytest.approx(8.0)
    # (2,1,1) and (1,2,1): 2 + 2 - overlap (1,1,1) = 3.
    assert hypervolume([[2, 1, 1], [1, 2, 1]], ref) == pytest.approx(3.0)
    # (3,1,1), (1,3,1), (1,1,3): inclusion-exclusion 3*3 - 3*1 + 1 = 7.
    assert hypervolume([[3, 1, 1], [1, 3, 1], [1, 1, 3]], ref) == pytest.approx(7.0)
    # Reference point (-1, -200, -1): box of (1, -100, 2) is 2 * 100 * 3 = 600.
    assert hypervolume([[1, -100, 2]], [-1, -200, -1]) == pytest.approx(600.0)


def test_hypervolume_4d_hand_boxes():
    # (2,1,1,1) and (1,1,1,2): 2 + 2 - 1 = 3; and a single box 1*2*3*4 = 24.
    assert hypervolume([[2, 1, 1, 1], [1, 1, 1, 2]], np.zeros(4)) == pytest.approx(3.0)
    assert hypervolume([[1, 2, 3, 4]], np.zeros(4)) == pytest.approx(24.0)


def test_hypervolume_empty_and_all_below_ref():
    assert hypervolume(np.zeros((0, 2)), [0, 0]) == 0.0
    assert hypervolume([[0, 5], [5, 0]], [0, 0]) == 0.0  # on the reference lines: not strictly above


def test_hypervolume_rejects_mismatched_ref():
    with pytest.raises(ValueError, match="one value per objective"):
        hypervolume([[1, 2, 3]], [0, 0])


@settings(max_examples=60, deadline=None)
@given(int_points)
def test_hypervolume_matches_grid_cell_count(pts):
    pts = np.asarray(pts, dtype=float)
    ref = np.full(pts.shape[1], -1.0)
    assert hypervolume(pts, ref) == pytest.approx(brute_force_hv(pts, ref))


@settings(max_examples=40, deadline=None)
@given(int_points, st.lists(st.integers(min_value=-1, max_value=6), min_size=3, max_size=3))
def test_hypervolume_monotone_when_adding_a_point(pts, extra):
    pts = np.asarray(pts, dtype=float)
    new = np.asarray(extra[: pts.shape[1]], dtype=float)
    ref = np.full(pts.shape[1], -1.0)
    assert hypervolume(np.vstack([pts, new]), ref) >= hypervolume(pts, ref) - 1e-12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=1, max_size=5))
def test_hypervolume_single_point_is_product_of_gains(gains):
    ref = -np.arange(len(gains), dtype=float)
    point = ref + np.asarray(gains)
    assert hypervolume(point[None], ref) == pytest.approx(float(np.prod(gains)), rel=1e-9)


def test_hypervolume_3d_200_points_exact_and_order_free():
    # 200 points on the positive unit sphere, all non-dominated. Slicing along a different objective
    # (permuting the columns) must give the same exact value.
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(200, 3)))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    hv = hypervolume(x, np.zeros(3))
    assert hv == pytest.approx(hypervolume(x[:, [2, 0, 1]], np.zeros(3)), rel=1e-12)
    assert 0.4 < hv < np.pi / 6  # below the octant of the unit ball, which the front approximates


# ------------------------------------------------------ expected utility


def test_simplex_grid_order_and_sums():
    np.testing.assert_allclose(simplex_grid(2, 0.5), [[0, 1], [0.5, 0.5], [1, 0]])
    g = simplex_grid(3, 4)  # int = number of divisions: C(4 + 2, 2) = 15 vectors
    assert g.shape == (15, 3)
    np.testing.assert_allclose(g.sum(axis=1), 1.0)
    np.testing.assert_allclose(g[0], [0, 0, 1])
    np.testing.assert_allclose(g[-1], [1, 0, 0])
    assert simplex_grid(2, 0.05).shape == (21, 2)
    with pytest.raises(ValueError, match="does not divide 1"):
        simplex_grid(2, 0.3)


def test_expected_utility_by_hand():
    pts = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6]])
    # w = (0,1): max(0, 1, .6) = 1; w = (.5,.5): max(.5, .5, .6) = .6; w = (1,0): 1. Mean = 2.6 / 3.
    assert expected_utility(pts, step=0.5) == pytest.approx(2.6 / 3)
    # Explicit weights override the grid: w = (.25, .75) -> max(.25, .75, .6) = .75.
    assert expected_utility(pts, weights=[[0.25, 0.75]]) == pytest.approx(0.75)


def test_expected_utility_ignores_dominated_points():
    pts = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_utility(np.vstack([pts, [[0.2, 0.2]]])) == pytest.approx(expected_utility(pts))


# --------------------------------------------------------------- sparsity


def test_sparsity_by_hand():
    # Front {(0,3), (1,2), (3,0)}; (0,0) is dominated and left out.
    # Objective 1 sorted 0,1,3: 1^2 + 2^2 = 5. Objective 2 sorted 0,2,3: 2^2 + 1^2 = 5. (5 + 5) / (3 - 1) = 5.
    pts = np.array([[0, 3], [1, 2], [3, 0], [0, 0]])
    assert sparsity(pts) == pytest.approx(5.0)
    assert sparsity([[1, 1]]) == 0.0
    assert sparsity([[1, 1], [1, 1]]) == 0.0  # one point after removing the duplicate


# ------------------------------------------------------- crowding distance


def test_crowding_distance_by_hand():
    pts = np.array([[0, 4], [1, 3.5], [3, 1], [4, 0]])
    # Objective 1 (span 4): (1,3.5) -> (3-0)/4 = .75, (3,1) -> (4-1)/4 = .75.
    # Objective 2 (span 4), sorted 0, 1, 3.5, 4: (3,1) -> (3.5-0)/4 = .875, (1,3.5) -> (4-1)/4 = .75.
    np.testing.assert_allclose(crowding_distance(pts), [np.inf, 1.5, 1.625, np.inf])


def test_crowding_distance_constant_objective_contributes_zero():
    # Objective 2 is constant: no +inf boundaries from it. Objective 1: inf, (2-0)/2 = 1, inf.
    np.testing.assert_allclose(crowding_distance([[0, 5], [1, 5], [2, 5]]), [np.inf, 1.0, np.inf])
    np.testing.assert_allclose(crowding_distance([[1, 1]]), [0.0])


# ----------------------------------------------------------------- archive


def test_archive_add_rejects_and_prunes_dominated():
    a = ParetoArchive(2, ref_point=[0, -25])
    assert a.add([1, -1], "p0")
    assert not a.add([5, -25], "on ref")  # not strictly above the reference point
    assert not a.add([0.5, -2], "dominated")
    assert not a.add([1, -1], "duplicate")  # the first copy stays
    assert a.add([5, -3], "p1")
    assert a.add([2, -1], "p2")  # dominates (1, -1), which is removed
    np.testing.assert_allclose(a.values, [[5, -3], [2, -1]])
    assert a.payloads == ["p1", "p2"]
    assert a.ids == [1, 2]  # ids are stable and never reused
    assert len(a) == 2
    assert a.index_of(2) == 1
    with pytest.raises(KeyError):
        a.index_of(0)


def test_archive_cap_drops_smallest_crowding_distance():
    a = ParetoArchive(2, ref_point=[-1, -1], capacity=3)
    for v in ([0, 4], [4, 0], [1, 3]):
        assert a.add(v)
    # Four points (0,4), (4,0), (1,3), (3,1): crowding [inf, inf, 1.5, 1.5]; the tie drops the oldest, (1,3).
    assert a.add([3, 1])
    np.testing.assert_allclose(a.values, [[0, 4], [4, 0], [3, 1]])
    assert a.ids == [0, 1, 3]


def test_archive_cap_can_reject_the_new_point():
    a = ParetoArchive(2, ref_point=[-1, -1], capacity=3)
    for v in ([0, 4], [4, 0], [2, 2]):
        a.add(v)
    # (2.1, 1.85): crowding 2/4 + 2/4 = 1.0 < (2,2)'s 2.1/4 + 2.15/4 = 1.0625, so the new point goes.
    assert not a.add([2.1, 1.85])
    np.testing.assert_allclose(a.values, [[0, 4], [4, 0], [2, 2]])


def test_archive_best_for():
    a = ParetoArchive(2, ref_point=[-1, -1])
    for v in ([0, 4], [4, 0], [2, 2.5]):
        a.add(v)
    assert a.best_for([0.5, 0.5]) == 2  # 2, 2, 2.25
    assert a.best_for([1, 0]) == 1
    b = ParetoArchive(2, ref_point=[-1, -1])
    b.add([0, 4])
    b.add([4, 0])
    assert b.best_for([0.5, 0.5]) == 0  # tie -> lowest index
    with pytest.raises(ValueError, match="empty"):
        ParetoArchive(2, [0, 0]).best_for([1, 0])


def test_archive_select_sparse():
    a = ParetoArchive(2, ref_point=[-1, -1])
    for v in ([0, 4], [1, 3.5], [3, 1], [4, 0]):
        a.add(v)
    # Crowding [inf, 1.5, 1.625, inf] for ids 0..3.
    assert a.select_sparse(3) == [0, 3, 2]
    assert a.select_sparse(3, exclude={0, 3}) == [2, 1]
    assert a.select_sparse(5, exclude={0, 1, 2, 3}) == []


def test_archive_state_dict_and_json_round_trip():
    a = ParetoArchive(3, ref_point=[-1, -1, -200], capacity=10)
    for i, v in enumerate(([0, 1, -10], [1, 0, -20], [0.5, 0.5, -5], [0, 0, -300])):
        a.add(v, payload=f"ckpt-{i}")
    b = ParetoArchive(3, ref_point=[0, 0, 0])
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.values, a.values)
    assert b.payloads == a.payloads == ["ckpt-0", "ckpt-1", "ckpt-2"]
    assert b.add([2, 2, 0]) and b.ids == [3]  # the id counter was restored: 3 was never used
    text = a.to_json(metadata={"env": "minecart-v0"})
    doc = json.loads(text)
    assert doc["values"] == a.values.tolist() and doc["ref_point"] == [-1, -1, -200]
    assert doc["metadata"] == {"env": "minecart-v0"}
    c = ParetoArchive.from_json(text)
    np.testing.assert_array_equal(c.values, a.values)
    assert c.ids == a.ids and c.payloads == [None] * 3 and c.capacity == 10


# ------------------------------------------------------------------- plots


def _read_png(path):
    from matplotlib.image import imread

    return imread(path)


def test_plot_front_2d_writes_png(tmp_path):
    path = plot_front(
        [[0, -1], [3, -5], [8, -9], [1, -3]],
        tmp_path / "front.png",
        ref_point=[-1, -25],
        title="Deep Sea Treasure",
        overlays={"baseline": [[1, -1], [5, -7]]},
        objective_names=["treasure", "time"],
    )
    img = _read_png(path)
    assert img.shape[:2] == (400, 400)  # 4 in x 4 in at 100 dpi
    assert img[..., :3].std() > 0.05  # not a blank canvas
    assert (img[..., :3].min(axis=-1) < 0.5).mean() > 0.005  # a visible amount of dark ink


def test_plot_front_3d_grid_of_projections(tmp_path):
    rng = np.random.default_rng(0)
    path = plot_front(rng.random((20, 3)), tmp_path / "sub" / "front3.png", ref_point=[0, 0, 0])
    img = _read_png(path)
    assert img.shape[:2] == (400, 1200)  # three pairwise panels in one row
    assert img[..., :3].std() > 0.05


def test_plot_front_rejects_one_objective(tmp_path):
    with pytest.raises(ValueError, match="M >= 2"):
        plot_front([[1.0], [2.0]], tmp_path / "x.png")
