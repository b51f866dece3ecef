"""The CARLA side of `SteeringAgent/CarlaDrive-v0`: the camera mount and vehicle in CARLA's
conventions, a safe probe of the server, and the session of everything the env changed
on the server (`sim.carla_backend` is the env itself)."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

import numpy as np

from sim.limits import VEHICLE_LIMITS

log = logging.getLogger("sim.carla_backend")

DT = 0.05
# The CARLA ROS bridge's rgb_front (carla_spawn_objects/config/objects.json): x=2.0,
# y=0.0, z=2.0 m, roll/pitch/yaw 0, 800x600, FOV 90.
CAMERA_MOUNT = {"x": 2.0, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0}
# CARLA's default vehicle, for `vehicle_spec()` where the physics control offers nothing
# usable: wheelbase 2.875 m, WheelPhysicsControl.max_steer_angle 70 degrees.
CARLA_DEFAULT_VEHICLE = {"wheelbase_m": 2.875, "max_steer_deg": 70.0}
START_SERVER_HINT = (
    "start one with `./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}` in the CARLA "
    "0.9.16 folder, or `docker run --rm --gpus all --net=host carlasim/carla:0.9.16 "
    "./CarlaUE4.sh -RenderOffScreen -carla-rpc-port={port}`, or pass host=/port= of a "
    "running server"
)


def carla_mount(
    x_m: float, y_m: float, height_m: float, pitch_deg: float, roll_deg: float, yaw_deg: float
) -> dict[str, float]:
    """A camera mount in `sim.camera`'s convention as CARLA's attachment transform:
    location x, y, z (m) and rotation pitch, yaw, roll (degrees), left-handed (y right,
    + pitch = nose up, + yaw = clockwise from above)."""
    return {
        "x": float(x_m),
        "y": 0.0 - y_m,  # 0.0 - v, not -v: no -0.0 for a centred camera
        "z": float(height_m),
        "pitch": 0.0 - pitch_deg,
        "yaw": 0.0 - yaw_deg,
        "roll": float(roll_deg),
    }


def vehicle_spec_from_physics(physics: Any) -> dict[str, float]:
    """wheelbase_m and max_steer_deg of a CARLA `VehiclePhysicsControl`.

    max_steer_deg: `wheels[0].max_steer_angle` (degrees; front left). wheelbase_m: the
    distance between the mid-points of the front (wheels 0, 1) and rear (2, 3) wheels'
    `position`s (world, cm). Each falls back to `CARLA_DEFAULT_VEHICLE` where it is
    missing or outside `sim.limits.VEHICLE_LIMITS`.
    """
    spec = dict(CARLA_DEFAULT_VEHICLE)
    wheels = list(getattr(physics, "wheels", None) or [])
    lo, hi, _ = VEHICLE_LIMITS["max_steer_deg"]
    try:
        steer = float(wheels[0].max_steer_angle)
    except (IndexError, AttributeError, TypeError, ValueError):
        steer = float("nan")
    if lo <= steer <= hi:
        spec["max_steer_deg"] = steer
    else:
        log.warning("CARLA: no usable max_steer_angle (%s); using %s deg", steer,
                    spec["max_steer_deg"])  # fmt: skip
    lo, hi, _ = VEHICLE_LIMITS["wheelbase_m"]
    wheelbase = float("nan")
    try:
        if len(wheels) >= 4:
            p = np.array([[w.position.x, w.position.y, w.position.z] for w in wheels[:4]], float)
            wheelbase = float(np.linalg.norm(p[:2].mean(0) - p[2:4].mean(0))) / 100.0
    except (AttributeError, TypeError, ValueError):
        pass
    if lo <= wheelbase <= hi:
        spec["wheelbase_m"] = wheelbase
    else:
        log.warning("CARLA: no usable wheel positions (wheelbase %s m); using %s m", wheelbase,
                    spec["wheelbase_m"])  # fmt: skip
    return spec


def vehicle_spec_of(vehicle: Any) -> dict[str, float]:
    """`vehicle_spec_from_physics` of a spawned car (CARLA's default vehicle where its
    physics control cannot be read)."""
    try:
        physics = vehicle.get_physics_control()
    except Exception as e:  # an API without it: CARLA's default vehicle
        log.warning("CARLA: no physics control for %s (%s)", getattr(vehicle, "type_id", "?"), e)
        physics = None
    return vehicle_spec_from_physics(physics)


class CarlaConnectionError(RuntimeError):
    """No CARLA server answered at host:port within the timeout (or `carla` is missing)."""


_PROBE = """
import sys
import carla
client = carla.Client(sys.argv[1], int(sys.argv[2]))
client.set_timeout(float(sys.argv[3]))
print(client.get_server_version(), flush=True)
"""


def probe_carla_server(host: str, port: int, timeout: float) -> str:
    """The server version at host:port, asked in a short-lived subprocess.

    A service that is not CARLA can make the CARLA client library abort the whole process
    from inside (a msgpack type error ends in SIGABRT); asked from a child process, only
    the child dies and this one gets a clear error instead.

    Raises:
        CarlaConnectionError: no answer within `timeout`, or not a CARLA server.
    """
    import subprocess
    import sys

    cmd = [sys.executable, "-c", _PROBE, host, str(port), str(timeout)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 20.0)
    except subprocess.TimeoutExpired:
        raise CarlaConnectionError(
            f"no CARLA server answered at {host}:{port} within {timeout:g} s; "
            + START_SERVER_HINT.format(port=port)
        ) from None
    if out.returncode < 0:
        raise CarlaConnectionError(
            f"something at {host}:{port} answered, but it is not a CARLA server (the CARLA "
            f"client died of signal {-out.returncode} talking to it); check host= and "
            "port= (CARLA's RPC port, 2000 by default)"
        )
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {out.returncode}"
        raise CarlaConnectionError(
            f"no CARLA server answered at {host}:{port} within {timeout:g} s ({why}); "
            + START_SERVER_HINT.format(port=port)
        )
    return out.stdout.strip()


def import_carla(module: ModuleType | None = None) -> ModuleType:
    """`module` (tests pass a stand-in), else the installed `carla` client.

    Raises:
        CarlaConnectionError: the client is not installed (names the pip command).
    """
    if module is not None:
        return module
    try:
        return importlib.import_module("carla")
    except ImportError as e:
        raise CarlaConnectionError(
            "CarlaDrive-v0 needs the CARLA client: `pip install carla==0.9.16` "
            f"(import failed: {e})"
        ) from e


def open_session(
    carla: ModuleType, host: str, port: int, timeout: float, town: str | None,
    tm_port: int, probe: bool = True,
) -> _CarlaSession:  # fmt: skip
    """Connect to the server at host:port, load `town` (None: keep the loaded map) and
    take the world: synchronous mode at `DT`, the traffic manager in sync too.

    probe: ask the server its version from a child process first (`probe_carla_server`),
        where the client is installed on disk (a stand-in module has no `__file__`).

    Raises:
        CarlaConnectionError: no server answered (names host:port and how to start one).
    """
    if probe and getattr(carla, "__file__", None):
        probe_carla_server(host, port, timeout)
    session = _CarlaSession(carla)
    try:
        session.client = carla.Client(host, port)
        session.client.set_timeout(timeout)
        world = session.client.get_world()
        if town and world.get_map().name.split("/")[-1] != town:
            session.client.set_timeout(max(timeout, 60.0))  # map loads take a while
            world = session.client.load_world(town)
            session.client.set_timeout(timeout)
    except RuntimeError as e:
        raise CarlaConnectionError(
            f"no CARLA server answered at {host}:{port} within {timeout:g} s ({e}); "
            + START_SERVER_HINT.format(port=port)
        ) from e
    session.world = world
    session.original_settings = world.get_settings()
    settings = world.get_settings()
    settings.synchronous_mode = True
    settings.fixed_delta_seconds = DT
    world.apply_settings(settings)
    session.traffic_manager = session.client.get_trafficmanager(tm_port)
    session.traffic_manager.set_synchronous_mode(True)
    return session


class CarlaSensorTimeoutError(RuntimeError):
    """The camera frame of a tick did not arrive within the timeout."""


class _CarlaSession:
    """Everything the env changed on the server, so it can all be undone in one call.

    Kept apart from the env so a weakref finalizer can clean up without holding the env.
    """

    def __init__(self, carla: ModuleType):
        self.carla = carla
        self.client: Any = None
        self.world: Any = None
        self.traffic_manager: Any = None
        self.original_settings: Any = None
        self.actors: list[Any] = []

    def destroy_actors(self) -> None:
        """Stop sensors and destroy every spawned actor (sensors first, then the car)."""
        actors, self.actors = self.actors[::-1], []
        for actor in actors:
            if hasattr(actor, "stop"):
                try:
                    actor.stop()
                except Exception as e:  # keep going: destroying matters more
                    log.warning("CARLA: could not stop sensor %s: %s", actor.id, e)
        if not actors:
            return
        try:
            destroy = self.carla.command.DestroyActor
            self.client.apply_batch_sync([destroy(a.id) for a in actors], False)
        except Exception as e:
            log.warning("CARLA: batch destroy failed (%s); destroying one by one", e)
            for actor in actors:
                try:
                    actor.destroy()
                except Exception as e2:
                    log.warning("CARLA: could not destroy actor %s: %s", actor.id, e2)

    def close(self) -> None:
        """Destroy actors, then give the world back its settings; idempotent."""
        try:
            self.destroy_actors()
        finally:
            if self.traffic_manager is not None:
                try:
                    self.traffic_manager.set_synchronous_mode(False)
                except Exception as e:
                    log.warning("CARLA: could not reset the traffic manager: %s", e)
                self.traffic_manager = None
            if self.original_settings is not None and self.world is not None:
                try:
                    self.world.apply_settings(self.original_settings)
                except Exception as e:
                    log.warning("CARLA: could not restore the world settings: %s", e)
                self.original_settings = None
