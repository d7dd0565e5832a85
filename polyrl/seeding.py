"""Every random stream of a run, derived from the run seed ``s`` in this one place.

================  ==============================================================  ==============================
stream            what it drives                                                  seed
================  ==============================================================  ==============================
``init``          network initialisation (``Agent``)                              ``s``
``train_envs``    the first reset of the training envs                            ``s``
``sampling``      the data source's draws: replay, dataset and window sampling,   ``s``
                  random warm-up actions
``trainer``       the torch RNG stream the training loop runs on (action          ``s + 1``
                  sampling, exploration and target noise)
``model_rollout`` a model source's rollout starts and model sampling               ``s + 7919``
``model_fit``     a model source's holdout splits and bootstraps                  ``s + 104_729``
``eval``          the reported evaluations (``eval/return``, ``polyrl eval``)     ``s + 10_000``
``final_eval``    the pipeline's final evaluation; reference measurement          ``s + 20_000``
``algo_eval``     evaluations an algorithm asks for while it learns (C-MORL's     ``s + 30_000``
                  archive, Uni-O4's selection)
``snapshot_eval`` scoring a recipe's SAC snapshots                                ``s + 777``
``recipe_random`` / ``recipe_expert`` / ``recipe_medium``: a recipe's rollouts    ``s + 1`` / ``s + 2`` / ``s + 3``
================  ==============================================================  ==============================

After a checkpoint at step ``t`` the training envs are reset with :func:`checkpoint_reset` (so a resumed run
continues bit-identically). Streams of one run are distinct, and evaluation envs are seeded apart from training.

Known weakness, kept on purpose: these are offsets, so streams of *different* runs can coincide (the
``trainer`` stream of seed 0 is the ``sampling`` stream of seed 1). Every recorded benchmark result depends on
them, so replacing them by independent child streams (``numpy.random.SeedSequence(s).spawn``) is a change of
results, to be made once, with the benchmarks re-recorded (issue 23's note says where it stands). The same holds
for Uni-O4, whose gate draws its start states and its dynamics fit from a generator seeded with the update count
(``polyrl.algos.unio4``), so those draws are the same for every run seed.
"""

from __future__ import annotations

OFFSETS: dict[str, int] = {
    "init": 0, "train_envs": 0, "sampling": 0, "trainer": 1, "model_rollout": 7919, "model_fit": 104_729,
    "eval": 10_000, "final_eval": 20_000, "algo_eval": 30_000, "snapshot_eval": 777,
    "recipe_random": 1, "recipe_expert": 2, "recipe_medium": 3,
}


def stream(seed: int, name: str) -> int:
    """The seed of stream ``name`` (see the module docstring) of a run seeded ``seed``."""
    try:
        return int(seed) + OFFSETS[name]
    except KeyError:
        raise KeyError(f"no seed stream {name!r}; streams: {', '.join(OFFSETS)}") from None


def checkpoint_reset(seed: int, step: int) -> int:
    """The training envs' reset seed after a checkpoint at ``step`` (the same for an uninterrupted and a resumed run)."""
    return (int(seed) * 1_000_003 + int(step)) % (2**31 - 1)
