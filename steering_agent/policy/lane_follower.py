"""A classical lane follower, no learning: lane lines found with OpenCV in a bird's-eye
view of the road, pure-pursuit steering toward a look-ahead point on the lane centre.

Per camera (once, `BirdsEye`): a grid on the ground plane ahead of the car (car frame X
forward, Y left, metres; `steering_agent.policy.calibration` frames) is projected into
the camera with `CameraSpec.project`, giving one `cv2.remap` that turns a frame into a
top-down image (rows: distance ahead, columns: lateral offset). A large frame is first
box-averaged down (2x2 per halving) so the ground is not sampled with aliasing.

Per frame and stream (`LaneFollowerPolicy.act`):
1. the bird's-eye view of the red channel (white and yellow paint are both bright in
   it, asphalt and grass are not), smoothed;
2. marking response: a lateral top-hat, the pixel minus the brighter of its neighbours
   `LINE_HALF_GAP_M` to either side: high on a stripe narrower than a line gap, zero on
   steps (shadow borders, the edge of the asphalt) and on wide bright areas; pixels above
   a threshold relative to the local brightness (shadows scale both) are marking pixels;
3. the ego lane's lines: around last frame's fits when they were found (tracking), else
   sliding windows up from the column histogram's peaks nearest the car on each side;
   a weighted quadratic Y(X) fitted to each line's pixels; the lane width is tracked
   from frames that see both lines, so one line alone still gives the centre;
4. pure pursuit from the rear axle toward the point on the lane centre `lookahead` ahead
   (`lookahead_min_m + lookahead_s * speed`, capped), curvature 2 y / L^2, turned into
   the vehicle's steer units (`VehicleSpec.steer_for`); no line found: the last
   curvature is held;
5. speed from the learned policies' `SpeedController`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from steering_agent.policy.calibration import CANONICAL_FOV_DEG, CANONICAL_MOUNT, CameraSpec
from steering_agent.policy.control import (
    DEFAULT_TARGET_SPEED_MPS,
    SAFE_ACTION,
    SpeedController,
    VehicleSpec,
)

DX_M, DY_M = 0.15, 0.05  # bird's-eye cell: along, across
FAR_M = 26.0  # farthest ground looked at (ahead of the reference point)
HALF_WIDTH_M = 6.0  # lateral extent each side
LINE_HALF_GAP_M = 0.25  # a marking is brighter than the ground this far to both sides
DEFAULT_LANE_M = 3.5
LANE_RANGE_M = (2.4, 4.6)


class BirdsEye:
    """The top-down remap of one camera (module doc, step 1)."""

    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        # halvings so that the near ground is not sampled far more coarsely than it is seen
        self.halvings = max(0, min(3, math.floor(math.log2(max(spec.fx, 1.0) / 128.0))))
        step = 2**self.halvings
        self.xs = np.arange(0.5, FAR_M, DX_M)
        self.ys = np.arange(HALF_WIDTH_M, -HALF_WIDTH_M - 1e-9, -DY_M)  # column 0: left
        gx, gy = np.meshgrid(self.xs, self.ys, indexing="ij")
        u, v = spec.project(np.stack([gx, gy, np.zeros_like(gx)], axis=-1))
        valid = np.isfinite(u) & np.isfinite(v)
        valid &= (u >= 0) & (u <= spec.width - 1) & (v >= 0) & (v <= spec.height - 1)
        # keep the rows where the ground under the lane is seen
        centre = np.abs(self.ys) < 2.5
        rows = np.flatnonzero(valid[:, centre].mean(axis=1) > 0.6)
        if rows.size < 10:
            raise ValueError(f"lane follower: camera {spec} sees too little of the road ahead")
        lo, hi = rows[0], rows[-1] + 1
        self.xs, valid, u, v = self.xs[lo:hi], valid[lo:hi], u[lo:hi], v[lo:hi]
        vs = v[valid]
        self.crop = (max(0, int(np.floor(vs.min())) - 1) // step * step,
                     min(spec.height, -(-(int(np.ceil(vs.max())) + 2) // step) * step))  # fmt: skip
        mx = np.where(valid, (u + 0.5) / step - 0.5, -10.0)
        my = np.where(valid, (v - self.crop[0] + 0.5) / step - 0.5, -10.0)
        self.maps = cv2.convertMaps(mx.astype(np.float32), my.astype(np.float32), cv2.CV_16SC2)
        self.valid = valid
        self.shape = valid.shape
        self._levels = []
        h, w = self.crop[1] - self.crop[0], spec.width
        for _ in range(self.halvings):
            h, w = h // 2, w // 2
            self._levels.append(np.empty((h, w, 3), np.uint8))
        self._bev = np.empty((*self.shape, 3), np.uint8)

    def view(self, image: np.ndarray) -> np.ndarray:
        """The top-down RGB view (uint8, rows xs, columns ys); 0 where unseen."""
        lo, hi = self.crop
        src = image[lo:hi]
        for level in self._levels:
            h, w = level.shape[:2]
            cv2.resize(src[: 2 * h, : 2 * w], (w, h), dst=level, interpolation=cv2.INTER_AREA)
            src = level
        cv2.remap(src, *self.maps, cv2.INTER_LINEAR, dst=self._bev,
                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
        return self._bev


def marking_pixels(bev: np.ndarray, valid: np.ndarray, rel: float = 0.18, floor: float = 10.0):
    """Marking response (module doc, step 2) of the red channel of a top-down RGB view:
    (rows, cols, weights) of marking pixels."""
    b = cv2.boxFilter(bev[..., 0], cv2.CV_32F, (3, 5))  # 3 columns (0.15 m) x 5 rows (0.75 m)
    d = round(LINE_HALF_GAP_M / DY_M)
    side = np.maximum(b[:, : -2 * d], b[:, 2 * d :])
    resp = b[:, d:-d] - side
    ok = valid[:, : -2 * d] & valid[:, 2 * d :]
    hit = ok & (resp > np.maximum(floor, rel * side))
    rows, cols = np.nonzero(hit)
    return rows, cols + d, resp[rows, cols]


def right_verge_pixels(bev: np.ndarray, valid: np.ndarray, thr: float = 25.0):
    """Where grey asphalt (left) meets a coloured verge (right): (rows, cols, weights) of
    the steps of chroma (max - min of R, G, B) from low to high, going right."""
    r, g, b = cv2.split(bev)
    top, low = cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b)
    chroma = cv2.boxFilter(cv2.subtract(top, low), cv2.CV_32F, (3, 5))
    d = round(LINE_HALF_GAP_M / DY_M)
    step = chroma[:, 2 * d :] - chroma[:, : -2 * d]
    ok = valid[:, : -2 * d] & valid[:, 2 * d :]
    hit = ok & (step > thr) & (chroma[:, : -2 * d] < 0.5 * thr)
    hit[:, 1:-1] &= (step[:, 1:-1] >= step[:, :-2]) & (step[:, 1:-1] > step[:, 2:])  # the peak
    hit[:, [0, -1]] = False
    rows, cols = np.nonzero(hit)
    return rows, cols + d, step[rows, cols]


class _Lines:
    """Per-stream tracking state: the two lines' fits, the lane width, the last curvature."""

    def __init__(self) -> None:
        self.left: np.ndarray | None = None  # quadratic coefficients (np.polyval order)
        self.right: np.ndarray | None = None
        self.width = DEFAULT_LANE_M
        self.centre = np.zeros(3)  # the lane centre's fit (last found)
        self.curvature = 0.0
        self.lost = 0


