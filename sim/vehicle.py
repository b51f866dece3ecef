"""Kinematic bicycle model with a steering actuator and simple longitudinal dynamics.

Controls have CARLA's `VehicleControl` meaning: steer in [-1, 1] (+ = right, scaled by
the maximum wheel angle), throttle and brake in [0, 1]. Out-of-range values are clipped;
NaN raises `ValueError`. The step is fixed at 0.05 s (CARLA ROS bridge default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.limits import VEHICLE_LIMITS, check_range


@dataclass
class VehicleState:
    """Pose of the car's reference point (centre), speed and actual front wheel angle."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0  # rad, counter-clockwise from the world x axis
    speed: float = 0.0  # m/s, never negative (no reverse)
    wheel_angle: float = 0.0  # rad, + = left (math sense; CARLA steer + = right)


@dataclass(frozen=True)
class VehicleParams:
    """Defaults: a mid-size car like CARLA's Tesla Model 3; 70 deg is CARLA's default
    max_steer_angle. The actuator follows the command with a first-order lag and a
    rate limit, like a power-steering motor."""

    wheelbase_m: float = 2.9
    rear_to_ref_m: float = 1.45  # reference point midway between the axles
    max_wheel_angle_rad: float = math.radians(70.0)
    wheel_rate_rad_s: float = math.radians(120.0)
    steer_lag_s: float = 0.08
    max_accel_mps2: float = 4.0
    max_speed_mps: float = 40.0
    max_brake_mps2: float = 8.0
    drag_per_m: float = 0.0004  # aerodynamic deceleration = drag * v^2
    rolling_mps2: float = 0.1

    @classmethod
    def of(cls, wheelbase_m: float = 2.9, max_steer_deg: float = 70.0) -> VehicleParams:
        """A car with this wheelbase (reference point midway between the axles) and this
        front wheel angle at full lock (steer = +-1); the rest as the defaults. Out-of-range
        values raise ValueError naming the keyword and `VEHICLE_LIMITS`' range."""
        wheelbase_m = check_range("wheelbase_m", wheelbase_m, *VEHICLE_LIMITS["wheelbase_m"])
        max_steer_deg = check_range(
            "max_steer_deg", max_steer_deg, *VEHICLE_LIMITS["max_steer_deg"]
        )
        return cls(
            wheelbase_m=wheelbase_m,
            rear_to_ref_m=0.5 * wheelbase_m,
            max_wheel_angle_rad=math.radians(max_steer_deg),
        )

    @property
    def max_steer_deg(self) -> float:
        """The front wheel angle at steer = +-1, degrees."""
        return math.degrees(self.max_wheel_angle_rad)


def _unit(value: float, lo: float, name: str) -> float:
    if value != value:  # NaN
        raise ValueError(f"control {name} is NaN; send a number in [{lo:g}, 1]")
    return min(max(value, lo), 1.0)


class BicycleModel:
    """Fixed-step (dt = 0.05 s) kinematic bicycle; `step` advances the state in place."""

    dt = 0.05

    def __init__(self, params: VehicleParams | None = None, state: VehicleState | None = None):
        self.params = params or VehicleParams()
        self.state = state or VehicleState()

    def step(self, steer: float, throttle: float, brake: float) -> VehicleState:
        """Apply one control for one step (values clipped to range, NaN raises)."""
        p, st, dt = self.params, self.state, self.dt
        steer = _unit(float(steer), -1.0, "steer")
        throttle = _unit(float(throttle), 0.0, "throttle")
        brake = _unit(float(brake), 0.0, "brake")
        target = -steer * p.max_wheel_angle_rad
        rate = (target - st.wheel_angle) / max(p.steer_lag_s, dt)
        max_rate = p.wheel_rate_rad_s
        rate = min(max(rate, -max_rate), max_rate)
        delta = st.wheel_angle + rate * dt
        v = st.speed
        accel = throttle * p.max_accel_mps2 * (1.0 - v / p.max_speed_mps) - brake * p.max_brake_mps2
        if v > 0.0:
            accel -= p.drag_per_m * v * v + p.rolling_mps2
        v_new = max(v + accel * dt, 0.0)
        v_mid = 0.5 * (v + v_new)
        beta = math.atan(p.rear_to_ref_m / p.wheelbase_m * math.tan(0.5 * (delta + st.wheel_angle)))
        yaw_rate = v_mid * math.sin(beta) / p.rear_to_ref_m
        yaw_mid = st.yaw + 0.5 * yaw_rate * dt
        st.x += v_mid * math.cos(yaw_mid + beta) * dt
        st.y += v_mid * math.sin(yaw_mid + beta) * dt
        st.yaw = math.remainder(st.yaw + yaw_rate * dt, math.tau)
        st.speed, st.wheel_angle = v_new, delta
        return st
