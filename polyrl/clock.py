"""The run's one clock: environment steps, gradient updates and the budget of the current ``learn`` call.

One :class:`Clock` lives with each agent. The trainer sets the budget when a ``learn`` call starts;
data sources advance ``env_steps`` as they step the environment; an algorithm advances ``updates``
by the optimiser steps its ``update`` took (PPO: one per minibatch). Schedules (learning-rate
annealing, exploration, Uni-O4's phase split) read it; nothing else keeps a count.

Progress towards the budget is counted in env steps while the algorithm learns online and in
gradient updates offline (:meth:`Clock.progress`). An offline algorithm's online phase starts its
env-step count at 0 (``Agent.start_online``); its update count carries on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Clock:
    """Counters of one run (saved in every checkpoint)."""

    env_steps: int = 0
    """Environment steps taken by the training envs (all copies), in the current phase."""
    updates: int = 0
    """Optimiser steps the algorithm has taken (its own unit: PPO counts minibatches)."""
    budget: int = 1
    """The current ``learn`` call's target, in progress units (set by the trainer; schedules anneal over it)."""

    def progress(self, online: bool) -> int:
        """Steps towards the budget: env steps online, gradient updates offline."""
        return self.env_steps if online else self.updates
