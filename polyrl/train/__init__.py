"""Trainers, data sources, logging, checkpoints and evaluation."""

from polyrl.train.evaluate import EvalResult, run_episodes
from polyrl.train.trainer import Trainer, TrainSettings

__all__ = ["EvalResult", "TrainSettings", "Trainer", "run_episodes"]
