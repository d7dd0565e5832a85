"""Multi-objective RL leaves: metrics of a set of return vectors, the Pareto archive, front plots.

``polyrl.morl.metrics`` holds pure numpy functions (hypervolume, expected
utility, sparsity, crowding distance, non-dominated filtering);
``ParetoArchive`` keeps the non-dominated policies found by a multi-objective
algorithm such as C-MORL; ``plot_front`` draws a front to a PNG. Every
objective is maximised.
"""

from polyrl.morl.archive import ParetoArchive
from polyrl.morl.metrics import (
    crowding_distance,
    dominates,
    expected_utility,
    hypervolume,
    non_dominated,
    simplex_grid,
    sparsity,
)
from polyrl.morl.plots import plot_front

__all__ = [
    "ParetoArchive",
    "crowding_distance",
    "dominates",
    "expected_utility",
    "hypervolume",
    "non_dominated",
    "plot_front",
    "simplex_grid",
    "sparsity",
]
