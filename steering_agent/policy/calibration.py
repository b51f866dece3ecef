"""A calibrated view: any camera's frame mapped onto the canonical camera the network
was trained with, and steering converted between vehicles.

Frames (as in `sim.camera`): the car frame is X forward, Y left, Z up, origin on the
ground under the car's reference point; the camera frame is OpenCV's (x right, y down,
z along the optical axis). A mount is the lens position (`x_m`, `y_m`, `height_m`) and
three angles applied in this order to a camera looking straight ahead: `roll_deg` about
the optical axis (positive: the camera turns clockwise as seen from behind it, so the
horizon in its image tilts down to the left), `pitch_deg` (positive: looking down), and
`yaw_deg` about Z (positive: looking left). Pixel (u, v) has its centre at the integer
coordinates (u, v) and the ray `((u - cx) / fx, (v - cy) / fy, 1)` in the camera frame.

`CameraCalibration` maps the real camera onto the canonical one by the ground plane:
each pixel of the network's input is a canonical-camera pixel; where its ray meets the
ground, that point is projected into the real camera (ground nearer than the real
camera sees, below or beside its frame, is shown by the nearest visible ground at the
same lateral offset); a ray above the horizon (or meeting the ground beyond `FAR_M`)
keeps its direction (a point at infinity). The map is made once per calibration and
applied per frame as one `cv2.remap` (float
maps); a real camera that sees the scene in more pixels than the input has is first
halved with exact 2x2 box averages (only the rows the map reads), so it is not sampled
with aliasing. Road pixels land where the canonical camera would have seen them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

FAR_M = 300.0  # ground beyond this is treated as at infinity (no parallax left)
# GroundMemory fills unseen ground that was in view within AHEAD_M further ahead (these
# distances tried: fine near the car, coarser far off, where a camera's view on the ground
# is wide; the ground a pinhole camera sees is one convex region)
AHEAD_M = np.concatenate((np.arange(0.25, 10.0, 0.25), np.arange(10.0, 60.0 + 1e-9, 1.0)))
# The camera the shipped checkpoints were trained with (sim.env.DriveEnv's defaults).
CANONICAL_MOUNT = {"x_m": 1.0, "y_m": 0.0, "height_m": 1.5, "pitch_deg": 15.0,
                   "roll_deg": 0.0, "yaw_deg": 0.0}  # fmt: skip
CANONICAL_FOV_DEG = 90.0


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera (no distortion) and its mount on the car (module doc)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    x_m: float = CANONICAL_MOUNT["x_m"]
    y_m: float = CANONICAL_MOUNT["y_m"]
    height_m: float = CANONICAL_MOUNT["height_m"]
    pitch_deg: float = CANONICAL_MOUNT["pitch_deg"]
    roll_deg: float = CANONICAL_MOUNT["roll_deg"]
    yaw_deg: float = CANONICAL_MOUNT["yaw_deg"]

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or not (self.fx > 0 and self.fy > 0):
            raise ValueError(
                f"camera {self.width}x{self.height} with fx={self.fx}, fy={self.fy}: size and "
                "focal lengths must be positive"
            )
        if not 0.05 <= self.height_m <= 20.0:
            raise ValueError(f"camera height_m={self.height_m} must be within 0.05..20 m")
        if not -80.0 <= self.pitch_deg <= 80.0:
            raise ValueError(f"camera pitch_deg={self.pitch_deg} must be within -80..80")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float, **mount) -> CameraSpec:
        """Square pixels, principal point at the centre, horizontal field of view."""
        if not 1.0 < fov_deg < 179.0:
            raise ValueError(f"camera fov_deg={fov_deg} must be within 1..179 degrees")
        f = width / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
        return cls(int(width), int(height), f, f, width / 2.0, height / 2.0, **mount)

    @classmethod
    def from_dict(cls, d: dict) -> CameraSpec:
        """From a dict with at least width, height, fx, fy, cx, cy (e.g. an env's
        `camera_spec()`); unknown keys are ignored, a missing mount is the canonical one."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: (int(v) if k in ("width", "height") else float(v))
                          for k, v in d.items() if k in names})  # fmt: skip
        except TypeError as e:
            raise ValueError(f"camera spec {d}: {e}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def same_mount_and_view(self, other: CameraSpec, tol: float = 1e-6) -> bool:
        """The same mount and the same field of view (horizontal and vertical angles per
        pixel of width), whatever the resolution."""
        mount = all(abs(getattr(self, k) - getattr(other, k)) <= tol for k in CANONICAL_MOUNT)
        fov = abs(self.fx / self.width - other.fx / other.width) <= tol
        square = abs(self.fy / self.fx - other.fy / other.fx) <= tol
        centred = (
            abs(self.cx / self.width - other.cx / other.width) <= tol
            and abs(self.cy / self.height - other.cy / other.height) <= tol
        )
        return mount and fov and square and centred

    def rotation(self) -> np.ndarray:
        """3x3 matrix whose columns are the camera's x (right), y (down) and z (optical
        axis) in the car frame: roll, then pitch, then yaw (module doc)."""
        r, p, y = (math.radians(a) for a in (self.roll_deg, self.pitch_deg, self.yaw_deg))
        right, down = _rolled(r)
        level = np.stack([right, down, np.array([1.0, 0.0, 0.0])], axis=1)
        # +pitch about Y (left) by the right-hand rule tilts the X axis down
        rot = _axis_angle(np.array([0.0, 0.0, 1.0]), y) @ _axis_angle(np.array([0.0, 1.0, 0.0]), p)
        return rot @ level

    def position(self) -> np.ndarray:
        return np.array([self.x_m, self.y_m, self.height_m])

    def rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Car-frame directions (..., 3) of pixel coordinates u, v."""
        xn = (np.asarray(u, np.float64) - self.cx) / self.fx
        yn = (np.asarray(v, np.float64) - self.cy) / self.fy
        cam = np.stack([xn, yn, np.ones_like(xn)], axis=-1)
        return cam @ self.rotation().T

    def project(self, points: np.ndarray, at_infinity: bool = False) -> tuple[np.ndarray, ...]:
        """Pixel coordinates of car-frame points (..., 3), or of directions with
        `at_infinity`; NaN behind the camera."""
        p = np.asarray(points, np.float64)
        rel = p if at_infinity else p - self.position()
        cam = rel @ self.rotation()
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(cam[..., 2] > 1e-9, cam[..., 2], np.nan)
            return self.cx + self.fx * cam[..., 0] / z, self.cy + self.fy * cam[..., 1] / z


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about a unit `axis` by `angle` (right-hand rule)."""
    x, y, z = axis
    c, s, t = math.cos(angle), math.sin(angle), 1.0 - math.cos(angle)
    return np.array(
        [
            [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
        ]
    )


def _rolled(roll: float) -> tuple[np.ndarray, np.ndarray]:
    """Right and down axes of a level camera looking along X, rolled by `roll` (rad)."""
    right, down = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    c, s = math.cos(roll), math.sin(roll)
    return c * right + s * down, c * down - s * right


def canonical_camera(width: int, height: int, crop_top: float = 0.0, crop_bottom: float = 0.0):
    """The canonical camera of a network input `width` x `height`: the training camera
    (90 degrees, `CANONICAL_MOUNT`) at the input's width, as tall as the input before
    the preprocessing's crop fractions; and the row of that camera the input starts at."""
    rows = round(height / (1.0 - crop_top - crop_bottom))
    spec = CameraSpec.from_fov(width, rows, CANONICAL_FOV_DEG, **CANONICAL_MOUNT)
    return spec, round(crop_top * rows)


def ground_points(camera: CameraSpec, u, v) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For pixels (u, v) of `camera`: their rays (..., 3), whether each meets the ground
    within FAR_M, and that ground point (car frame; the lens position where it does not)."""
    d = camera.rays(u, v)
    down = -d[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down > 1e-9, camera.height_m / down, np.inf)
    ground = np.isfinite(t) & (t * np.hypot(d[..., 0], d[..., 1]) <= FAR_M)
    point = camera.position() + np.where(ground, t, 0.0)[..., None] * d
    return d, ground, point


class CameraCalibration:
    """The remap from a real camera's frames to the network input (module doc).

    Args:
        real: the camera that takes the frames.
        canonical: the camera the network was trained with (at the input's width).
        out_width, out_height: the network input size.
        first_row: the canonical camera's row the input starts at (crop fractions).
        supersample: sample the real frame this many times per input pixel and box-
            average (default 1).
        prefilter: halve the real frame (exact 2x2 box averages) this many times before
            sampling it, so a large frame is not sampled with aliasing (None: as often as
            it stays at least as fine as the input, at most 3).
    """

    def __init__(
        self,
        real: CameraSpec,
        canonical: CameraSpec,
        out_width: int,
        out_height: int,
        first_row: int = 0,
        supersample: int = 1,
        prefilter: int | None = None,
    ) -> None:
        self.real, self.canonical = real, canonical
        self.out_width, self.out_height = int(out_width), int(out_height)
        if prefilter is None:
            ratio = real.fx / canonical.fx
            prefilter = min(3, max(0, math.floor(math.log2(ratio)))) if ratio > 1 else 0
        self.prefilter = k = int(prefilter)
        self.supersample = s = int(supersample)
        # input pixel (i, j) covers canonical pixels [j - 1/2, j + 1/2] x [row - 1/2, ...]:
        # s x s samples at the centres of its sub-pixels
        offs = (np.arange(s) + 0.5) / s - 0.5
        u = (np.arange(self.out_width)[:, None] + offs[None, :]).reshape(-1)
        v = (first_row + np.arange(self.out_height)[:, None] + offs[None, :]).reshape(-1)
        uu, vv = np.meshgrid(u, v)
        self.map_x, self.map_y = self.real_pixels(canonical, real, uu, vv)
        # only the rows the map reads are prefiltered (aligned to whole 2^k blocks)
        step = 2**k
        seen = self.map_y[self.map_y >= 0]
        lo = int(np.floor(seen.min())) if seen.size else 0
        hi = int(np.ceil(seen.max())) + 2 if seen.size else real.height
        lo = max(0, lo - 1) // step * step
        hi = min(real.height, -(-hi // step) * step)
        if hi - lo < step:
            lo, hi = 0, min(real.height, step) if real.height >= step else real.height
        self.rows = (lo, hi)
        # pixel centres of the reduced image: x' = (x + 1/2) / 2^k - 1/2
        mx = (self.map_x + 0.5) / step - 0.5
        my = (self.map_y - lo + 0.5) / step - 0.5
        # clamped into the reduced image: the border replicates without OpenCV's (slower)
        # BORDER_REPLICATE
        h_red, w_red = (hi - lo) // step, real.width // step
        np.clip(mx, 0.0, w_red - 1.0, out=mx)
        np.clip(my, 0.0, h_red - 1.0, out=my)
        # float maps: OpenCV's bilinear remap runs faster from them than from its own
        # fixed-point maps (0.056 against 0.088 ms for the CARLA bridge's camera at 4
        # channels, one thread; results within 2 grey levels of each other)
        self._maps = (mx.astype(np.float32), my.astype(np.float32))
        self._level_hw = []
        h, w = hi - lo, real.width
        for _ in range(k):
            h, w = h // 2, w // 2
            self._level_hw.append((h, w))
        self._buffers: dict[int, tuple[list, np.ndarray, np.ndarray]] = {}

    def _buffers_for(self, channels: int) -> tuple[list, np.ndarray, np.ndarray]:
        """(the prefilter levels, the supersampled work image, the input-sized image) for
        frames of `channels` channels, made on first use."""
        bufs = self._buffers.get(channels)
        if bufs is None:
            s = self.supersample
            levels = [np.empty((h, w, channels), np.uint8) for h, w in self._level_hw]
            work = np.empty((self.out_height * s, self.out_width * s, channels), np.uint8)
            sized = np.empty((self.out_height, self.out_width, channels), np.uint8)
            bufs = self._buffers[channels] = (levels, work, sized)
        return bufs

    @staticmethod
    def real_pixels(canonical: CameraSpec, real: CameraSpec, u, v) -> tuple[np.ndarray, ...]:
        """Where the real camera sees what canonical pixels (u, v) see (ground plane;
        directions above the horizon or beyond FAR_M at infinity)."""
        d, ground, point = ground_points(canonical, u, v)
        gx, gy = real.project(point)

        # Ground nearer than the real camera sees (below or beside its frame): the road is
        # taken to run on straight there, so such a point shows the nearest visible point
        # at the same lateral offset (lane lines keep their place instead of vanishing).
        def visible(x, y):
            return (y <= real.height - 1) & (x >= 0) & (x <= real.width - 1)

        below = ground & ~visible(gx, gy)
        if below.any():
            near = point[below]
            lo = near[:, 0].copy()
            hi = lo + FAR_M
            for _ in range(40):  # bisection on the distance ahead
                mid = 0.5 * (lo + hi)
                u, v = real.project(np.stack([mid, near[:, 1], near[:, 2]], axis=1))
                seen = visible(u, v)
                hi, lo = np.where(seen, mid, hi), np.where(seen, lo, mid)
            near[:, 0] = hi
            gx[below], gy[below] = real.project(near)
        ix, iy = real.project(d, at_infinity=True)
        mx, my = np.where(ground, gx, ix), np.where(ground, gy, iy)
        # behind the real camera: nothing to see there; clamp to the border
        bad = ~(np.isfinite(mx) & np.isfinite(my))
        mx[bad], my[bad] = -1.0, -1.0
        return mx, my

    def view(self, image: np.ndarray) -> np.ndarray:
        """The network-input-sized view (out_height, out_width, channels) of a real frame,
        in the frame's own channels: uint8 RGB (H x W x 3), or BGRA (H x W x 4, as a bgra8
        message holds it), remapped as it is. The result is this calibration's buffer,
        overwritten by the next call; its colour is converted once, at the input's size
        (`preprocess.to_color_space` takes either)."""
        h, w = image.shape[:2]
        if (w, h) != (self.real.width, self.real.height):
            raise ValueError(
                f"frame {w}x{h} does not match the calibrated camera "
                f"{self.real.width}x{self.real.height}; recalibrate for this size"
            )
        channels = image.shape[2]
        if channels not in (3, 4):
            raise ValueError(f"frame of {channels} channels: expected RGB (3) or BGRA (4)")
        levels, work, sized = self._buffers_for(channels)
        lo, hi = self.rows
        image = image[lo:hi]
        for level in levels:
            h, w = level.shape[:2]
            cv2.resize(image[: 2 * h, : 2 * w], (w, h), dst=level, interpolation=cv2.INTER_AREA)
            image = level
        if self.supersample == 1:
            cv2.remap(image, *self._maps, cv2.INTER_LINEAR, dst=sized)
        else:
            cv2.remap(image, *self._maps, cv2.INTER_LINEAR, dst=work)
            cv2.resize(work, (self.out_width, self.out_height), dst=sized,
                       interpolation=cv2.INTER_AREA)  # fmt: skip
        return sized

    def apply(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The network-input-sized RGB view (out_height, out_width, 3) of a real frame
        (`view`, a BGRA frame's colour converted at the input's size), into `out` (or a
        new array)."""
        sized = self.view(image)
        if out is None:
            out = np.empty((self.out_height, self.out_width, 3), np.uint8)
        if sized.shape[2] == 4:
            cv2.cvtColor(sized, cv2.COLOR_BGRA2RGB, dst=out)
        else:
            np.copyto(out, sized)
        return out

    def describe(self) -> str:
        r = self.real
        return (
            f"camera {r.width}x{r.height} fx={r.fx:.1f} at x={r.x_m:g} y={r.y_m:g} "
            f"z={r.height_m:g} m, pitch={r.pitch_deg:g} roll={r.roll_deg:g} "
            f"yaw={r.yaw_deg:g} deg -> canonical {self.canonical.width}x"
            f"{self.canonical.height} pitch={self.canonical.pitch_deg:g} at "
            f"{self.canonical.height_m:g} m (prefilter 1/{2**self.prefilter})"
        )


def car_motion(speed, dt, steer, vehicle) -> tuple:
    """`GroundMemory`'s motion of a car over `dt` seconds at `speed` m/s, steered by the
    command `steer` of `vehicle` (a `VehicleSpec`; CARLA's steer, + right): (metres along
    the path, radians of yaw, left positive), by the kinematic bicycle. Floats or arrays;
    NaN where the speed is."""
    ds = np.multiply(speed, dt)
    curvature = np.tan(np.multiply(steer, math.radians(vehicle.max_steer_deg)))
    curvature = curvature / vehicle.wheelbase_m
    return ds, -ds * curvature


class GroundMemory:
    """The canonical view's ground that the real camera does not see, filled from the
    frames before it, moved by the car's own motion.

    A camera pitched up or mounted high sees no ground for metres in front of the car, and
    `CameraCalibration` can only stretch the nearest ground it sees down over that gap:
    lane lines there run straight ahead of the car whatever its heading to the lane, so the
    network loses the near field's heading cue (on the camera grid the CNN+LSTM weaved
    about its lane, 0.15 m mean off centre against 0.06 m). That ground was in view a few
    frames earlier, further ahead. Per stream this keeps the last network-input view; for
    each new frame it moves the last view by the car's motion since (a ground-plane
    homography: `ds` metres along the path, `dpsi` radians of yaw, left positive) and
    copies it into the pixels of unseen ground (`mask`) of the new view: ground out of view
    now that was in view up to 60 m further ahead (`AHEAD_M`) (the car drives onto it). The
    rest of the view is the new frame's own: ground in view, the sky, and ground that no
    earlier frame can have seen (beyond the frame's top edge, or beside it all the way).

    Args:
        calibration: the calibration whose views are filled.
        first_row: the canonical camera's row that the views start at (crop).
        streams: how many independent streams (each its own past).
    """

    def __init__(self, calibration: CameraCalibration, first_row: int, streams: int = 1):
        can, real = calibration.canonical, calibration.real
        w, h = calibration.out_width, calibration.out_height
        self.size = (w, h)
        u, v = np.meshgrid(
            np.arange(w, dtype=np.float64), first_row + np.arange(h, dtype=np.float64)
        )
        _, ground, point = ground_points(can, u, v)

        def visible(p: np.ndarray) -> np.ndarray:
            x, y = real.project(p)
            return (y >= 0) & (y <= real.height - 1) & (x >= 0) & (x <= real.width - 1)

        # ground the real camera misses now but saw earlier: some point further ahead at the
        # same lateral offset is in view (the car drives onto it). Ground it never sees
        # (beyond the frame's top edge, or beside it all the way) is left to the calibration.
        unseen = ground & ~visible(point)
        ahead = point[unseen]
        earlier = np.zeros(len(ahead), bool)
        for d in AHEAD_M:
            earlier |= visible(ahead + np.array([d, 0.0, 0.0]))
        mask = np.zeros(unseen.shape, np.uint8)
        mask[unseen] = earlier
        self.mask = mask  # 1: ground out of view now, in view a little earlier
        # car-frame ground (x, y, 1) -> view pixel: K [r1 r2 -R^T c], rows shifted by the crop
        rt = can.rotation().T
        k = np.array([[can.fx, 0.0, can.cx], [0.0, can.fy, can.cy - first_row], [0.0, 0.0, 1.0]])
        self.ground_to_view = k @ np.column_stack((rt[:, 0], rt[:, 1], -rt @ can.position()))
        self._view_to_ground = np.linalg.inv(self.ground_to_view)
        self._streams = streams
        self._last = np.zeros((streams, h, w, 3), np.uint8)  # views as they come (3 or 4 ch)
        self._have = np.zeros(streams, bool)
        # only the box around the mask is warped: rows r0:r1, columns c0:c1
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        r0, r1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
        c0, c1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)
        self._box = (slice(r0, r1), slice(c0, c1))
        self._box_size = (c1 - c0, r1 - r0)
        self._box_from = np.array([[1.0, 0.0, c0], [0.0, 1.0, r0], [0.0, 0.0, 1.0]])
        self._box_mask = np.ascontiguousarray(mask[self._box])
        self._moved = np.empty((r1 - r0, c1 - c0, 3), np.uint8)

    def _for_channels(self, channels: int) -> None:
        """Views of `channels` channels from now on (RGB 3, BGRA 4): a change of layout
        starts every stream afresh."""
        if self._last.shape[3] != channels:
            h, w = self._last.shape[1:3]
            self._last = np.zeros((self._streams, h, w, channels), np.uint8)
            self._moved = np.empty((*self._moved.shape[:2], channels), np.uint8)
            self._have[:] = False

    @property
    def active(self) -> bool:
        """Whether any pixel of the view is unseen ground (else there is nothing to fill)."""
        return bool(self.mask.any())

    def reset(self, rows=None) -> None:
        """Forget the past of all streams, or of `rows` (ints, a slice or a bool mask)."""
        self._have[slice(None) if rows is None else rows] = False

    def motion_map(self, ds: float, dpsi: float) -> np.ndarray:
        """The 3x3 map from a pixel of the new view to where the same ground was in the last
        one, after the car moved `ds` metres along an arc and turned `dpsi` radians."""
        c, s = math.cos(dpsi), math.sin(dpsi)
        half = 0.5 * dpsi  # the chord of the arc points half-way through the turn
        # a ground point p in the new car frame was R(dpsi) p + chord in the last one
        move = np.array(
            [[c, -s, ds * math.cos(half)], [s, c, ds * math.sin(half)], [0.0, 0.0, 1.0]]
        )
        return self.ground_to_view @ move @ self._view_to_ground

    def fill(self, k: int, view: np.ndarray, ds: float, dpsi: float) -> None:
        """Fill stream `k`'s new `view` (uint8 H x W x 3 RGB or x 4 BGRA, in place) from its
        last one, the car having moved `ds` m and turned `dpsi` rad since (NaN: unknown,
        nothing is filled), then remember it."""
        if view.shape[2] != self._last.shape[3]:
            self._for_channels(view.shape[2])
        last = self._last[k]
        if self._have[k] and math.isfinite(ds) and math.isfinite(dpsi) and self._moved.size:
            move = self.motion_map(ds, dpsi) @ self._box_from  # box pixel -> last view pixel
            cv2.warpPerspective(last, move, self._box_size, dst=self._moved,
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
            box = view[self._box]
            cv2.copyTo(self._moved, self._box_mask, box)
        np.copyto(last, view)
        self._have[k] = True
