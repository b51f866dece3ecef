"""A pinhole front camera on a car: intrinsics, mount, and per-pixel ground rays.

Frames and sign conventions (the same as `camera_spec()` of the envs, see `sim.contract`):

- Car frame: X forward, Y left, Z up (right-handed, REP 103), origin on the ground under
  the car's reference point. The lens sits at (`mount_x_m`, `mount_y_m`,
  `mount_height_m`): `mount_y_m` > 0 is left of the car's centre line.
- Camera frame (OpenCV): x right, y down, z along the optical axis. Pixel (u, v) has its
  centre at integer coordinates; its ray is ((u - cx) / fx, (v - cy) / fy, 1).
- Orientation: three angles applied, in this order, to a camera looking straight ahead
  along X with its image upright (the rotation camera -> car is Rz(yaw) Ry(pitch) Rx(roll),
  right-hand rule about the car's axes; that is ROS's roll-pitch-yaw of the camera body):
  1. `roll_deg` about the optical axis: positive turns the camera clockwise as seen from
     behind it (its right side goes down), so the horizon in its image rises to the right
     (tilts down to the left);
  2. `pitch_deg` about the car's Y axis: positive looks down (the horizon sits
     `fy * tan(pitch)` pixels above the principal point when roll is 0);
  3. `yaw_deg` about the car's Z axis (up): positive looks left (counter-clockwise seen
     from above), so what is straight ahead of the car appears right of the image centre.

With roll = yaw = 0 and `mount_y_m` = 0 the arithmetic is exactly that of the original
pitch-only camera, so frames rendered with the default mount stay bit-identical.
"""

from __future__ import annotations

import math

import numpy as np

from sim.limits import MOUNT_LIMITS, check_range


def pinhole_intrinsics(width: int, height: int, fov_deg: float) -> dict:
    """Intrinsics of an undistorted pinhole camera with horizontal field of view `fov_deg`,
    square pixels and the principal point at the image centre (CARLA's camera_info
    convention): a new dict of width, height, fx, fy, cx, cy."""
    fx = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    return {
        "width": width,
        "height": height,
        "fx": fx,
        "fy": fx,
        "cx": width / 2.0,
        "cy": height / 2.0,
    }


