"""The actors `SteeringAgent/CarlaDrive-v0` spawns: the ego car, its front camera (optionally
published by CARLA 0.9.16's native ROS 2 interface) and the collision and lane-invasion
sensors (`sim.carla_backend` is the env itself).

Native ROS 2 (a server started with `--ros2`), as CARLA's own server code does it
(`UActorDispatcher::RegisterActor` and `ROS2::GetActorParentRosName` in
carla-simulator/carla, read): an actor's ROS name is its `ros_name` blueprint attribute;
a sensor publishes only after `sensor.enable_for_ros()`, under its parents' ROS names,
so a camera with ros_name `rgb_front` on a car with ros_name `hero` publishes
`/carla/hero/rgb_front/image` and `/carla/hero/rgb_front/camera_info`. The server
subscribes a vehicle's `vehicle_control_cmd` only where its `role_name` is `hero` or
`ego`. So the car gets ros_name = role_name (default `hero`) and the camera ros_name =
the env's `ros_name`.
"""

from __future__ import annotations

import logging
import queue
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces

from sim.carla_session import CarlaSensorTimeoutError
from sim.contract import MAX_SPEED_OBS

log = logging.getLogger("sim.carla_backend")

NATIVE_ROLE = "hero"  # CARLA's native ROS 2 controls a vehicle of role `hero` (or `ego`)
NATIVE_CONTROLLED_ROLES = ("hero", "ego")
BRIDGE_CAMERA = "rgb_front"  # the camera's role without native ROS 2 (the ROS bridge's)
_ROS_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_ros_token(kind: str, name: str) -> str:
    """`name` if it can be one level of a ROS 2 topic name, else a ValueError naming it."""
    if not isinstance(name, str) or not _ROS_TOKEN.fullmatch(name):
        raise ValueError(
            f"{kind}={name!r}: a native ROS 2 name must be a letter then letters, digits or "
            "'_' (one level of /carla/<role_name>/<ros_name>/image)"
        )
    return name


def native_topics(role_name: str, ros_name: str) -> dict[str, str]:
    """The topics CARLA's native ROS 2 publishes for the camera: image and camera_info."""
    base = f"/carla/{role_name}/{ros_name}"
    return {"image": f"{base}/image", "camera_info": f"{base}/camera_info"}


def pick_spawn_point(count: int, spawn_point: int | None, rng: np.random.Generator) -> int:
    """Index of the ego's spawn point among the map's `count`: `spawn_point`, or one
    drawn by `rng` (the episode's seed) where it is None."""
    if count == 0:
        raise RuntimeError("the CARLA map has no spawn points")
    if spawn_point is None:
        return int(rng.integers(count))
    if not 0 <= spawn_point < count:
        raise ValueError(
            f"spawn_point={spawn_point}: this map has {count} spawn points "
            f"(0..{count - 1}); pick one in range or None"
        )
    return int(spawn_point)


def contract_spaces(height: int, width: int) -> tuple[spaces.Dict, spaces.Box]:
    """The env contract's observation space (RGB image, speed) and action space
    ([steer, throttle, brake]) for a `width` x `height` camera."""
    obs = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (height, width, 3), np.uint8),
            "speed": spaces.Box(0.0, MAX_SPEED_OBS, (1,), np.float32),
        }
    )
    act = spaces.Box(np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32))
    return obs, act


def spawn_ego(
    world: Any,
    library: Any,
    vehicle_filter: str,
    role_name: str,
    ros_name: str | None,
    transform: Any,
) -> Any:
    """The ego car (first blueprint matching `vehicle_filter`) at `transform`, with
    `role_name`; with a `ros_name` (native ROS 2 on) its own ros_name is `role_name`."""
    car_bp = library.filter(vehicle_filter)[0]
    car_bp.set_attribute("role_name", role_name)
    if ros_name is not None:
        car_bp.set_attribute("ros_name", role_name)
        if role_name not in NATIVE_CONTROLLED_ROLES:
            log.warning(
                "CARLA native ROS 2: role_name %r is not one the server subscribes control "
                "for (%s); public reports (carla#9278) also give /carla//... topics then",
                role_name,
                " or ".join(NATIVE_CONTROLLED_ROLES),
            )
    return world.spawn_actor(car_bp, transform)


def spawn_camera(
    carla: Any,
    world: Any,
    library: Any,
    vehicle: Any,
    size: tuple[int, int],
    fov_deg: float,
    mount: dict[str, float],
    ros_name: str | None,
    sink: Callable[[Any], None],
    spawned: list,
) -> Any:
    """The RGB camera on `vehicle` at `mount` (CARLA's attachment transform, see
    `sim.carla_session.carla_mount`), one image per tick to `sink`; with a `ros_name`
    it is named for and enabled on CARLA's native ROS 2 (`sensor.enable_for_ros()`).
    The camera goes into `spawned` as soon as it exists."""
    cam_bp = library.find("sensor.camera.rgb")
    for key, value in (
        ("image_size_x", size[0]),
        ("image_size_y", size[1]),
        ("fov", fov_deg),
        ("sensor_tick", 0.0),  # every tick in synchronous mode
        ("role_name", ros_name or BRIDGE_CAMERA),
    ):
        cam_bp.set_attribute(key, str(value))
    if ros_name is not None:
        cam_bp.set_attribute("ros_name", ros_name)
    tf = carla.Transform(
        carla.Location(x=mount["x"], y=mount["y"], z=mount["z"]),
        carla.Rotation(pitch=mount["pitch"], yaw=mount["yaw"], roll=mount["roll"]),
    )
    camera = world.spawn_actor(cam_bp, tf, attach_to=vehicle)
    spawned.append(camera)
    camera.listen(sink)
    if ros_name is not None:
        camera.enable_for_ros()
    return camera


def spawn_event_sensors(
    carla: Any, world: Any, library: Any, vehicle: Any, sinks: dict[str, list], spawned: list
) -> None:
    """A sensor per `sinks` key ("sensor.other.collision", ...) on `vehicle`, each event
    appended to its list (list.append is atomic: safe from CARLA's thread); each sensor
    goes into `spawned` as soon as it exists (so a later failure still destroys it)."""
    for type_id, sink in sinks.items():
        sensor = world.spawn_actor(library.find(type_id), carla.Transform(), attach_to=vehicle)
        spawned.append(sensor)
        sensor.listen(sink.append)


def wait_for_frame(frames: queue.Queue, frame: int, timeout: float, where: str) -> Any:
    """The camera image of tick `frame` from `frames` (older images are dropped).

    Raises:
        CarlaSensorTimeoutError: nothing for that tick within `timeout` s.
    """
    while True:
        try:
            image = frames.get(timeout=timeout)
        except queue.Empty:
            raise CarlaSensorTimeoutError(
                f"no camera image for frame {frame} within {timeout:g} s from {where}; is "
                "the server overloaded (try a smaller width/height) or another client "
                "ticking the world?"
            ) from None
        if image.frame >= frame:
            return image
