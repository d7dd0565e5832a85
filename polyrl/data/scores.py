"""Reference returns and normalised scores: ``score = 100 (R - R_random) / (R_expert - R_random)``.

polyrl cannot download D4RL, so its datasets are its own (made on the v5
MuJoCo tasks). Two sets of references exist and every score says which it
used: D4RL's published constants (below, for hopper / halfcheetah / walker2d
/ ant, measured by D4RL on the v2 tasks with its own random and expert
policies) and, once measured, polyrl's own (a random policy and the best
expert polyrl trains, stored with provenance).
"""

from __future__ import annotations

from dataclasses import dataclass

D4RL_REFERENCE: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}
"""``family -> (R_random, R_expert)`` as published with D4RL (Fu et al. 2020)."""


@dataclass(frozen=True)
class Reference:
    """Returns that define a normalised score, and where they come from."""

    random: float
    expert: float
    source: str

    def score(self, ret: float) -> float:
        """``100 (ret - random) / (expert - random)``."""
        return 100.0 * (ret - self.random) / (self.expert - self.random)


def family(env_id: str) -> str:
    """``"Hopper-v5" -> "hopper"`` (the lower-cased name without version or namespace)."""
    return env_id.split("/")[-1].split(":")[-1].split("-v")[0].lower()


def reference(env_id: str) -> Reference | None:
    """D4RL's reference returns for the env's family, or ``None`` when it has none."""
    ref = D4RL_REFERENCE.get(family(env_id))
    return Reference(ref[0], ref[1], "d4rl") if ref else None
