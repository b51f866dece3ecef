"""Things above the ground for the embedded simulator: roadside objects and traffic,
drawn over a `RoadRenderer` frame in perspective, with collisions and ground shadows.

Drawing: each object is a few flat-shaded world polygons (`sim.props`, `sim.vehicles`).
Per frame the polygons near the car are found by arc length (sorted, `bisect`), moved
into the camera's homogeneous pixel frame with one matrix product (the `IpmCamera`
model: car frame X forward, Y left, Z up, camera axes from `camera_axes`; back faces
found by world planes), then
`sim.scenery_draw.PolyRaster` culls back faces and polygons wholly behind the camera,
outside the view or under a pixel, clips the few that cross the near plane (or project
far outside the image), and fills the rest far to near (painter's algorithm by object
centre depth) with `cv2.fillConvexPoly`.

Collisions: the ego is a 4.7 m x 1.9 m rectangle centred on its reference point (the
road coordinates (s, lateral) the env reports), aligned with the road; objects and
vehicles have road-aligned footprints (s range, lateral range).
"""

from __future__ import annotations

import math
from bisect import bisect_left

import cv2
import numpy as np

from sim.lanes import RoadLayout
from sim.props import PolySet, populate
from sim.scenery_draw import ONE, SHIFT, ZNEAR, PolyRaster
from sim.vehicles import Traffic

BEHIND_M, AHEAD_M = 12.0, 85.0
EGO_HALF_LEN, EGO_HALF_WID = 2.35, 0.95
POOL_M = 6.0  # street light pool radius at night


