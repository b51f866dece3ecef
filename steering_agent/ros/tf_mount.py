"""The camera's mount read from /tf: the transform vehicle_frame -> camera_frame as the
policy's mount (x_m, y_m, height_m, pitch_deg, roll_deg, yaw_deg; the conventions of
steering_agent.policy.calibration).

The conversion is plain numpy (tested without ROS). The transform from the vehicle frame
to the camera frame (what `tf2_ros.Buffer.lookup_transform(vehicle, camera, ...)` gives)
holds the camera's origin in the vehicle frame and its axes' directions. Two kinds of
camera frame are read:

- a body frame (REP 103: X forward, Y left, Z up; the CARLA ROS bridge's
  `ego_vehicle/rgb_front`): its rotation is yaw, then pitch, then roll about the moving
  axes (Z, Y, X), which are this project's yaw (left +), pitch (down +: +pitch about Y
  tilts X down) and roll (clockwise seen from behind: about X, right-hand rule);
- an optical frame (x right, y down, z along the optical axis; names ending in
  `_optical` or `_optical_frame` by REP 103's naming): its axes are the columns of
  `CameraSpec.rotation()` directly, so it is first turned back into the body frame.

The vehicle frame is X forward, Y left, Z up with its origin on the ground (CARLA's
vehicle origin, base_footprint); `vehicle_frame_height_m` says how high above the ground
its origin is otherwise (base_link on the rear axle, for instance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONVENTIONS = ("auto", "body", "optical")
# columns: the optical frame's x (right), y (down), z (forward) in the body frame
_OPTICAL_IN_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
TF2_MISSING = (
    "camera_mount_source 'tf' needs tf2_ros, which is not importable here (the PyPI ROS "
    "wheels have none): run the agent where a ROS 2 distribution is sourced "
    "(apt install ros-$ROS_DISTRO-tf2-ros), or set camera_mount_source:=params and give "
    "camera_x_m, camera_y_m, camera_height_m, camera_pitch_deg, camera_roll_deg, "
    "camera_yaw_deg"
)


def tf2_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


def is_optical(frame: str, convention: str = "auto") -> bool:
    """Whether `frame` is read as an optical frame (`auto`: by its name)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"camera frame convention {convention!r} is not one of {CONVENTIONS}")
    if convention != "auto":
        return convention == "optical"
    name = frame.rstrip("/").lower()
    return name.endswith(("_optical", "_optical_frame"))


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation of a quaternion (normalised first)."""
    q = np.array([x, y, z, w], np.float64)
    n = float(np.linalg.norm(q))
    if not n > 1e-9 or not math.isfinite(n):
        raise ValueError(f"quaternion {list(q)} is not a rotation")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3x3 rotation matrix (for tests and for publishing a mount)."""
    r = np.asarray(r, np.float64)
    t = np.trace(r)
    if t > 0:
        s = 2.0 * math.sqrt(t + 1.0)
        return ((r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4)
    i = int(np.argmax(np.diag(r)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2.0 * math.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
    q = [0.0, 0.0, 0.0, 0.0]
    q[i] = s / 4
    q[j] = (r[j, i] + r[i, j]) / s
    q[k] = (r[k, i] + r[i, k]) / s
    q[3] = (r[k, j] - r[j, k]) / s
    return tuple(q)


def mount_from_transform(
    translation: Sequence[float],
    rotation_xyzw: Sequence[float],
    optical: bool = False,
    vehicle_frame_height_m: float = 0.0,
) -> dict[str, float]:
    """The mount (CameraSpec's x_m ... yaw_deg) of a camera frame whose pose in the
    vehicle frame is `translation` (x, y, z in m) and `rotation_xyzw` (module doc)."""
    r = quaternion_matrix(*rotation_xyzw)
    body = r @ _OPTICAL_IN_BODY.T if optical else r
    yaw = math.atan2(body[1, 0], body[0, 0])
    pitch = math.asin(max(-1.0, min(1.0, -body[2, 0])))
    roll = math.atan2(body[2, 1], body[2, 2])
    x, y, z = (float(v) for v in translation)
    return {
        "x_m": x,
        "y_m": y,
        "height_m": z + float(vehicle_frame_height_m),
        "pitch_deg": math.degrees(pitch),
        "roll_deg": math.degrees(roll),
        "yaw_deg": math.degrees(yaw),
    }


def transform_of_mount(mount: dict, optical: bool = False) -> tuple[tuple, tuple]:
    """(translation, rotation_xyzw) of a mount: the inverse of `mount_from_transform`."""
    from steering_agent.policy.calibration import CameraSpec

    spec = CameraSpec.from_fov(64, 48, 90.0, **mount)
    r = spec.rotation()  # the optical axes in the vehicle frame
    body = r if optical else r @ _OPTICAL_IN_BODY.T
    t = (mount["x_m"], mount["y_m"], mount["height_m"])
    return t, matrix_quaternion(body)


class TfMount:
    """Looks the mount up on /tf for a node (tf2_ros: Buffer and TransformListener);
    `poll()` returns the mount once the transform is there (None until then)."""

    def __init__(self, node, vehicle_frame: str, camera_frame: str, convention: str,
                 vehicle_frame_height_m: float = 0.0) -> None:  # fmt: skip
        if not tf2_available():
            raise ValueError(TF2_MISSING)
        import tf2_ros

        self.vehicle_frame, self.camera_frame = vehicle_frame, camera_frame
        self.optical = is_optical(camera_frame, convention)
        self.height_m = vehicle_frame_height_m
        self.buffer = tf2_ros.Buffer()
        self.listener = tf2_ros.TransformListener(self.buffer, node)

    def poll(self) -> dict | None:
        from rclpy.time import Time

        if not self.buffer.can_transform(self.vehicle_frame, self.camera_frame, Time()):
            return None
        t = self.buffer.lookup_transform(self.vehicle_frame, self.camera_frame, Time()).transform
        tr, q = t.translation, t.rotation
        return mount_from_transform(
            (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w), self.optical, self.height_m
        )

    def close(self) -> None:
        unregister = getattr(self.listener, "unregister", None)
        if unregister is not None:
            unregister()
