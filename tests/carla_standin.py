"""A STAND-IN for the `carla` client module (NOT CARLA): records calls, fakes a server.

No CARLA server can run on the test machines, so the backend's tests inject this
stand-in (`make_carla_standin()`, passed as `carla_module=` or put in `sys.modules`).
It fakes just enough of the CARLA 0.9.16 Python API for `sim.carla_backend`: a straight
road along +x (CARLA's left-handed frame, y to the right), kinematic car motion, a camera
that delivers BGRA frames per tick, collision/lane-invasion sensors, world settings, the
traffic manager, batch destroy and a vehicle physics control (wheels with
`max_steer_angle` in degrees and `position` in world cm, as CARLA documents them; the
stand-in's car is `server.wheelbase_m` long between the axles with a lock of
`server.max_steer_deg`, or has no physics control with `server.physics_control = False`).
Every call that matters is appended to `module.server.log` so tests can assert what the
backend asked the "server" to do.

Its motion follows CARLA's documented frame (x forward, y right, yaw in degrees, + yaw
and + steer turn right); tests/test_carla_backend.py checks the stand-in against those
documented numbers (`CARLA_CONVENTION`), so it is not merely trusted to agree.

Frame pattern of the fake camera (BGRA): B = column % 256, G = row % 256,
R = frame % 256, A = 255; so the RGB observation must read R = frame, G = row, B = column.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DT_DEFAULT = 0.05


@dataclass
class Location:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class Rotation:
    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0


@dataclass
class Vector3D:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass
class Transform:
    location: Location = field(default_factory=Location)
    rotation: Rotation = field(default_factory=Rotation)


@dataclass
class WorldSettings:
    synchronous_mode: bool = False
    fixed_delta_seconds: float | None = None
    no_rendering_mode: bool = False


class VehicleControl:
    def __init__(self, throttle=0.0, steer=0.0, brake=0.0, hand_brake=False, reverse=False,
                 manual_gear_shift=False, gear=0):  # fmt: skip
        self.throttle, self.steer, self.brake = throttle, steer, brake
        self.hand_brake, self.reverse = hand_brake, reverse
        self.manual_gear_shift, self.gear = manual_gear_shift, gear


class LaneType:
    Driving = "Driving"


@dataclass
class WheelPhysicsControl:
    max_steer_angle: float = 70.0  # degrees
    position: Vector3D = field(default_factory=Vector3D)  # world, cm


@dataclass
class VehiclePhysicsControl:
    wheels: list[WheelPhysicsControl] = field(default_factory=list)


@dataclass
class Image:
    frame: int
    width: int
    height: int
    fov: float
    raw_data: bytes


class Blueprint:
    def __init__(self, server: StandinServer, type_id: str):
        self.server, self.id, self.attributes = server, type_id, {}

    def set_attribute(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("carla stand-in: set_attribute takes str values, like CARLA")
        self.attributes[key] = value
        self.server.log.append(("set_attribute", self.id, key, value))


class BlueprintLibrary:
    def __init__(self, server: StandinServer):
        self.server = server

    def find(self, type_id: str) -> Blueprint:
        return Blueprint(self.server, type_id)

    def filter(self, pattern: str) -> list[Blueprint]:
        return [Blueprint(self.server, pattern)]


class Actor:
    def __init__(self, server: StandinServer, bp: Blueprint, transform: Transform, parent=None):
        server.next_id += 1
        self.id, self.server, self.type_id = server.next_id, server, bp.id
        self.attributes, self.parent = dict(bp.attributes), parent
        self.transform, self.alive = transform, True

    def get_transform(self) -> Transform:
        return self.transform

    def destroy(self) -> bool:
        self.server.log.append(("destroy", self.id))
        self.alive = False
        self.server.actors.pop(self.id, None)
        return True


class Vehicle(Actor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.speed, self.control = 0.0, VehicleControl()

    def apply_control(self, control: VehicleControl) -> None:
        self.server.log.append(("apply_control", control))
        self.control = control

    def get_velocity(self) -> Vector3D:
        yaw = math.radians(self.transform.rotation.yaw)
        return Vector3D(self.speed * math.cos(yaw), self.speed * math.sin(yaw), 0.0)

    def set_transform(self, transform: Transform) -> None:
        self.server.log.append(("set_transform", transform))
        self.transform = transform

    def get_physics_control(self) -> VehiclePhysicsControl:
        """Wheels front left, front right, rear left, rear right (CARLA's order): front
        ones steer by `server.max_steer_deg`, positions in world cm (CARLA: y right)."""
        srv = self.server
        srv.log.append(("get_physics_control", self.id))
        if not srv.physics_control:
            raise RuntimeError("carla stand-in: no physics control for this actor")
        loc, yaw = self.transform.location, math.radians(self.transform.rotation.yaw)
        fwd, right = (math.cos(yaw), math.sin(yaw)), (-math.sin(yaw), math.cos(yaw))
        wheels = []
        for along, steer in (
            (0.5 * srv.wheelbase_m, srv.max_steer_deg),
            (-0.5 * srv.wheelbase_m, 0.0),
        ):
            for side in (-0.8, 0.8):  # left, right
                x = loc.x + along * fwd[0] + side * right[0]
                y = loc.y + along * fwd[1] + side * right[1]
                wheels.append(WheelPhysicsControl(steer, Vector3D(100 * x, 100 * y, 100 * 0.35)))
        return VehiclePhysicsControl(wheels)

    def physics_step(self, dt: float) -> None:
        """Kinematic stand-in physics: + steer turns right (+y in CARLA's frame)."""
        c = self.control
        self.speed = max(0.0, self.speed + (4.0 * c.throttle - 8.0 * c.brake) * dt)
        rot, loc = self.transform.rotation, self.transform.location
        rot.yaw += 30.0 * c.steer * dt * min(self.speed, 1.0)
        yaw = math.radians(rot.yaw)
        loc.x += self.speed * math.cos(yaw) * dt
        loc.y += self.speed * math.sin(yaw) * dt


class Sensor(Actor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.callback, self.ros_enabled = None, False

    def listen(self, callback) -> None:
        self.server.log.append(("listen", self.type_id))
        self.callback = callback

    def stop(self) -> None:
        self.server.log.append(("stop", self.id))
        self.callback = None

    def enable_for_ros(self) -> None:
        self.server.log.append(("enable_for_ros", self.id))
        self.ros_enabled = True


class Waypoint:
    def __init__(self, server: StandinServer, x: float):
        self.server = server
        self.transform = Transform(Location(x, 0.0, 0.0), Rotation())
        self.lane_width = server.lane_width

    def next(self, distance: float) -> list[Waypoint]:
        x = self.transform.location.x + distance
        return [Waypoint(self.server, x)] if x <= self.server.road_end_x else []


class Map:
    def __init__(self, server: StandinServer):
        self.server, self.name = server, server.map_name

    def get_spawn_points(self) -> list[Transform]:
        return [
            Transform(Location(x, y, 0.5), Rotation(yaw=yaw))
            for x, y, yaw in self.server.spawn_points
        ]

    def get_waypoint(self, location, project_to_road=True, lane_type=None):
        off_lane = abs(location.y) > self.server.lane_width / 2.0
        if off_lane and not project_to_road:
            return None
        return Waypoint(self.server, max(0.0, min(location.x, self.server.road_end_x)))


class TrafficManager:
    def __init__(self, server: StandinServer, port: int):
        self.server, self.port = server, port

    def set_synchronous_mode(self, on: bool) -> None:
        self.server.log.append(("tm_set_synchronous_mode", self.port, on))
        self.server.tm_sync = on


class World:
    def __init__(self, server: StandinServer):
        self.server = server

    def get_map(self) -> Map:
        return Map(self.server)

    def get_blueprint_library(self) -> BlueprintLibrary:
        return BlueprintLibrary(self.server)

    def get_settings(self) -> WorldSettings:
        s = self.server.settings
        return WorldSettings(s.synchronous_mode, s.fixed_delta_seconds, s.no_rendering_mode)

    def apply_settings(self, settings: WorldSettings) -> int:
        s = WorldSettings(settings.synchronous_mode, settings.fixed_delta_seconds)
        self.server.log.append(("apply_settings", s.synchronous_mode, s.fixed_delta_seconds))
        self.server.settings = s
        return self.server.frame

    def spawn_actor(self, bp: Blueprint, transform: Transform, attach_to=None) -> Actor:
        srv = self.server
        srv.maybe_fail("spawn_actor")
        if bp.id.startswith("vehicle"):
            tf = Transform(
                Location(**vars(transform.location)), Rotation(**vars(transform.rotation))
            )
            actor: Actor = Vehicle(srv, bp, tf)
        else:
            actor = Sensor(srv, bp, transform, parent=attach_to)
        srv.actors[actor.id] = actor
        srv.log.append(("spawn_actor", bp.id, actor.id))
        return actor

    def tick(self, seconds: float = 10.0) -> int:
        srv = self.server
        srv.maybe_fail("tick")
        srv.frame += 1
        srv.log.append(("tick", srv.frame))
        dt = srv.settings.fixed_delta_seconds or DT_DEFAULT
        for actor in list(srv.actors.values()):
            if isinstance(actor, Vehicle):
                actor.physics_step(dt)
        for actor in list(srv.actors.values()):
            if isinstance(actor, Sensor) and actor.callback is not None:
                srv.deliver(actor)
        return srv.frame


class StandinServer:
    """The fake server's state and the call log."""

    def __init__(self, reachable: bool = True, map_name: str = "Carla/Maps/Town10HD_Opt"):
        self.reachable, self.map_name = reachable, map_name
        self.log: list[tuple] = []
        self.settings = WorldSettings()
        self.actors: dict[int, Actor] = {}
        self.next_id, self.frame = 100, 1000
        self.tm_sync = False
        self.lane_width, self.road_end_x = 3.5, 2000.0
        self.fail_at: dict[str, int] = {}  # call name -> raise on that (1-based) call
        self.calls: dict[str, int] = {}
        self.stale_camera_frames = 0  # older frames delivered before each tick's frame
        self.drop_camera = False
        self.collide_at_frame: int | None = None
        self.physics_control = True  # False: get_physics_control raises
        self.wheelbase_m, self.max_steer_deg = 2.47, 70.0  # the stand-in's car
        # (x, y, yaw_deg) in CARLA's frame; off-centre ones give the expert work to do
        self.spawn_points: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0), (100.0, 0.0, 0.0)]
        self.die_after_ticks: int | None = None  # the server "crashes" after that many ticks

    def maybe_fail(self, name: str) -> None:
        if not self.reachable:
            raise RuntimeError(f"carla stand-in: the server is gone ({name})")
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.fail_at.get(name) == self.calls[name]:
            raise RuntimeError(f"carla stand-in: injected failure in {name}")
        dies = self.die_after_ticks
        if name == "tick" and dies is not None and self.calls[name] > dies:
            self.reachable = False  # every later call fails too, a new client as well
            raise RuntimeError(
                f"carla stand-in: the server died after {dies} ticks "
                "(rpc::rpc_error: connection closed)"
            )

    def camera_bytes(self, frame: int, w: int, h: int) -> bytes:
        img = np.empty((h, w, 4), np.uint8)
        img[..., 0] = (np.arange(w) % 256)[None, :]
        img[..., 1] = (np.arange(h) % 256)[:, None]
        img[..., 2] = frame % 256
        img[..., 3] = 255
        return img.tobytes()

    def deliver(self, sensor: Sensor) -> None:
        if sensor.type_id == "sensor.camera.rgb":
            if self.drop_camera:
                return
            w, h = int(sensor.attributes["image_size_x"]), int(sensor.attributes["image_size_y"])
            fov = float(sensor.attributes["fov"])
            for k in range(self.stale_camera_frames, -1, -1):
                f = self.frame - k
                sensor.callback(Image(f, w, h, fov, self.camera_bytes(f, w, h)))
        elif sensor.type_id == "sensor.other.collision" and self.collide_at_frame == self.frame:
            sensor.callback(types.SimpleNamespace(frame=self.frame, other_actor=None))

    def alive_actor_ids(self) -> list[int]:
        return sorted(self.actors)


class Client:
    def __init__(self, server: StandinServer, host: str, port: int):
        self.server, self.host, self.port, self.timeout = server, host, port, 5.0
        server.log.append(("Client", host, port))

    def set_timeout(self, seconds: float) -> None:
        self.server.log.append(("set_timeout", seconds))
        self.timeout = seconds

    def _check(self) -> None:
        if not self.server.reachable:
            raise RuntimeError(
                f"time-out of {int(self.timeout * 1000)}ms while waiting for the simulator, "
                f"make sure the simulator is ready and connected to {self.host}:{self.port}"
            )

    def get_world(self) -> World:
        self._check()
        return World(self.server)

    def load_world(self, name: str) -> World:
        self._check()
        self.server.log.append(("load_world", name))
        self.server.map_name = f"Carla/Maps/{name}"
        return World(self.server)

    def get_trafficmanager(self, port: int = 8000) -> TrafficManager:
        return TrafficManager(self.server, port)

    def apply_batch_sync(self, commands: list, do_tick: bool = False) -> list:
        self.server.log.append(("apply_batch_sync", [c.actor_id for c in commands], do_tick))
        for c in commands:
            actor = self.server.actors.get(c.actor_id)
            if actor is not None:
                actor.destroy()
        return [types.SimpleNamespace(error="", actor_id=c.actor_id) for c in commands]


def make_carla_standin(**server_options: Any) -> types.ModuleType:
    """A fresh stand-in `carla` module with its own fake server (`module.server`), which
    every `Client(host, port)` reaches whatever the address."""
    server = StandinServer(**server_options)
    mod = _module()
    mod.server = server
    mod.Client = lambda host, port, worker_threads=0: Client(server, host, port)
    return mod


def make_carla_standin_servers(addresses: list[str], **server_options: Any) -> types.ModuleType:
    """A stand-in `carla` module with one fake server per "host:port" of `addresses`
    (`module.servers[address]`): `Client(host, port)` talks to the server at that
    address; any other address refuses the connection (every call raises), as a port
    with no CARLA server behind it. Each server's calls go to its own `log`."""
    servers = {a: StandinServer(**server_options) for a in addresses}
    nobody = StandinServer(reachable=False)
    mod = _module()
    mod.servers = servers
    mod.Client = lambda host, port, worker_threads=0: Client(
        servers.get(f"{host}:{port}", nobody), host, port
    )
    return mod


def _module() -> types.ModuleType:
    mod = types.ModuleType("carla", "STAND-IN for the carla client module (tests only)")
    mod.command = types.SimpleNamespace(
        DestroyActor=lambda actor_id: types.SimpleNamespace(actor_id=actor_id)
    )
    for cls in (
        Location,
        Rotation,
        Transform,
        Vector3D,
        WorldSettings,
        VehicleControl,
        LaneType,
        WheelPhysicsControl,
        VehiclePhysicsControl,
    ):
        setattr(mod, cls.__name__, cls)
    mod.IS_STANDIN = True
    return mod
