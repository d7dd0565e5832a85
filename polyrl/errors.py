"""Exceptions with one-line messages that name the problem and the fix."""

from __future__ import annotations


class PolyrlError(Exception):
    """Base class for user-facing errors; the CLI prints ``error: <message>`` and exits with 2."""


class UnknownEnvError(PolyrlError):
    """The environment id is not registered with Gymnasium."""


class UnknownAlgorithmError(PolyrlError):
    """The algorithm name is not registered with polyrl."""


class UnsupportedSpaceError(PolyrlError):
    """The algorithm cannot handle the environment's action or observation space."""


class ConfigError(PolyrlError):
    """An unknown config field or a value of the wrong type."""


class CheckpointError(PolyrlError):
    """A run directory or checkpoint is missing, incomplete or corrupt."""


class DivergenceError(PolyrlError):
    """Training produced non-finite values; the last good checkpoint is kept."""


class DatasetError(PolyrlError):
    """A dataset is missing, corrupt, or does not match the environment."""
