"""Network building blocks shared by every algorithm."""

from polyrl.nets.distributions import Categorical, Gaussian, TanhGaussian
from polyrl.nets.mlp import EnsembleLinear, EnsembleMLP, activation, frozen, mlp

__all__ = ["Categorical", "EnsembleLinear", "EnsembleMLP", "Gaussian", "TanhGaussian", "activation", "frozen", "mlp"]
