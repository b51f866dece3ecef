"""`SteeringAgent/CarlaDrive-v0`: the gymnasium env over a real CARLA 0.9.16 server.

Keeps the env contract of `sim.contract` (`DrivingEnv`): the same observation, action and
`info` keys as the embedded `DriveEnv`, `dt`, `camera_info()`, `camera_spec()`,
`vehicle_spec()`, `recenter()` and `render()`, so the policy, the evaluation and the
recorder run unchanged on CARLA. The `carla` package is imported only when an env
connects (importing `sim` never imports it).

The camera mount takes `DriveEnv`'s keywords and conventions and is converted to CARLA's
left-handed attachment transform (`sim.carla_session.carla_mount`, which says how); the
actors are spawned by `sim.carla_sensors` (with CARLA's native ROS 2 camera on request).

The env owns the world while it runs: synchronous mode at 0.05 s, the traffic manager in
sync too, one tick per `step`. `close()` destroys every actor it spawned and restores the
world settings; so does any error raised from CARLA during `reset`/`step` (a world left in
synchronous mode with nobody ticking freezes every other client), and a weakref finalizer
does it at interpreter exit if nobody called `close()`.
"""

from __future__ import annotations

import math
import queue
import weakref
from types import ModuleType
from typing import Any, ClassVar

import cv2
import gymnasium as gym
import numpy as np

from sim import carla_sensors as sensors
from sim.camera import pinhole_intrinsics
from sim.carla_route import (
    PurePursuitExpert,
    RoutePolyline,
    carla_to_ros_pose,
    ros_to_carla_pose,
    route_from_waypoints,
)
from sim.carla_session import (
    CAMERA_MOUNT,
    DT,
    CarlaConnectionError,  # noqa: F401  (re-exported: where older code found it)
    CarlaSensorTimeoutError,  # noqa: F401
    _CarlaSession,
    carla_mount,
    import_carla,
    open_session,
    vehicle_spec_of,
)
from sim.contract import MAX_SPEED_OBS
from sim.limits import check_limits


