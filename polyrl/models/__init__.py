"""Learned models shared by model-based RL, off-policy evaluation and Uni-O4."""

from polyrl.models.dynamics import DynamicsConfig, DynamicsEnsemble, fit_dynamics

__all__ = ["DynamicsConfig", "DynamicsEnsemble", "fit_dynamics"]
