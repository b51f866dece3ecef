"""`SteeringAgent/Drive-v0`: the embedded simulator as a gymnasium environment.

Road seeds: `reset(seed=s)` drives road `s` (and seeds `np_random`); `reset()` without a
seed draws a training road (< `EVAL_SEED_START`) from `np_random`; `options={"road_seed":
s}` picks road `s` without reseeding. Evaluation code calls `reset(seed=eval_seed)`.
The `look` keywords choose the world (`sim.looks`): "plain" (default) is the original
two-lane road exactly; "varied" draws lanes, markings, scenery, traffic and weather.
"""

from __future__ import annotations

import math
from typing import ClassVar

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.camera import IpmCamera
from sim.contract import MAX_SPEED_OBS
from sim.expert import ExpertDriver
from sim.limits import check_limits
from sim.looks import (
    PLAIN_SPEED_MPS,
    build_world,
    collision_kind,
    lane_departure,
    resolve_look,
)
from sim.render import CameraMaps
from sim.road import LaneRoad, check_seed
from sim.seeds import EVAL_SEED_START
from sim.vehicle import BicycleModel, VehicleParams, VehicleState


class DriveEnv(gym.Env):
    """Lane keeping on procedural roads seen through a front camera.

    Args:
        width, height, fov_deg: camera image size and horizontal field of view.
        route_length_m: route length; the episode ends (terminated) at its end.
        render_mode: None or "rgb_array" (camera view with a top-down inset).
        max_steps: truncation limit; default: twice the time the route takes at
            `target_speed_mps`, plus 10 s.
        camera_height_m, camera_pitch_deg, camera_x_m, camera_y_m, camera_roll_deg,
            camera_yaw_deg: the camera mount (lens height, down tilt, position ahead of and
            left of the car's reference point, clockwise roll seen from behind, turn to
            the left); frames and signs in `sim.camera`, ranges in `sim.limits`. The
            defaults are the training camera.
        wheelbase_m, max_steer_deg: the vehicle (distance between the axles; front wheel
            angle at steer = 1). The expert drives in this vehicle's steer units.
        target_speed_mps: the expert's cruise speed; also the start speed unless
            `start_speed_mps` is given. None: 10 m/s on the plain look, the road's own
            speed (5..25 m/s, `info["speed_limit_mps"]`) on varied roads.
        camera_jitter: shake the camera mount by up to one pixel row (seeded per road).
        look: "plain" (the original world, exactly) or "varied" (layout, scenery and
            weather drawn from the road seed); see `sim.looks`.
        lanes_per_direction: None (the look's) or 1..4 lanes in the ego's direction.
        traffic, objects: None (the look's: on for varied) or a bool.
        weather: None (the look's: from the seed for varied, off for plain), False
            (off), True (from the seed) or one of "clear", "overcast", "dusk", "night",
            "fog", "rain".

    Actions are [steer, throttle, brake] with CARLA's meaning; values out of range are
    clipped, NaN raises ValueError. The episode terminates when the car's centre leaves
    the paved road or the route is done. Besides `INFO_KEYS`, `info` has `lane_index`,
    `lanes_same`, `lane_width_m`, `lane_departure`, `collision`, `collision_kind` ("none",
    "vehicle", "static"), `speed_limit_mps`.
    Keeps the env contract of `sim.contract` (`DrivingEnv`): `dt`, `camera_info()`, `camera_spec()`,
    `vehicle_spec()`, `recenter()`, `INFO_KEYS`. Out-of-range mounts and vehicles raise
    ValueError naming the keyword and its range.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 20}
    dt = BicycleModel.dt

    def __init__(
        self,
        width: int = 200,
        height: int = 66,
        fov_deg: float = 90.0,
        route_length_m: float = 1000.0,
        render_mode: str | None = None,
        max_steps: int | None = None,
        camera_height_m: float = 1.5,
        camera_pitch_deg: float = 15.0,
        camera_x_m: float = 1.0,
        target_speed_mps: float | None = None,
        start_speed_mps: float | None = None,
        camera_jitter: bool = True,
        *,
        camera_y_m: float = 0.0,
        camera_roll_deg: float = 0.0,
        camera_yaw_deg: float = 0.0,
        wheelbase_m: float = 2.9,
        max_steer_deg: float = 70.0,
        look: str = "plain",
        lanes_per_direction: int | None = None,
        traffic: bool | None = None,
        objects: bool | None = None,
        weather: str | bool | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not (isinstance(route_length_m, (int, float)) and 10 <= route_length_m <= 100_000):
            raise ValueError(f"route_length_m must be within 10..100000, got {route_length_m!r}")
        self.look = resolve_look(look, lanes_per_direction, traffic, objects, weather)
        if target_speed_mps is not None and not (
            isinstance(target_speed_mps, (int, float)) and 0.0 < target_speed_mps <= 30.0
        ):
            raise ValueError(
                f"target_speed_mps must be None or within (0, 30], got {target_speed_mps!r}"
            )
        check_limits(
            fov_deg=fov_deg,
            camera_height_m=camera_height_m,
            camera_pitch_deg=camera_pitch_deg,
            camera_roll_deg=camera_roll_deg,
            camera_yaw_deg=camera_yaw_deg,
            camera_x_m=camera_x_m,
            camera_y_m=camera_y_m,
        )
        self.vehicle_params = VehicleParams.of(wheelbase_m, max_steer_deg)
        self._vehicle_spec = {
            "wheelbase_m": float(wheelbase_m),
            "max_steer_deg": float(max_steer_deg),
        }
        self.camera = IpmCamera(
            width,
            height,
            fov_deg,
            camera_height_m,
            camera_pitch_deg,
            camera_x_m,
            mount_y_m=camera_y_m,
            roll_deg=camera_roll_deg,
            yaw_deg=camera_yaw_deg,
        )
        self._maps = CameraMaps(self.camera, 1 if camera_jitter else 0)
        self.render_mode = render_mode
        self.route_length_m = float(route_length_m)
        self._target_kw, self._start_kw = target_speed_mps, start_speed_mps
        speed = PLAIN_SPEED_MPS if target_speed_mps is None else target_speed_mps
        self.target_speed_mps = float(speed)
        self.start_speed_mps = speed if start_speed_mps is None else start_speed_mps
        self._auto_max_steps = max_steps is None
        if max_steps is None:
            max_steps = self._default_max_steps(speed)
        if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)):
            raise TypeError(f"max_steps must be an int or None, got {max_steps!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.max_steps = int(max_steps)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (self.camera.height, self.camera.width, 3), np.uint8),
                "speed": spaces.Box(0.0, MAX_SPEED_OBS, (1,), np.float32),
            }
        )
        self.action_space = spaces.Box(
            np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32), dtype=np.float32
        )
        self.road: LaneRoad | None = None
        self.scenery = self.weather = None
        self._image: np.ndarray | None = None

    def _default_max_steps(self, speed: float) -> int:
        return math.ceil((2 * self.route_length_m / speed + 10) / self.dt)

    # -- episode -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a route; see the module docstring for how the road seed is chosen."""
        if seed is not None:
            seed = check_seed(seed)
        super().reset(seed=seed)
        road_seed = (options or {}).get("road_seed")
        if road_seed is not None:
            road_seed = check_seed(road_seed, "options['road_seed']")
        elif seed is not None:
            road_seed = seed
        else:
            road_seed = int(self.np_random.integers(0, EVAL_SEED_START))
        self.road_seed = road_seed
        world = build_world(self.look, road_seed, self.route_length_m, self.camera, self._maps)
        self.road, self.renderer = world.road, world.renderer
        self.scenery, self.weather = world.scenery, world.weather
        if self._target_kw is None and self.look.varied_road:
            self.target_speed_mps = float(self.road.layout.speed_mps)
            if self._start_kw is None:
                self.start_speed_mps = self.target_speed_mps
            if self._auto_max_steps:
                self.max_steps = self._default_max_steps(self.target_speed_mps)
        self.expert = ExpertDriver(self.road, self.target_speed_mps, params=self.vehicle_params)
        x, y, yaw = self.road.pose_at(0.0)
        self.car = BicycleModel(
            self.vehicle_params, VehicleState(x, y, yaw, float(self.start_speed_mps))
        )
        self._jitter_rng = np.random.default_rng([road_seed, 0x4A4954])
        self._steps = 0
        self._located = self.road.locate(x, y, 0.0)
        self._progress = 0.0
        self._collision = "none"
        return self._observe(), self._info()

    def step(self, action):
        """Advance 0.05 s with `action` = [steer, throttle, brake] (clipped; NaN raises)."""
        if self.road is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (3,):
            raise ValueError(f"action must have shape (3,) = steer, throttle, brake; got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action {a.tolist()} has NaN or inf; send finite numbers")
        st = self.car.step(a[0], a[1], a[2])
        self._steps += 1
        self._located = self.road.locate(st.x, st.y, self._located[0])
        s, lateral, _ = self._located
        progress = min(max(s, 0.0), self.route_length_m)
        off_road = self.road.off_road(lateral)
        self._collision = collision_kind(self.scenery, s, lateral, self._steps * self.dt)
        done = progress >= self.route_length_m
        reward = (progress - self._progress) - 0.05 * abs(lateral) - (10.0 if off_road else 0.0)
        self._progress = progress
        obs, info = self._observe(), self._info()
        truncated = self._steps >= self.max_steps and not (off_road or done)
        return obs, float(reward), bool(off_road or done), bool(truncated), info

    def recenter(self):
        """Put the car on the centre line at its current progress, heading along the road.

        Returns the new (observation, info), as after a step.
        """
        if self.road is None:
            raise RuntimeError("call reset() before recenter()")
        s = self._located[0]
        x, y, yaw = self.road.pose_at(s)
        st = self.car.state
        st.x, st.y, st.yaw, st.wheel_angle = x, y, yaw, 0.0
        self._located = self.road.locate(x, y, s)
        self.expert.reset()
        return self._observe(), self._info()

    # -- outputs -------------------------------------------------------------------------

    def _observe(self) -> dict:
        st = self.car.state
        s, lateral, _ = self._located
        jitter = int(self._jitter_rng.integers(-1, 2)) if self._maps.jitter_rows else 0
        image = self.renderer.render(st.x, st.y, st.yaw, s, lateral, jitter)
        if self.scenery is not None:
            self.scenery.draw(image, st.x, st.y, st.yaw, s, lateral, self._steps * self.dt)
        if self.weather is not None:
            self.weather.apply(image, self._steps, st.yaw)
        self._image = image
        speed = np.array([min(st.speed, MAX_SPEED_OBS)], dtype=np.float32)
        return {"image": self._image, "speed": speed}

    def _info(self) -> dict:
        st = self.car.state
        _s, lateral, heading = self._located
        return {
            "lateral_error_m": float(lateral),
            "heading_error_rad": float(math.remainder(st.yaw - heading, math.tau)),
            "progress_m": float(self._progress),
            "route_completion": float(self._progress / self.route_length_m),
            "off_road": self.road.off_road(lateral),
            "expert_action": self.expert.act(st, self._located),
            "sim_time_s": self._steps * self.dt,
            "speed_mps": float(st.speed),
            "seed": self.road_seed,
            "pose": (float(st.x), float(st.y), float(st.yaw)),
            "lane_index": self.road.layout.ego_lane,
            "lanes_same": self.road.layout.lanes_same,
            "lane_width_m": self.road.lane_width,
            "lane_departure": lane_departure(self.road, lateral),
            "collision": self._collision != "none",
            "collision_kind": self._collision,
            "speed_limit_mps": float(
                self.road.layout.speed_mps if self.look.varied_road else self.target_speed_mps
            ),
        }

    def camera_info(self) -> dict:
        """Pinhole intrinsics of the camera: width, height, fx, fy, cx, cy."""
        return self.camera.camera_info()

    def camera_spec(self) -> dict:
        """The camera: `camera_info()` plus its mount x_m, y_m, height_m, pitch_deg,
        roll_deg, yaw_deg (car frame X forward, Y left, Z up; signs in `sim.camera`)."""
        return self.camera.spec()

    def vehicle_spec(self) -> dict:
        """The vehicle: wheelbase_m and max_steer_deg (front wheel angle at steer = 1)."""
        return dict(self._vehicle_spec)

    def topdown(self, size: int = 160, metres_per_px: float = 0.25) -> np.ndarray:
        """A top-down RGB view around the car (heading up), the car drawn in red."""
        if self.road is None:
            raise RuntimeError("call reset() before topdown()")
        st = self.car.state
        s = self._located[0]
        img = np.empty((size, size, 3), np.uint8)
        ahead = 0.7 * size * metres_per_px
        aff = self.renderer._affine(
            st.x, st.y, st.yaw, ahead, 0.5 * size * metres_per_px, metres_per_px
        )
        self.renderer.draw_patch(
            img, aff, s - size * metres_per_px, s + 1.5 * ahead, metres_per_px, True
        )
        cx, cy = size // 2, int(0.7 * size)
        hl, hw = max(2, int(2.3 / metres_per_px)), max(1, int(0.95 / metres_per_px))
        cv2.rectangle(img, (cx - hw, cy - hl), (cx + hw, cy + hl), (220, 30, 30), -1)
        return img

    def render(self):
        """The last camera image with a top-down inset (render_mode "rgb_array")."""
        if self.render_mode != "rgb_array" or self._image is None:
            return None
        frame = self._image.copy()
        h, w = frame.shape[:2]
        side = max(16, min(h, w) // 2)
        inset = cv2.resize(self.topdown(), (side, side), interpolation=cv2.INTER_AREA)
        frame[:side, w - side :] = inset
        return frame