class CarlaDriveEnv(gym.Env):
    """Drive a CARLA route from the front camera (see module docstring).

    Args:
        width, height, fov_deg: the camera (defaults: the ROS bridge's rgb_front).
        camera_height_m, camera_pitch_deg, camera_roll_deg, camera_yaw_deg, camera_x_m,
            camera_y_m: the camera mount in `DriveEnv`'s conventions (module doc; ranges
            in `sim.limits`); defaults: the ROS bridge's rgb_front (`CAMERA_MOUNT`).
        route_length_m: route length built from the map's waypoints.
        render_mode: None or "rgb_array" (the last camera frame).
        max_steps: truncation limit (default: enough for the route at 4 m/s).
        host, port, timeout: the CARLA server and the RPC timeout (s).
        town: map to load ("Town01"), or None to keep the loaded one.
        spawn_point: index into `map.get_spawn_points()`; None draws one from the seed.
        vehicle_filter: the ego blueprint.
        role_name: the ego's role ("hero": CARLA's native ROS 2 subscribes control only
            for `hero` or `ego`; the ROS bridge's own spawner uses `ego_vehicle`).
        target_speed_mps: cruise speed of the privileged expert.
        tm_port: traffic manager port.
        ros_name: publish the camera over CARLA 0.9.16's native ROS 2 (a `--ros2` server)
            under this name: the camera blueprint gets `ros_name`, the car ros_name =
            `role_name`, and `camera.enable_for_ros()` is called, so the server publishes
            `/carla/<role_name>/<ros_name>/image` and `.../camera_info`
            (`sim.carla_sensors`; `ros_topics()`). None (default): not published.
        enable_ros: shorthand for ros_name="rgb_front" (kept for older callers).
        carla_module: the `carla` module to use (tests pass a stand-in); default imports it.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": round(1.0 / DT)}

    def __init__(
        self,
        width: int = 800,
        height: int = 600,
        fov_deg: float = 90.0,
        route_length_m: float = 300.0,
        render_mode: str | None = None,
        max_steps: int | None = None,
        host: str = "localhost",
        port: int = 2000,
        timeout: float = 10.0,
        town: str | None = "Town01",
        spawn_point: int | None = 0,
        vehicle_filter: str = "vehicle.audi.tt",
        role_name: str = sensors.NATIVE_ROLE,
        target_speed_mps: float = 8.0,
        waypoint_spacing_m: float = 1.0,
        tm_port: int = 8000,
        enable_ros: bool = False,
        carla_module: ModuleType | None = None,
        *,
        camera_height_m: float = CAMERA_MOUNT["z"],
        camera_pitch_deg: float = 0.0 - CAMERA_MOUNT["pitch"],
        camera_roll_deg: float = CAMERA_MOUNT["roll"],
        camera_yaw_deg: float = 0.0 - CAMERA_MOUNT["yaw"],
        camera_x_m: float = CAMERA_MOUNT["x"],
        camera_y_m: float = 0.0 - CAMERA_MOUNT["y"],
        ros_name: str | None = None,
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: use None or 'rgb_array'")
        if width < 8 or height < 8 or not 1.0 <= fov_deg < 180.0:
            raise ValueError(f"camera {width}x{height} fov {fov_deg}: need >=8 px, 1<=fov<180")
        if route_length_m <= 2 * waypoint_spacing_m:
            raise ValueError(f"route_length_m={route_length_m}: must exceed 2 waypoint spacings")
        self.width, self.height, self.fov_deg = int(width), int(height), float(fov_deg)
        mount = check_limits(
            camera_x_m=camera_x_m,
            camera_y_m=camera_y_m,
            camera_height_m=camera_height_m,
            camera_pitch_deg=camera_pitch_deg,
            camera_roll_deg=camera_roll_deg,
            camera_yaw_deg=camera_yaw_deg,
        )
        # the mount in sim.camera's convention: x_m, y_m, height_m, pitch_deg, roll_deg, ...
        self._mount = {k.removeprefix("camera_"): v for k, v in mount.items()}
        self._vehicle_spec: dict[str, float] | None = None
        self.route_length_m = float(route_length_m)
        self.render_mode = render_mode
        self.max_steps = max_steps or math.ceil(route_length_m / 4.0 / DT)
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"port={port} is not a TCP port; pass 1..65535 (CARLA: 2000)")
        if not float(timeout) > 0:
            raise ValueError(f"timeout={timeout} must be > 0 seconds")
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.town, self.spawn_point = town, spawn_point
        self.vehicle_filter, self.role_name = vehicle_filter, role_name
        self.target_speed_mps = float(target_speed_mps)
        self.waypoint_spacing_m = float(waypoint_spacing_m)
        if ros_name is None and enable_ros:
            ros_name = sensors.BRIDGE_CAMERA
        if ros_name is not None:
            sensors.check_ros_token("ros_name", ros_name)
            sensors.check_ros_token("role_name", role_name)
        self.ros_name: str | None = ros_name
        self.tm_port, self.enable_ros = int(tm_port), ros_name is not None
        self._carla_module = carla_module
        self.dt = DT

        self.observation_space, self.action_space = sensors.contract_spaces(self.height, self.width)
        self._session: _CarlaSession | None = None
        self._finalizer: weakref.finalize | None = None
        self._frames: queue.Queue = queue.Queue()
        self._collisions: list[Any] = []
        self._lane_invasions: list[Any] = []
        self._vehicle: Any = None
        self._route: RoutePolyline | None = None
        self._expert: PurePursuitExpert | None = None
        self._last_rgb: np.ndarray | None = None
        self._last_action = np.zeros(3, np.float32)
        self._seg_hint = 0
        self._steps = 0
        self._seed: int | None = None

    # ---- connection -------------------------------------------------------------------

    def _connect(self) -> _CarlaSession:
        return open_session(
            import_carla(self._carla_module), self.host, self.port, self.timeout, self.town,
            self.tm_port, probe=self._carla_module is None,
        )  # fmt: skip

    def _shutdown(self) -> None:
        session, self._session = self._session, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._vehicle = None
        if session is not None:
            session.close()

    # ---- episode set-up ---------------------------------------------------------------

    def _spawn(self, session: _CarlaSession) -> None:
        carla, world = session.carla, session.world
        library = world.get_blueprint_library()
        spawn_points = world.get_map().get_spawn_points()
        index = sensors.pick_spawn_point(len(spawn_points), self.spawn_point, self.np_random)
        self._vehicle = sensors.spawn_ego(
            world, library, self.vehicle_filter, self.role_name, self.ros_name,
            spawn_points[index],
        )  # fmt: skip
        session.actors.append(self._vehicle)
        sensors.spawn_camera(
            carla, world, library, self._vehicle, (self.width, self.height), self.fov_deg,
            carla_mount(**self._mount), self.ros_name, self._frames.put, session.actors,
        )  # fmt: skip
        sensors.spawn_event_sensors(
            carla, world, library, self._vehicle,
            {"sensor.other.collision": self._collisions,
             "sensor.other.lane_invasion": self._lane_invasions},
            session.actors,
        )  # fmt: skip

    def _build_route(self, session: _CarlaSession) -> None:
        self._route = route_from_waypoints(
            session.carla, session.world.get_map(), self._vehicle.get_transform().location,
            self.route_length_m, self.waypoint_spacing_m, self.np_random,
        )  # fmt: skip
        self._vehicle_spec = vehicle_spec_of(self._vehicle)
        self._expert = PurePursuitExpert(
            self._route,
            self.target_speed_mps,
            wheelbase_m=self._vehicle_spec["wheelbase_m"],
            max_steer_rad=math.radians(self._vehicle_spec["max_steer_deg"]),
        )

    # ---- gym API ----------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._seed = seed
        try:
            if self._session is None:
                self._session = self._connect()
                self._finalizer = weakref.finalize(self, self._session.close)
            else:
                self._session.destroy_actors()
            self._frames = queue.Queue()
            self._collisions.clear()
            self._lane_invasions.clear()
            self._spawn(self._session)
            self._build_route(self._session)
            self._steps, self._seg_hint = 0, 0
            self._last_action = np.zeros(3, np.float32)
            self._session.world.tick()  # settle the spawn; its frame is discarded
            frame = self._session.world.tick()
            rgb = self._camera_frame(frame)
        except BaseException:
            self._shutdown()
            raise
        obs, info = self._observe(rgb)
        return obs, info

    def step(self, action):
        if self._session is None or self._vehicle is None:
            raise RuntimeError("CarlaDriveEnv.step() before reset(): call reset() first")
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if a.shape != (3,) or not np.all(np.isfinite(a)):
            raise ValueError(
                f"action {action!r}: need 3 finite numbers [steer, throttle, brake] "
                "(a NaN usually means the policy diverged)"
            )
        a = np.clip(a, self.action_space.low, self.action_space.high)
        obs, info = self._tick(a)
        collided = bool(self._collisions)
        route_done = info["route_completion"] >= 1.0 - 1e-6
        terminated = collided or info["off_road"] or route_done
        truncated = not terminated and self._steps >= self.max_steps
        reward = float(info["speed_mps"] * DT * math.cos(info["heading_error_rad"])) - 0.1 * abs(
            info["lateral_error_m"]
        )
        return obs, reward, terminated, truncated, info

    def advance(self) -> tuple[dict, dict]:
        """Tick once WITHOUT applying a control and return (obs, info).

        For an external controller driving the car, e.g. the agent node over CARLA's native
        ROS 2 (`ros_name=...`): this process only owns the clock and the episode.
        """
        if self._session is None or self._vehicle is None:
            raise RuntimeError("CarlaDriveEnv.advance() before reset(): call reset() first")
        return self._tick(None)

    def ros_topics(self) -> dict[str, str] | None:
        """The camera's native ROS 2 topics (image, camera_info), or None when the camera
        is not published (`ros_name` None)."""
        if self.ros_name is None:
            return None
        return sensors.native_topics(self.role_name, self.ros_name)

    def render(self) -> np.ndarray | None:
        """The last camera frame (RGB, a copy) with render_mode "rgb_array"; else None."""
        if self.render_mode != "rgb_array" or self._last_rgb is None:
            return None
        return self._last_rgb.copy()

    def close(self):
        self._shutdown()
        super().close()

    # ---- helpers the evaluation and recording use --------------------------------------

    def camera_info(self) -> dict:
        """Pinhole intrinsics of the camera: width, height, fx, fy, cx, cy (no distortion)."""
        return pinhole_intrinsics(self.width, self.height, self.fov_deg)

    def camera_spec(self) -> dict:
        """The camera: `camera_info()` plus its mount x_m, y_m, height_m, pitch_deg,
        roll_deg, yaw_deg in `DriveEnv`'s convention (module doc), as given."""
        m = self._mount
        return {
            **self.camera_info(),
            **{k: m[k] for k in ("x_m", "y_m", "height_m", "pitch_deg", "roll_deg", "yaw_deg")},
        }

    def vehicle_spec(self) -> dict:
        """The spawned car: wheelbase_m and max_steer_deg (the front wheel angle at
        steer = 1), from its physics control (`vehicle_spec_from_physics`). Known once
        `reset()` has spawned it."""
        if self._vehicle_spec is None:
            raise RuntimeError(
                "CarlaDriveEnv.vehicle_spec() before reset(): the car is spawned (and its "
                "physics read) by reset(); call reset() first"
            )
        return dict(self._vehicle_spec)

    def recenter(self) -> tuple[dict, dict]:
        """Put the car on the centre line at its current progress, heading along the route.

        Returns the new (observation, info), as after a step. CARLA moves an actor at the
        next tick, so this ticks the world once, with the wheels straight and the last
        throttle and brake; that tick counts in `sim_time_s` like a step.
        """
        if self._session is None or self._route is None or self._vehicle is None:
            raise RuntimeError("CarlaDriveEnv.recenter() before reset(): call reset() first")
        carla = self._session.carla
        try:
            s, *_ = self._route.locate(*self._pose(), hint_index=self._seg_hint)
            x, y, yaw_deg = ros_to_carla_pose(*self._route.point_at(s))
            z = self._vehicle.get_transform().location.z
            self._vehicle.set_transform(
                carla.Transform(carla.Location(x=x, y=y, z=z), carla.Rotation(yaw=yaw_deg))
            )
        except BaseException:
            self._shutdown()
            raise
        return self._tick(np.array([0.0, *self._last_action[1:]], np.float32))

    # ---- internals --------------------------------------------------------------------

    def _tick(self, action: np.ndarray | None) -> tuple[dict, dict]:
        """Apply `action` (None: no control), tick once, return (obs, info) of that tick.

        Any error (or Ctrl-C) on the way gives the world back before it propagates.
        """
        session = self._session
        try:
            if action is not None:
                self._vehicle.apply_control(
                    session.carla.VehicleControl(
                        throttle=float(action[1]),
                        steer=float(action[0]),
                        brake=float(action[2]),
                        hand_brake=False,
                        reverse=False,
                        manual_gear_shift=False,
                        gear=0,
                    )
                )
                self._last_action = np.asarray(action, np.float32)
            rgb = self._camera_frame(session.world.tick())
            self._steps += 1
            return self._observe(rgb)
        except BaseException:
            self._shutdown()
            raise

    def _camera_frame(self, frame: int) -> np.ndarray:
        """RGB of the camera image taken at `frame`; older frames are dropped."""
        where = f"{self.host}:{self.port}"
        image = sensors.wait_for_frame(self._frames, frame, self.timeout, where)
        bgra = np.frombuffer(image.raw_data, dtype=np.uint8).reshape(image.height, image.width, 4)
        self._last_rgb = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)  # one pass, contiguous
        return self._last_rgb

    def _pose(self) -> tuple[float, float, float]:
        tf = self._vehicle.get_transform()
        return carla_to_ros_pose(tf.location.x, tf.location.y, tf.rotation.yaw)

    def _observe(self, rgb: np.ndarray) -> tuple[dict, dict]:
        x, y, yaw = self._pose()
        v = self._vehicle.get_velocity()
        speed = float(math.sqrt(v.x * v.x + v.y * v.y + v.z * v.z))
        s, lateral, heading, self._seg_hint = self._route.locate(x, y, yaw, self._seg_hint)
        carla = self._session.carla
        loc = self._vehicle.get_transform().location
        on_lane = self._session.world.get_map().get_waypoint(
            loc, project_to_road=False, lane_type=carla.LaneType.Driving
        )
        obs = {"image": rgb, "speed": np.array([min(speed, MAX_SPEED_OBS)], dtype=np.float32)}
        info = {
            "lateral_error_m": lateral,
            "heading_error_rad": heading,
            "progress_m": s,
            "route_completion": min(1.0, s / self._route.length_m),
            "off_road": on_lane is None,
            "collision": bool(self._collisions),
            "lane_invasions": len(self._lane_invasions),
            "expert_action": self._expert.act(x, y, yaw, speed, s),
            "sim_time_s": self._steps * DT,
            "speed_mps": speed,
            "seed": self._seed,
            "pose": (x, y, yaw),
        }
        return obs, info