def camera_axes(
    pitch_deg: float, roll_deg: float = 0.0, yaw_deg: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The camera's optical axis, right and down directions in the car frame (module doc).

    With roll = yaw = 0 these are the pitch-only camera's vectors, computed as before.
    """
    p = math.radians(pitch_deg)
    c, s = math.cos(p), math.sin(p)
    if roll_deg == 0 and yaw_deg == 0:
        return np.array([c, 0.0, -s]), np.array([0.0, -1.0, 0.0]), np.array([-s, 0.0, -c])
    r, y = math.radians(roll_deg), math.radians(yaw_deg)
    cr, sr, cy, sy = math.cos(r), math.sin(r), math.cos(y), math.sin(y)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    rot = rz @ ry @ rx  # camera body (x forward, y left, z up) -> car
    return rot[:, 0], -rot[:, 1], -rot[:, 2]


class IpmCamera:
    """Pinhole camera for inverse perspective mapping (frames and signs: module doc).

    Args:
        width, height: image size in pixels.
        fov_deg: horizontal field of view (CARLA's default camera: 90).
        mount_height_m: lens height above the ground.
        pitch_deg: downward tilt; the horizon sits `fy * tan(pitch)` pixels above centre.
        mount_x_m: lens position ahead of the car's reference point.
        mount_y_m: lens position left of the car's centre line.
        roll_deg: clockwise turn about the optical axis as seen from behind.
        yaw_deg: turn to the left about the car's Z axis.
    """

    def __init__(
        self,
        width: int = 200,
        height: int = 66,
        fov_deg: float = 90.0,
        mount_height_m: float = 1.5,
        pitch_deg: float = 15.0,
        mount_x_m: float = 1.0,
        mount_y_m: float = 0.0,
        roll_deg: float = 0.0,
        yaw_deg: float = 0.0,
    ) -> None:
        for name, v in (("width", width), ("height", height)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"camera {name} must be an int (pixels), got {v!r}")
            if not 16 <= v <= 4096:
                raise ValueError(f"camera {name} must be within 16..4096 pixels, got {v}")
        for name, v, key in (
            ("fov_deg", fov_deg, "fov_deg"),
            ("mount_height_m", mount_height_m, "camera_height_m"),
            ("pitch_deg", pitch_deg, "camera_pitch_deg"),
            ("mount_x_m", mount_x_m, "camera_x_m"),
            ("mount_y_m", mount_y_m, "camera_y_m"),
            ("roll_deg", roll_deg, "camera_roll_deg"),
            ("yaw_deg", yaw_deg, "camera_yaw_deg"),
        ):
            check_range(name, v, *MOUNT_LIMITS[key])
        self.width, self.height = int(width), int(height)
        self.fov_deg = float(fov_deg)
        k = pinhole_intrinsics(self.width, self.height, fov_deg)
        self.fx, self.fy, self.cx, self.cy = k["fx"], k["fy"], k["cx"], k["cy"]
        self.mount_height_m = float(mount_height_m)
        self.mount_x_m = float(mount_x_m)
        self.mount_y_m = float(mount_y_m)
        self.pitch_deg, self.roll_deg, self.yaw_deg = (
            float(pitch_deg),
            float(roll_deg),
            float(yaw_deg),
        )
        self.pitch_rad = math.radians(pitch_deg)
        # optical axis, image right and image down in the car frame
        self._axis, self._right, self._down = camera_axes(pitch_deg, roll_deg, yaw_deg)

    @property
    def horizon_row(self) -> float:
        """Image row (may be fractional or negative) where the flat ground meets the sky,
        at the principal point's column (with roll, the horizon is tilted:
        `horizon_rows`)."""
        if self.roll_deg == 0:
            return self.cy - self.fy * math.tan(self.pitch_rad)
        return float(self.horizon_rows(self.cx)[0])

    def horizon_rows(self, u: np.ndarray | float) -> np.ndarray:
        """Image rows of the horizon at columns `u`: where a pixel's ray is level."""
        xn = (np.atleast_1d(np.asarray(u, np.float64)) - self.cx) / self.fx
        yn = -(self._axis[2] + xn * self._right[2]) / self._down[2]
        return self.cy + self.fy * yn

    def camera_info(self) -> dict:
        """Pinhole intrinsics, no distortion: width, height, fx, fy, cx, cy."""
        return pinhole_intrinsics(self.width, self.height, self.fov_deg)

    def spec(self) -> dict:
        """Intrinsics and mount: `camera_info()` plus x_m, y_m, height_m, pitch_deg,
        roll_deg, yaw_deg (the env contract's `camera_spec()`)."""
        return {
            **self.camera_info(),
            "x_m": self.mount_x_m,
            "y_m": self.mount_y_m,
            "height_m": self.mount_height_m,
            "pitch_deg": self.pitch_deg,
            "roll_deg": self.roll_deg,
            "yaw_deg": self.yaw_deg,
        }

    def rays(self, row_margin: int = 0) -> np.ndarray:
        """Car-frame ray directions (H + 2*margin, W, 3) of every pixel centre."""
        u = np.arange(self.width, dtype=np.float64)
        v = np.arange(-row_margin, self.height + row_margin, dtype=np.float64)
        xn = (u - self.cx) / self.fx
        yn = (v - self.cy) / self.fy
        return (
            self._axis[None, None, :]
            + xn[None, :, None] * self._right[None, None, :]
            + yn[:, None, None] * self._down[None, None, :]
        )

    def ground_points(self, row_margin: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each pixel's ray meets the ground.

        Returns:
            (X, Y, elevation): car-frame ground coordinates (NaN for pixels at or above the
            horizon) and the ray's elevation angle in radians (> 0 for sky).
        """
        d = self.rays(row_margin)
        down = -d[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(down > 1e-9, self.mount_height_m / down, np.nan)
        gx = self.mount_x_m + t * d[..., 0]
        gy = t * d[..., 1]
        if self.mount_y_m != 0:
            gy += self.mount_y_m
        elevation = np.arctan2(d[..., 2], np.hypot(d[..., 0], d[..., 1]))
        return gx, gy, elevation

    def project(self, points_car: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u, v) of car-frame points (N, 3); NaN for points behind."""
        p = np.atleast_2d(np.asarray(points_car, dtype=np.float64))
        rel = p - np.array([self.mount_x_m, self.mount_y_m, self.mount_height_m])
        z = rel @ self._axis
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(z > 1e-9, z, np.nan)
            u = self.cx + self.fx * (rel @ self._right) / z
            v = self.cy + self.fy * (rel @ self._down) / z
        return u, v
