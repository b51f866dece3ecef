"""A pinhole front camera on a car: intrinsics, pitch and mount, and per-pixel ground rays.

Car frame: X forward, Y left, Z up, origin at the car's reference point on the ground.
Camera frame (OpenCV): x right, y down, z along the optical axis, which is pitched down
by `pitch_deg` from horizontal.
"""

from __future__ import annotations

import math

import numpy as np


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


class IpmCamera:
    """Pinhole camera for inverse perspective mapping.

    Args:
        width, height: image size in pixels.
        fov_deg: horizontal field of view (CARLA's default camera: 90).
        mount_height_m: lens height above the ground.
        pitch_deg: downward tilt; the horizon sits `fy * tan(pitch)` pixels above centre.
        mount_x_m: lens position ahead of the car's reference point.
    """

    def __init__(
        self,
        width: int = 200,
        height: int = 66,
        fov_deg: float = 90.0,
        mount_height_m: float = 1.5,
        pitch_deg: float = 15.0,
        mount_x_m: float = 1.0,
    ) -> None:
        for name, v in (("width", width), ("height", height)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"camera {name} must be an int (pixels), got {v!r}")
            if not 16 <= v <= 4096:
                raise ValueError(f"camera {name} must be within 16..4096 pixels, got {v}")
        if not 10.0 <= fov_deg <= 170.0:
            raise ValueError(f"fov_deg must be within 10..170 degrees, got {fov_deg}")
        if not 0.2 <= mount_height_m <= 10.0:
            raise ValueError(f"mount_height_m must be within 0.2..10 m, got {mount_height_m}")
        if not 0.0 <= pitch_deg <= 60.0:
            raise ValueError(f"pitch_deg must be within 0..60 degrees (down), got {pitch_deg}")
        self.width, self.height = int(width), int(height)
        self.fov_deg = float(fov_deg)
        k = pinhole_intrinsics(self.width, self.height, fov_deg)
        self.fx, self.fy, self.cx, self.cy = k["fx"], k["fy"], k["cx"], k["cy"]
        self.mount_height_m = float(mount_height_m)
        self.mount_x_m = float(mount_x_m)
        self.pitch_rad = math.radians(pitch_deg)
        c, s = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        self._axis = np.array([c, 0.0, -s])  # optical axis in the car frame
        self._right = np.array([0.0, -1.0, 0.0])
        self._down = np.array([-s, 0.0, -c])

    @property
    def horizon_row(self) -> float:
        """Image row (may be fractional or negative) where the flat ground meets the sky."""
        return self.cy - self.fy * math.tan(self.pitch_rad)

    def camera_info(self) -> dict:
        """Pinhole intrinsics, no distortion: width, height, fx, fy, cx, cy."""
        return pinhole_intrinsics(self.width, self.height, self.fov_deg)

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
        elevation = np.arctan2(d[..., 2], np.hypot(d[..., 0], d[..., 1]))
        return gx, gy, elevation

    def project(self, points_car: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u, v) of car-frame points (N, 3); NaN for points behind."""
        p = np.atleast_2d(np.asarray(points_car, dtype=np.float64))
        rel = p - np.array([self.mount_x_m, 0.0, self.mount_height_m])
        z = rel @ self._axis
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(z > 1e-9, z, np.nan)
            u = self.cx + self.fx * (rel @ self._right) / z
            v = self.cy + self.fy * (rel @ self._down) / z
        return u, v
