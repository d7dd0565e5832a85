"""Small pixel-observation tasks rendered with numpy alone (for world-model tests and benchmarks).

* ``polyrl/PixelPendulum-v0``: Pendulum-v1 seen as a ``[size, size, 1]`` uint8
  image of the rod (Box actions). One frame shows the angle but not the
  angular velocity, so the agent must infer it from history.
* ``polyrl/PixelCartPole-v0``: CartPole-v1 as an image of the cart and the
  pole (Discrete actions).

Dynamics, rewards and time limits are those of the underlying Gymnasium
task; only the observation changes. ``size`` (default 32) is a keyword of
``gymnasium.make`` (``polyrl.make(..., env_kwargs={"size": 64})``).
"""

from __future__ import annotations

import abc
from typing import Any

import gymnasium as gym
import numpy as np


def _segment(grid_x: np.ndarray, grid_y: np.ndarray, x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
    """A boolean image of the pixels within ``width`` of the segment ``(x0, y0) -> (x1, y1)``."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((grid_x - x0) * dx + (grid_y - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
    return (grid_x - x0 - t * dx) ** 2 + (grid_y - y0 - t * dy) ** 2 <= width * width


class PixelObservation(gym.ObservationWrapper, abc.ABC):
    """Replace a classic-control task's state vector by a uint8 image drawn from it."""

    def __init__(self, env: gym.Env, size: int = 32) -> None:
        super().__init__(env)
        if size < 8:
            raise ValueError(f"image size must be >= 8 pixels, got {size}")
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 1), np.uint8)
        coords = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # pixel centres in [-1, 1]
        self.gx, self.gy = np.meshgrid(coords, -coords)  # y points up

    @abc.abstractmethod
    def draw(self, state: np.ndarray) -> np.ndarray:
        """The task's state drawn as a ``[size, size]`` float image in ``[0, 1]`` (each task draws its own)."""

    def observation(self, observation: Any) -> np.ndarray:
        return (self.draw(np.asarray(self.env.unwrapped.state, dtype=np.float64)) * 255).astype(np.uint8)[..., None]


class PixelPendulum(PixelObservation):
    """Pendulum-v1 with an image of the rod (angle 0 = upright)."""

    def __init__(self, size: int = 32) -> None:
        super().__init__(gym.make("Pendulum-v1"), size)

    def draw(self, state: np.ndarray) -> np.ndarray:
        theta = state[0]
        tip = 0.8 * np.sin(theta), 0.8 * np.cos(theta)
        img = _segment(self.gx, self.gy, 0.0, 0.0, tip[0], tip[1], 2.0 / self.size + 0.04).astype(np.float32)
        img[_segment(self.gx, self.gy, 0.0, 0.0, 0.0, 0.0, 0.1)] = 0.5  # the pivot
        return img


class PixelCartPole(PixelObservation):
    """CartPole-v1 with an image of the cart and the pole."""

    def __init__(self, size: int = 32) -> None:
        super().__init__(gym.make("CartPole-v1"), size)

    def draw(self, state: np.ndarray) -> np.ndarray:
        x, theta = state[0] / 2.4 * 0.8, state[2]
        img = ((np.abs(self.gx - x) <= 0.15) & (np.abs(self.gy + 0.5) <= 0.07)).astype(np.float32) * 0.5
        top = x + 1.0 * np.sin(theta), -0.5 + 1.0 * np.cos(theta)
        img[_segment(self.gx, self.gy, x, -0.5, top[0], top[1], 2.0 / self.size + 0.02)] = 1.0
        return img


for _id, _cls in (("polyrl/PixelPendulum-v0", PixelPendulum), ("polyrl/PixelCartPole-v0", PixelCartPole)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls)
