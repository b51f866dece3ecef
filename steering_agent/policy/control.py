"""Control commands and the speed controller (numpy only: no torch).

Longitudinal control comes from `SpeedController` (the networks predict steering only):

    v_ref    = v_target * max(min_fraction, 1 - turn_slowdown * |steer|)
    e        = v_ref - v
    I        = clip(I + e * dt, -i_limit, i_limit)
    u        = kp * e + ki * I
    throttle = clip(u, 0, 1);  brake = clip(-brake_gain * u, 0, 1)

Without a speed measurement the controller holds `cruise_throttle` and no brake.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_TARGET_SPEED_MPS = 8.0
SAFE_ACTION = np.array([0.0, 0.0, 1.0], dtype=np.float32)  # steer straight, full brake


@dataclass(frozen=True)
class Control:
    """One control command (CARLA meaning): steer [-1, 1], throttle and brake [0, 1]."""

    steer: float
    throttle: float
    brake: float


class SpeedController:
    """PI speed controller with a slow-down in sharp steering (formula in the module doc).

    Vectorised over `batch` streams; each keeps its own integrator.
    """

    def __init__(
        self,
        target_speed_mps: float = DEFAULT_TARGET_SPEED_MPS,
        batch: int = 1,
        kp: float = 0.35,
        ki: float = 0.08,
        i_limit: float = 5.0,
        turn_slowdown: float = 0.6,
        min_fraction: float = 0.4,
        brake_gain: float = 0.5,
        cruise_throttle: float = 0.35,
    ) -> None:
        if target_speed_mps < 0:
            raise ValueError(f"SpeedController: target_speed_mps ({target_speed_mps}) must be >= 0")
        self.target_speed_mps = float(target_speed_mps)
        self.kp, self.ki, self.i_limit = kp, ki, i_limit
        self.turn_slowdown, self.min_fraction = turn_slowdown, min_fraction
        self.brake_gain, self.cruise_throttle = brake_gain, cruise_throttle
        self.integral = np.zeros(batch, dtype=np.float64)

    def reset(self, indices: np.ndarray | None = None) -> None:
        if indices is None:
            self.integral[:] = 0.0
        else:
            self.integral[indices] = 0.0

    def update(
        self, steer: np.ndarray, speed: np.ndarray | None, dt: np.ndarray, rows=slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Throttle and brake for the streams `rows` (steer, speed and dt are for those).

        A speed of None or NaN (not measured yet) gives `cruise_throttle` and no brake.
        """
        if speed is None:
            speed = np.full(len(steer), np.nan)
        known = np.isfinite(speed)
        scale = np.maximum(1.0 - self.turn_slowdown * np.abs(steer), self.min_fraction)
        err = np.where(known, self.target_speed_mps * scale - speed, 0.0)
        integral = self.integral[rows] + err * dt
        np.minimum(np.maximum(integral, -self.i_limit, out=integral), self.i_limit, out=integral)
        self.integral[rows] = integral
        u = np.where(known, self.kp * err + self.ki * integral, self.cruise_throttle)
        throttle = np.minimum(np.maximum(u, 0.0), 1.0)
        brake = np.minimum(np.maximum(u * -self.brake_gain, 0.0), 1.0)
        return throttle, brake

    def update_one(
        self, steer: float, speed: float | None, dt: float, row: int = 0
    ) -> tuple[float, float]:
        """`update` for one stream with Python floats (the single-camera per-frame path)."""
        if speed is None or not math.isfinite(speed):
            integral = min(max(float(self.integral[row]), -self.i_limit), self.i_limit)
            self.integral[row] = integral
            return min(max(self.cruise_throttle, 0.0), 1.0), 0.0
        scale = max(1.0 - self.turn_slowdown * abs(steer), self.min_fraction)
        err = self.target_speed_mps * scale - speed
        integral = float(self.integral[row]) + err * dt
        integral = min(max(integral, -self.i_limit), self.i_limit)
        self.integral[row] = integral
        u = self.kp * err + self.ki * integral
        return min(max(u, 0.0), 1.0), min(max(u * -self.brake_gain, 0.0), 1.0)


@dataclass(frozen=True)
class VehicleSpec:
    """What turns a steering command into a path: the wheelbase and the road-wheel angle
    of steer = 1. Default: the embedded simulator's car (CARLA's Tesla Model 3 class:
    2.9 m, 70 degrees, CARLA's default max_steer_angle)."""

    wheelbase_m: float = 2.9
    max_steer_deg: float = 70.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.wheelbase_m <= 10.0:
            raise ValueError(f"vehicle wheelbase_m={self.wheelbase_m} must be within 0.5..10 m")
        if not 1.0 <= self.max_steer_deg <= 89.0:
            raise ValueError(f"vehicle max_steer_deg={self.max_steer_deg} must be within 1..89")

    @classmethod
    def from_dict(cls, d: dict) -> VehicleSpec:
        return cls(float(d.get("wheelbase_m", 2.9)), float(d.get("max_steer_deg", 70.0)))

    def to_dict(self) -> dict:
        return {"wheelbase_m": self.wheelbase_m, "max_steer_deg": self.max_steer_deg}

    def curvature(self, steer: float) -> float:
        """Path curvature (1/m, + = right, as CARLA's steer) of a steering command."""
        return math.tan(steer * math.radians(self.max_steer_deg)) / self.wheelbase_m

    def steer_for(self, curvature: float) -> float:
        """The command, clipped to [-1, 1], that drives a path of `curvature` (1/m)."""
        angle = math.atan(curvature * self.wheelbase_m)
        return min(max(angle / math.radians(self.max_steer_deg), -1.0), 1.0)


def convert_steer(steer: float, source: VehicleSpec, target: VehicleSpec) -> float:
    """A command of `source` turned into the command that drives the same path on `target`
    (the same curvature; kinematic bicycle)."""
    if source == target:
        return steer
    return target.steer_for(source.curvature(steer))
