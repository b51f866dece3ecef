"""The expert driver: privileged access to the lane centre line.

Steering is Stanley-like at the car's reference point (heading error of the direction of
travel plus a bounded cross-track term; at the reference point, not the front axle, so
curves leave no offset) on top of a curvature feed-forward that looks ahead by the
actuator's lag. Speed follows a cruise target that slows so lateral acceleration in the
curves ahead stays under `max_lateral_accel`.
"""

from __future__ import annotations

import math

import numpy as np

from sim.road import LaneRoad
from sim.vehicle import BicycleModel, VehicleParams, VehicleState


class ExpertDriver:
    """Drives a `LaneRoad` well; `act(state)` gives the clean action, `perturb` a noisy one.

    Args:
        road: the road to follow.
        target_speed_mps: cruise speed on straights.
        max_lateral_accel: comfort limit that sets curve speeds (m/s^2).
        noise_sigma: standard deviation of the steering noise `perturb` adds (0 = none);
            the noise is an Ornstein-Uhlenbeck process (correlated over `noise_tau_s`), so
            the car drifts off and the clean label shows how to recover.
        noise_seed: seed of that noise.
        params: the vehicle's parameters (wheelbase, maximum wheel angle).
    """

    def __init__(
        self,
        road: LaneRoad,
        target_speed_mps: float = 10.0,
        max_lateral_accel: float = 2.5,
        noise_sigma: float = 0.0,
        noise_seed: int = 0,
        noise_tau_s: float = 0.6,
        params: VehicleParams | None = None,
        gain: float = 2.5,
    ) -> None:
        if not 0.0 < target_speed_mps <= 30.0:
            raise ValueError(f"target_speed_mps must be within (0, 30], got {target_speed_mps}")
        if not noise_sigma >= 0.0:
            raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma}")
        self.road = road
        self.target_speed_mps = float(target_speed_mps)
        self.max_lateral_accel = float(max_lateral_accel)
        self.params = params or VehicleParams()
        self.gain = float(gain)
        self.noise_sigma = float(noise_sigma)
        self._noise_decay = math.exp(-BicycleModel.dt / noise_tau_s)
        self._noise_rng = np.random.default_rng(noise_seed)
        self._noise = 0.0
        self._hint: float | None = None

    def reset(self) -> None:
        """Forget the last position (call after the car was moved) and the noise state."""
        self._hint = None
        self._noise = 0.0

    def _wheel_angle_for(self, curvature: float) -> float:
        """Steady-state wheel angle that makes the reference point follow `curvature`."""
        p = self.params
        sin_beta = max(-0.99, min(0.99, p.rear_to_ref_m * curvature))
        return math.atan(p.wheelbase_m / p.rear_to_ref_m * math.tan(math.asin(sin_beta)))

    def act(
        self, state: VehicleState, located: tuple[float, float, float] | None = None
    ) -> np.ndarray:
        """Clean action (steer, throttle, brake) as float32 for this state.

        Args:
            state: the car's state.
            located: `road.locate(state.x, state.y)` if the caller has it already.
        """
        p, road, v = self.params, self.road, state.speed
        if located is None:
            located = road.locate(state.x, state.y, self._hint)
        s, lateral, heading = located
        self._hint = s
        beta = math.atan(p.rear_to_ref_m / p.wheelbase_m * math.tan(state.wheel_angle))
        heading_err = math.remainder(state.yaw + beta - heading, math.tau)
        preview = s + v * (p.steer_lag_s + BicycleModel.dt)
        delta = (
            self._wheel_angle_for(road.curvature_at(preview))
            - heading_err
            - math.atan(self.gain * lateral / (1.0 + v))
        )
        steer = min(max(-delta / p.max_wheel_angle_rad, -1.0), 1.0)
        throttle, brake = self._speed_control(s, v)
        return np.array((steer, throttle, brake), dtype=np.float32)

    def _speed_control(self, s: float, v: float) -> tuple[float, float]:
        p = self.params
        horizon = s + 10.0 + v * v / 3.0  # about the distance to slow at 1.5 m/s^2
        kappa = road_k = self.road.max_abs_curvature(s, horizon)
        v_target = self.target_speed_mps
        if road_k > 1e-6:
            v_target = min(v_target, math.sqrt(self.max_lateral_accel / kappa))
        accel = 1.5 * (v_target - v)
        if accel < -0.3:
            return 0.0, min(-accel / p.max_brake_mps2, 1.0)
        resist = p.drag_per_m * v * v + p.rolling_mps2
        drive = p.max_accel_mps2 * max(1.0 - v / p.max_speed_mps, 0.1)
        return min(max((accel + resist) / drive, 0.0), 1.0), 0.0

    def perturb(self, action: np.ndarray) -> np.ndarray:
        """`action` with this driver's correlated steering noise added (clipped to range)."""
        if self.noise_sigma == 0.0:
            return np.asarray(action, dtype=np.float32).copy()
        a = self._noise_decay
        self._noise = (
            a * self._noise
            + self.noise_sigma * math.sqrt(1.0 - a * a) * self._noise_rng.standard_normal()
        )
        out = np.asarray(action, dtype=np.float32).copy()
        out[0] = min(max(out[0] + self._noise, -1.0), 1.0)
        return out