class LaneFollowerPolicy:
    """The classical lane follower as a batch policy (`evaluation.vec_eval.BatchPolicy`).

    Args:
        num_envs: number of streams.
        camera: the camera (`CameraSpec` or its dict, e.g. an env's `camera_spec()`; a dict
            without intrinsics is calibrated from `fov_deg` at each frame size); None:
            the canonical (training) camera at the frames' size.
        vehicle: the car (`VehicleSpec` or its dict); None: the canonical one.
        target_speed_mps: the speed controller's target (default as the learned policies).
        lookahead_s, lookahead_min_m, lookahead_max_m: pure pursuit's look-ahead distance
            from the rear axle, min + lookahead_s * speed, at most max.
        rear_axle_m: the rear axle behind the reference point (default: half the
            wheelbase, as the embedded simulator's car).
        max_gap_s: a stream resets when its time goes backwards or jumps more than this.
        verge_m: where the right line is not seen, the asphalt's right border (grey
            asphalt to a coloured verge) stands in for it, this far outside it (the
            embedded simulator's roads: 0.35 m of asphalt beyond a 0.1 m inset line).
    """

    name = "lane_follower"

    def __init__(
        self,
        num_envs: int = 1,
        camera=None,
        vehicle=None,
        target_speed_mps: float | None = None,
        lookahead_s: float = 0.6,
        lookahead_min_m: float = 4.0,
        lookahead_max_m: float = 16.0,
        rear_axle_m: float | None = None,
        max_gap_s: float = 0.5,
        verge_m: float = 0.45,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs ({num_envs}) must be >= 1")
        self.num_envs = int(num_envs)
        if vehicle is None or isinstance(vehicle, VehicleSpec):
            self.vehicle = vehicle or VehicleSpec()
        else:
            self.vehicle = VehicleSpec.from_dict(vehicle)
        speed = target_speed_mps
        if speed is None or not np.isfinite(speed):
            speed = DEFAULT_TARGET_SPEED_MPS
        self.speed_controller = SpeedController(speed, batch=self.num_envs)
        self.lookahead = (float(lookahead_s), float(lookahead_min_m), float(lookahead_max_m))
        self.rear_axle_m = 0.5 * self.vehicle.wheelbase_m if rear_axle_m is None else rear_axle_m
        self.max_gap_s = float(max_gap_s)
        self.verge_m = float(verge_m)
        if camera is not None and not isinstance(camera, dict):
            camera = camera.to_dict()
        self._camera = camera
        self._eye: BirdsEye | None = None
        self._lines = [_Lines() for _ in range(self.num_envs)]
        self._last_stamp = np.full(self.num_envs, np.nan)
        self.last_action = np.tile(SAFE_ACTION, (self.num_envs, 1))
        self.found = np.zeros((self.num_envs, 2), bool)  # (left, right) seen in the last frame

    def _birds_eye(self, width: int, height: int) -> BirdsEye:
        eye = self._eye
        if eye is not None and (eye.spec.width, eye.spec.height) == (width, height):
            return eye
        cam = self._camera or {}
        mount = {k: float(cam.get(k, v)) for k, v in CANONICAL_MOUNT.items()}
        if "fx" in cam:
            if (int(cam["width"]), int(cam["height"])) != (width, height):
                raise ValueError(
                    f"frame {width}x{height} does not match the camera's intrinsics "
                    f"({cam['width']}x{cam['height']})"
                )
            spec = CameraSpec.from_dict({**cam, **mount})
        else:
            fov = float(cam.get("fov_deg", CANONICAL_FOV_DEG))
            spec = CameraSpec.from_fov(width, height, fov, **mount)
        self._eye = BirdsEye(spec)
        return self._eye

    def reset(self, indices=None) -> None:
        """Forget the past of all streams, or of `indices` (ints or a bool mask)."""
        rows = range(self.num_envs) if indices is None else np.arange(self.num_envs)[indices]
        for i in np.atleast_1d(np.asarray(list(rows), dtype=np.int64)):
            self._lines[i] = _Lines()
        sel = slice(None) if indices is None else np.asarray(indices)
        self._last_stamp[sel] = np.nan
        self.speed_controller.reset(None if indices is None else sel)
        self.last_action[sel] = SAFE_ACTION
        self.found[sel] = False

    def act(self, images, stamps, speeds, expert=None, active=None) -> np.ndarray:
        """Commands (N, 3) float32 (steer, throttle, brake) for uint8 RGB `images` (N, H, W, 3)
        at `stamps` (s) and `speeds` (m/s, or None); inactive rows keep their last command."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        n = self.num_envs
        stamps = np.asarray(stamps, np.float64).reshape(n)
        rows = np.arange(n) if active is None else np.flatnonzero(active)
        if rows.size == 0:
            return self.last_action.copy()
        spd = None if speeds is None else np.asarray(speeds, np.float64).reshape(-1)[rows]
        last = self._last_stamp[rows]
        dt = stamps[rows] - last
        jump = ~np.isnan(last) & ((dt < 0) | (dt > self.max_gap_s))
        if jump.any():
            self.reset(rows[jump])
        self._last_stamp[rows] = stamps[rows]
        dt = np.where(np.isnan(dt) | jump, 0.0, dt)
        eye = self._birds_eye(images.shape[2], images.shape[1])
        steer = np.empty(rows.size)
        for j, i in enumerate(rows):
            v = 0.0 if spd is None or not np.isfinite(spd[j]) else float(spd[j])
            steer[j] = self._steer(eye, images[i], self._lines[i], v, i)
        throttle, brake = self.speed_controller.update(steer, spd, dt, rows)
        self.last_action[rows, 0] = steer
        self.last_action[rows, 1] = throttle
        self.last_action[rows, 2] = brake
        return self.last_action.copy()

    def _verge(self, eye: BirdsEye, bev, st: _Lines, left):
        """The right line as the asphalt's right border moved `verge_m` in (module doc)."""
        r, c, w = right_verge_pixels(bev, eye.valid)
        x, y = eye.xs[r], eye.ys[c]
        half = np.array([0.0, 0.0, 0.5 * st.width + self.verge_m])
        guess = left - 2.0 * half if left is not None else st.centre - half
        near = x < eye.xs[0] + 12.0
        edge = _search(x[near], y[near], w[near], -1, guess)
        edge = _refine(x, y, w, edge)
        return None if edge is None else edge + np.array([0.0, 0.0, self.verge_m])

    def _steer(self, eye: BirdsEye, image, st: _Lines, speed: float, row: int) -> float:
        bev = eye.view(image)
        r, c, w = marking_pixels(bev, eye.valid)
        x, y = eye.xs[r], eye.ys[c]
        near = x < eye.xs[0] + 12.0
        half = np.array([0.0, 0.0, 0.5 * st.width])
        lines = {+1: _refine(x, y, w, st.left), -1: _refine(x, y, w, st.right)}
        tracked = {k: v is not None for k, v in lines.items()}
        for side in (+1, -1):
            if lines[side] is None:
                other = lines[-side]
                # where the other line says this one is, else last frame's lane centre
                guess = other + side * 2.0 * half if other is not None else st.centre + side * half
                lines[side] = _search(x[near], y[near], w[near], side, guess)
                if lines[side] is not None:
                    lines[side] = _refine(x, y, w, lines[side])
        painted = lines[-1] is not None
        if not painted:  # no right line: the asphalt's right border, if seen
            lines[-1] = self._verge(eye, bev, st, lines[+1])
        left, right = lines[+1], lines[-1]
        if left is not None and right is not None:
            at = eye.xs[0] + 4.0
            gap = float(np.polyval(left, at) - np.polyval(right, at))
            if LANE_RANGE_M[0] <= gap <= LANE_RANGE_M[1] and abs(gap - st.width) < 0.8:
                if painted:  # the width is learnt from painted lines only
                    st.width += 0.1 * (gap - st.width)
            elif tracked[+1] and not tracked[-1]:  # keep the line that was followed
                right = None
            elif tracked[-1] and not tracked[+1]:
                left = None
            else:  # keep the one nearer where last frame's centre puts it
                dl = abs(np.polyval(left - st.centre - half, at))
                dr = abs(np.polyval(right - st.centre + half, at))
                left, right = (left, None) if dl < dr else (None, right)
        st.left, st.right = left, right
        self.found[row] = left is not None, right is not None
        if left is None and right is None:
            st.lost += 1
            return self.vehicle.steer_for(st.curvature)
        st.lost = 0
        if left is not None and right is not None:
            centre = 0.5 * (left + right)
        elif left is not None:
            centre = left - half
        else:
            centre = right + half
        st.centre = centre
        ka, lo, hi = self.lookahead
        ld = min(max(lo + ka * speed, lo), hi)
        ax = ld - self.rear_axle_m  # target ahead of the reference point
        for _ in range(2):  # the point on the centre at distance ld from the rear axle
            yt = float(np.polyval(centre, ax))
            ax = math.sqrt(max(ld * ld - yt * yt, 1.0)) - self.rear_axle_m
        yt = float(np.polyval(centre, ax))
        curv_left = 2.0 * yt / (ld * ld)
        st.curvature = -curv_left  # VehicleSpec: + = right
        return self.vehicle.steer_for(st.curvature)


def _fit(x, y, w, min_span: float = 3.0, min_rows: int = 12):
    """Weighted quadratic Y(X) (a straight line when the pixels span too little), or None."""
    if x.size < min_rows:
        return None
    span = x.max() - x.min()
    if span < min_span or np.unique(x).size < min_rows:
        return None
    deg = 2 if span > 10.0 else 1
    coef = np.polyfit(x, y, deg, w=np.sqrt(w))
    if deg == 1:
        coef = np.concatenate(([0.0], coef))
    return coef


def _refine(x, y, w, prior):
    """The line's fit from the marking pixels around `prior` (None: lost)."""
    if prior is None:
        return None
    for margin in (0.4, 0.2):
        near = np.abs(y - np.polyval(prior, x)) < margin
        prior = _fit(x[near], y[near], w[near])
        if prior is None:
            return None
    return prior


def _search(x, y, w, side: int, guess: np.ndarray):
    """A lost line (side +1: left, -1: right) near `guess` (its expected fit): the column
    histogram of the pixels' offsets from the guess, its innermost strong peak (kerbs,
    shoulders and the other lanes' lines lie outside), then sliding windows up from it
    (they follow the line's own bend where it differs from the guess)."""
    if x.size < 8:
        return None
    res = y - np.polyval(guess, x)
    sel = np.abs(res) < 1.0
    if sel.sum() < 8:
        return None
    bins = np.arange(-1.0, 1.0 + 1e-9, 2 * DY_M)
    hist, edges = np.histogram(side * res[sel], bins, weights=w[sel])
    hist = np.convolve(hist, np.ones(3), "same")
    strong = hist >= 0.5 * hist.max()
    k = int(np.flatnonzero(strong)[0])
    while k + 1 < hist.size and hist[k + 1] > hist[k]:
        k += 1
    off = side * 0.5 * (edges[k] + edges[k + 1])
    keep = np.zeros(x.size, bool)
    step = 2.0
    for a in np.arange(x.min(), x.max() + step, step):
        win = (x >= a) & (x < a + step) & (np.abs(res - off) < 0.3)
        if win.sum() >= 4:
            keep |= win
            off = float(np.average(res[win], weights=w[win]))
    return _fit(x[keep], y[keep], w[keep])