class Scenery:
    """Roadside objects and traffic of one road for one camera (see the module doc).

    Build with `Scenery.build`; tests may add objects by hand with `add_box`/`add_pole`.
    """

    def __init__(
        self, road, camera, ps: PolySet, traffic: Traffic | None, sun=None, night: bool = False
    ) -> None:
        self.road, self.camera, self.night = road, camera, night
        self.sun = sun
        self._ps = ps
        self.traffic = traffic
        cam = camera
        self._axes = np.stack((cam._axis, cam._right, cam._down))  # rows: z, x, y of camera
        self._mount = np.array([cam.mount_x_m, cam.mount_y_m, cam.mount_height_m])
        self._axes_mount = self._axes @ self._mount
        self._raster = PolyRaster(cam)
        self._finalise()

    # -- construction --------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        road,
        camera,
        seed: int,
        objects: bool = True,
        traffic: bool = True,
        *,
        sun: tuple[float, float] | None = None,
        night: bool = False,
        light: float = 1.0,
        weather=None,
        traffic_density: float | None = None,
    ) -> Scenery:
        """Objects and traffic for `road`, deterministic per `seed`.

        Args:
            objects / traffic: whether to place roadside objects / moving vehicles.
            sun: (azimuth, elevation) in radians, world frame (azimuth from +x,
                counter-clockwise, towards the sun): shades faces and casts
                `ground_shadows`; None = no direct sun (no shadows).
            night: lamp heads glow, vehicles show lights, lamps light pools on the road.
            light: brightness of object colours (1 = daylight).
            weather: a `sim.weather.Weather`; when given, sets sun, night and light.
            traffic_density: vehicles per lane scale (None: drawn from the seed).
        """
        if weather is not None:
            sun = (weather.sun_azimuth_rad, weather.sun_elevation_rad) if weather.shadows else None
            night, light = weather.night, weather.light
        layout = getattr(road, "layout", None) or RoadLayout.plain(road.lane_width)
        rng = np.random.default_rng([int(seed), 0x5343454E])
        sun_dir = None
        if sun is not None:
            az, el = sun
            sun_dir = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
        ps = PolySet(road, light, sun_dir, night)
        lo, hi = float(road.s[0]) + 2.0, float(road.s[-1]) - 2.0
        if objects:
            populate(ps, layout, rng, lo, hi)
        tr = None
        if traffic:
            tr = Traffic(
                road,
                layout,
                np.random.default_rng([int(seed), 0x54524146]),
                light,
                night,
                traffic_density,
            )
        return cls(road, camera, ps, tr, sun, night)

    def add_pole(self, s: float, lateral: float, height: float, colour, half_width=0.15):
        """Test hook: a post at road coordinates (s, lateral); re-sorts the objects."""
        ps = self._ps
        x, y, h = ps.frame(s, lateral)
        n0 = len(ps.cols)
        ps.upright(x, y, h, half_width, 0.0, height, colour, (x, y, 0.5 * height), s)
        for k in range(n0, len(ps.cols)):
            ps.cols[k] = tuple(int(c) for c in colour)  # exact colour, unshaded
        ps.foot.append((s - half_width, s + half_width, lateral - half_width, lateral + half_width))
        self._finalise()

    def add_box(self, s, lateral, half_len, half_wid, height, colour):
        """Test hook: a road-aligned box at (s, lateral); re-sorts the objects."""
        ps = self._ps
        n0 = len(ps.cols)
        ps.box(s, lateral, half_len, half_wid, 0.0, height, colour)
        for k in range(n0, len(ps.cols)):
            ps.cols[k] = tuple(int(c) for c in colour)
        self._finalise()

    def _finalise(self) -> None:
        ps = self._ps
        order = np.argsort(np.asarray(ps.s, np.float64), kind="stable")
        n = order.size
        verts = np.stack(ps.verts)[order] if n else np.zeros((0, 8, 3))
        # (8, 3, n) and (3, n): per frame one (batched) matrix product each, in the
        # layout `PolyRaster.fill` takes
        self._verts = np.ascontiguousarray(verts.transpose(1, 2, 0))
        # back faces by world planes: a face is seen iff normal . camera >= normal . vertex
        nrm = np.asarray(ps.normals, np.float64).reshape(-1, 3)[order]
        self._normals = np.ascontiguousarray(nrm)
        self._plane_d = (self._normals * verts[:, 0, :]).sum(axis=1)
        self._anchors = np.asarray(ps.anchors, np.float64).reshape(-1, 3)[order]
        self._cols = [ps.cols[k] for k in order.tolist()]
        self._s_list = np.asarray(ps.s, np.float64)[order].tolist()
        foot = np.asarray(ps.foot, np.float64).reshape(-1, 4)
        foot = foot[np.argsort(foot[:, 0], kind="stable")]
        self._foot = foot
        self._foot_rows = [tuple(r) for r in foot.tolist()]  # per step a few: Python is faster
        self._foot_lo = foot[:, 0].tolist()
        self._foot_len = float((foot[:, 1] - foot[:, 0]).max()) if len(foot) else 0.0
        lamps = sorted(ps.lamps) if self.night else []
        self._lamp_s = [p[0] for p in lamps]
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        self._pools = np.array(
            [
                [(x + POOL_M * math.cos(a), y + POOL_M * math.sin(a), 0.0) for a in t]
                for _s, x, y, _z in lamps
            ]
        ).reshape(-1, 12, 3)
        self._shadows = self._make_shadows()

    # -- shadows ---------------------------------------------------------------------------

    def _make_shadows(self):
        if self.sun is None or not self._ps.casters:
            return None
        az, el = self.sun
        el = max(el, math.radians(8.0))
        away = np.array([-math.cos(az), -math.sin(az)]) / math.tan(el)  # per metre of height
        polys, ss = [], []
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        for kind, s, p in self._ps.casters:
            if kind == "crown":
                x, y, z, r = p
                c = np.array([x, y]) + z * away
                u = away / (np.linalg.norm(away) + 1e-9)
                stretch = 1.0 / math.sin(el)
                pts = (
                    c
                    + np.outer(np.cos(t) * r * stretch, u)
                    + np.outer(np.sin(t) * r, [-u[1], u[0]])
                )
            elif kind == "pole":
                x, y, z, w = p
                tip = np.array([x, y]) + z * away
                u = tip - np.array([x, y])
                nrm = np.array([-u[1], u[0]]) / (np.linalg.norm(u) + 1e-9) * 0.5 * w
                base = np.array([x, y])
                quad = np.array([base - nrm, tip - nrm, tip + nrm, base + nrm])
                pts = np.concatenate((quad, np.repeat(quad[-1:], 12, axis=0)))
            else:
                x, y, h, hl, hw, top = p
                c, si = math.cos(h), math.sin(h)
                base = np.array(
                    [
                        (x + a * c - b * si, y + a * si + b * c)
                        for a, b in ((hl, -hw), (hl, hw), (-hl, hw), (-hl, -hw))
                    ]
                )
                shift = away * min(top, 40.0 * math.tan(el))
                hull = _hull(np.concatenate((base, base + shift)))
                pts = np.concatenate((hull, np.repeat(hull[-1:], 16 - len(hull), axis=0)))
            polys.append(pts[:16])
            ss.append(s)
        order = np.argsort(ss, kind="stable")
        return np.stack(polys)[order], np.asarray(ss, np.float64)[order]

    def ground_shadows(self):
        """World polygons (M, 16, 2) of the objects' shadows on the ground (offset away
        from the sun) and their arc lengths (M,), sorted by s; None without sun."""
        return self._shadows

    # -- collisions ------------------------------------------------------------------------

    def collides(self, s: float, lateral: float, t_s: float) -> bool:
        """Whether the ego (module doc) at road coordinates (s, lateral) at time t_s
        overlaps an object or a vehicle."""
        i = bisect_left(self._foot_lo, s - EGO_HALF_LEN - self._foot_len)
        j = bisect_left(self._foot_lo, s + EGO_HALF_LEN)
        if j > i:
            s_lo, s_hi = s - EGO_HALF_LEN, s + EGO_HALF_LEN
            l_lo, l_hi = lateral - EGO_HALF_WID, lateral + EGO_HALF_WID
            for f0, f1, f2, f3 in self._foot_rows[i:j]:
                if f1 > s_lo and f0 < s_hi and f3 > l_lo and f2 < l_hi:
                    return True
        if self.traffic is not None:
            return self.traffic.overlaps(s, lateral, t_s, EGO_HALF_LEN, EGO_HALF_WID)
        return False

    # -- drawing ---------------------------------------------------------------------------

    def draw(
        self, img: np.ndarray, x: float, y: float, yaw: float, s: float, lateral: float, t_s: float
    ) -> None:
        """Draw the objects and vehicles seen by the car at world pose (x, y, yaw), road
        coordinates (s, lateral), time t_s into the RGB image `img`, in place."""
        i = bisect_left(self._s_list, s - BEHIND_M)
        j = bisect_left(self._s_list, s + AHEAD_M)
        m, off = self._to_camera(x, y, yaw)
        mk, offk = self._raster.homogeneous(m, off)
        eye = -(off @ m)  # the camera's world position (m is a rotation)
        dyn = (
            None
            if self.traffic is None
            else self.traffic.camera_polys(s, t_s, BEHIND_M, AHEAD_M, mk, offk, eye)
        )
        if j <= i and dyn is None and not self._lamp_s:
            return
        if self._lamp_s:
            self._draw_pools(img, s, m, off)
        pc = mk @ self._verts[:, :, i:j] + offk[:, None]
        front = self._normals[i:j] @ eye >= self._plane_d[i:j]
        depth = self._anchors[i:j] @ mk[0] + offk[0]
        cols = self._cols[i:j]
        if dyn is not None:
            dpc, dfront, dd, dc = dyn
            pc = np.concatenate((pc, dpc), axis=2)
            front = np.concatenate((front, dfront))
            depth = np.concatenate((depth, dd))
            cols = cols + dc
        if pc.shape[2]:
            self._raster.fill(img, pc, front, depth, cols)

    def _to_camera(self, x, y, yaw):
        """(M, off): camera coords (z, x, y) = world @ M.T + off."""
        c, s = math.cos(yaw), math.sin(yaw)
        rcar = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> car
        m = self._axes @ rcar
        off = -(m @ np.array([x, y, 0.0])) - self._axes_mount
        return m, off

    def _draw_pools(self, img, s, m, off) -> None:
        """Night: light pools of the street lamps within 45 m, added onto the road."""
        i = bisect_left(self._lamp_s, s - 5.0)
        j = bisect_left(self._lamp_s, s + 45.0)
        if j <= i:
            return
        cam = self.camera
        h, w = img.shape[:2]
        for k in range(i, j):
            pc = self._pools[k] @ m.T + off
            if (pc[:, 0] < ZNEAR).any():
                continue
            u = cam.cx + cam.fx * pc[:, 1] / pc[:, 0]
            v = cam.cy + cam.fy * pc[:, 2] / pc[:, 0]
            c0, c1 = max(int(u.min()), 0), min(int(u.max()) + 2, w)
            r0, r1 = max(int(v.min()), 0), min(int(v.max()) + 2, h)
            if c1 <= c0 or r1 <= r0:
                continue
            mask = np.zeros((r1 - r0, c1 - c0), np.uint8)
            cu, cv_ = u.mean(), v.mean()
            for frac, val in ((1.0, 1), (0.6, 2), (0.3, 3)):
                p = np.stack((cu + frac * (u - cu) - c0, cv_ + frac * (v - cv_) - r0), axis=1)
                cv2.fillConvexPoly(mask, np.rint(p * ONE).astype(np.int32), val, cv2.LINE_8, SHIFT)
            roi = img[r0:r1, c0:c1]
            cv2.add(roi, (28, 24, 14, 0), dst=roi, mask=(mask > 0).view(np.uint8))
            cv2.add(roi, (30, 27, 16, 0), dst=roi, mask=(mask > 1).view(np.uint8))
            cv2.add(roi, (30, 27, 16, 0), dst=roi, mask=(mask > 2).view(np.uint8))


def _hull(p: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise) of 2-D points (monotone chain)."""
    pts = sorted(map(tuple, p.tolist()))

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for q in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    for q in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.asarray(lower[:-1] + upper[:-1])
