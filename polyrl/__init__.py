"""polyrl: policy optimisation in every RL regime behind one API.

>>> import polyrl
>>> agent = polyrl.make("sac", env="Pendulum-v1", seed=0)      # doctest: +SKIP
>>> agent.learn(10_000).evaluate(episodes=5).mean_return        # doctest: +SKIP
"""

from polyrl import _aliases  # noqa: F401  (earlier releases' import paths)
from polyrl._version import __version__
from polyrl.agent import Agent, load, make
from polyrl.algos import names as algorithms
from polyrl.train import EvalResult, TrainSettings

__all__ = ["Agent", "EvalResult", "TrainSettings", "__version__", "algorithms", "load", "make"]
