"""Cars as boxes for `sim.scenery`: a polygon template in the car's own frame, and the
moving traffic of one road (vehicles in the lanes beside and opposite the ego's).

Template frame: a forward, b left, z up, origin on the ground under the car's centre.
Every polygon has 8 vertices (shorter ones repeat their last vertex), an outward normal
(for back-face culling) and a colour role: body, glass, dark, headlight, taillight.
Traffic moves in arc length: vehicle i is at `s0 + dir * v * t`, wrapped over the road's
length, so a lane keeps its spacing (all of one lane share a speed; lanes differ).
"""

from __future__ import annotations

from itertools import chain

import numpy as np

K = 8  # vertices per polygon
CAR_LEN_M, CAR_WID_M = 4.4, 1.8
ROLE_BODY, ROLE_GLASS, ROLE_DARK, ROLE_HEAD, ROLE_TAIL = range(5)
PALETTE = (
    (200, 200, 205),
    (30, 30, 34),
    (150, 20, 25),
    (30, 60, 140),
    (235, 235, 230),
    (120, 125, 130),
    (40, 90, 60),
    (200, 160, 40),
    (90, 60, 40),
    (170, 175, 185),
)
FACE_SHADE = {"front": 0.8, "back": 0.75, "left": 0.9, "right": 0.9, "top": 1.1}


def pad(poly: np.ndarray) -> np.ndarray:
    """A polygon (k <= 8, 3) padded to 8 vertices by repeating its last one."""
    if len(poly) == K:
        return poly
    return np.concatenate((poly, np.repeat(poly[-1:], K - len(poly), axis=0)))


def box_faces(a0, a1, b0, b1, z0, z1):
    """The five faces (front, back, left, right, top) of an axis-aligned box in (a, b, z):
    list of (name, vertices (4, 3), outward normal)."""
    return [
        ("front", [(a1, -b0, z0), (a1, b1, z0), (a1, b1, z1), (a1, -b0, z1)], (1, 0, 0)),
        ("back", [(a0, -b0, z0), (a0, b1, z0), (a0, b1, z1), (a0, -b0, z1)], (-1, 0, 0)),
        ("left", [(a0, b1, z0), (a1, b1, z0), (a1, b1, z1), (a0, b1, z1)], (0, 1, 0)),
        ("right", [(a0, -b0, z0), (a1, -b0, z0), (a1, -b0, z1), (a0, -b0, z1)], (0, -1, 0)),
        ("top", [(a0, -b0, z1), (a1, -b0, z1), (a1, b1, z1), (a0, b1, z1)], (0, 0, 1)),
    ]


def car_template(length: float = CAR_LEN_M, width: float = CAR_WID_M):
    """(verts (T, 8, 3), normals (T, 3), roles (T,), shade (T,)) of one car."""
    la, wb = 0.5 * length, 0.5 * width
    polys, normals, roles, shade = [], [], [], []

    def add(v, n, role, sh):
        polys.append(pad(np.asarray(v, np.float64)))
        normals.append(n)
        roles.append(role)
        shade.append(sh)

    add(
        [(-la, -wb, 0.05), (la, -wb, 0.05), (la, wb, 0.05), (-la, wb, 0.05)],
        (0, 0, 0),
        ROLE_DARK,
        1.0,
    )  # the dark gap under the car (seen from far below only: cheap)
    for name, v, n in box_faces(-la, la, wb, wb, 0.3, 0.95):
        add(v, n, ROLE_BODY, FACE_SHADE[name])
        if name in ("front", "back"):  # lamps 2 cm proud of the face
            a = (la + 0.02) if name == "front" else -(la + 0.02)
            role = ROLE_HEAD if name == "front" else ROLE_TAIL
            for side in (-1, 1):
                b_in, b_out = side * (wb - 0.45), side * (wb - 0.1)
                add(
                    [(a, b_in, 0.65), (a, b_out, 0.65), (a, b_out, 0.82), (a, b_in, 0.82)],
                    n,
                    role,
                    1.0,
                )
    ca0, ca1, cw = -0.45 * length + 0.3, 0.2 * length, wb - 0.12
    for name, v, n in box_faces(ca0, ca1, cw, cw, 0.95, 1.45):
        add(v, n, ROLE_BODY if name == "top" else ROLE_GLASS, FACE_SHADE[name])
    return np.stack(polys), np.asarray(normals, np.float64), np.asarray(roles), np.asarray(shade)


def role_colours(body, roles, shade, light: float, night: bool) -> list[tuple]:
    """Colour tuples of the template's polygons for a car of colour `body`."""
    glass = (40, 48, 58)
    dark = (20, 20, 22)
    head = (255, 250, 225) if night else (215, 215, 205)
    tail = (255, 40, 30) if night else (150, 25, 25)
    base = {ROLE_BODY: body, ROLE_GLASS: glass, ROLE_DARK: dark, ROLE_HEAD: head, ROLE_TAIL: tail}
    out = []
    for r, sh in zip(roles.tolist(), shade.tolist(), strict=True):
        k = 1.0 if (night and r in (ROLE_HEAD, ROLE_TAIL)) else sh * light
        out.append(tuple(int(min(255, c * k)) for c in base[r]))
    return out


def place_template(tv, tn, cx, cy, h):
    """Template verts (T, 8, 3) and normals (T, 3) placed at world (cx, cy) with heading
    h, for n cars at once: arrays (n,) -> verts (n*T, 8, 3), normals (n*T, 3)."""
    c, s = np.cos(h)[:, None, None], np.sin(h)[:, None, None]
    a, b = tv[None, :, :, 0], tv[None, :, :, 1]
    v = np.empty((len(cx), *tv.shape))
    v[..., 0] = cx[:, None, None] + a * c - b * s
    v[..., 1] = cy[:, None, None] + a * s + b * c
    v[..., 2] = tv[None, :, :, 2]
    c2, s2 = c[:, :, 0], s[:, :, 0]
    n = np.empty((len(cx), tn.shape[0], 3))
    n[..., 0] = tn[None, :, 0] * c2 - tn[None, :, 1] * s2
    n[..., 1] = tn[None, :, 0] * s2 + tn[None, :, 1] * c2
    n[..., 2] = tn[None, :, 2]
    return v.reshape(-1, K, 3), n.reshape(-1, 3)


class Traffic:
    """Vehicles in every lane but the ego's, moving in arc length (module doc).

    Args:
        road: the `LaneRoad`; layout: its `RoadLayout`; rng: the scenery's generator.
    """

    def __init__(
        self,
        road,
        layout,
        rng: np.random.Generator,
        light: float,
        night: bool,
        density: float | None = None,
    ) -> None:
        self.road = road
        self.lo, self.hi = float(road.s[0]), float(road.s[-1])
        span = self.hi - self.lo
        self.tv, self.tn, roles, shade = car_template()
        density = float(rng.uniform(0.4, 1.6)) if density is None else density
        s0, lane, sign, speed, colours = [], [], [], [], []
        for off, d in layout.lane_centres():
            if d > 0 and abs(off) < 1e-6:
                continue  # never in the ego lane
            v = layout.speed_mps * (rng.uniform(0.6, 1.35) if d > 0 else rng.uniform(0.8, 1.15))
            at = self.lo + rng.uniform(0, 30)
            while True:
                at += CAR_LEN_M + rng.uniform(8.0, 80.0) / density
                if at > self.hi - CAR_LEN_M - 8.0:
                    break
                s0.append(at)
                lane.append(off)
                sign.append(d)
                speed.append(v)
                body = PALETTE[int(rng.integers(len(PALETTE)))]
                colours.append(role_colours(body, roles, shade, light, night))
        self.s0 = np.asarray(s0, np.float64)
        self.lane = np.asarray(lane, np.float64)
        self.sign = np.asarray(sign, np.float64)
        self.speed = np.asarray(speed, np.float64)
        self.colours = colours
        self.vel = self.sign * self.speed
        self.flip = self.sign.copy()
        self._s_first, self._inv_ds = float(road.s[0]), 1.0 / road.ds
        self._last = road.s.size - 1
        self._tv_t = np.ascontiguousarray(self.tv.transpose(1, 2, 0))  # (8, 3, T)
        self._tn_t = np.ascontiguousarray(self.tn.T)  # (3, T)
        self._plane_d = (self.tn * self.tv[:, 0, :]).sum(axis=1)  # (T,): n . first vertex
        self.span = span
        self.half_len = 0.5 * CAR_LEN_M
        self.half_wid = 0.5 * CAR_WID_M
        # vehicles by lane (a lane's offset never changes): `overlaps` tests lanes first
        self._by_lane = [
            (float(o), np.flatnonzero(self.lane == o)) for o in np.unique(self.lane).tolist()
        ]

    def __len__(self) -> int:
        return self.s0.size

    def s_at(self, t_s: float) -> np.ndarray:
        """Arc length of every vehicle at time `t_s` (wrapped over the road)."""
        return self.lo + np.mod(self.s0 + self.sign * self.speed * t_s - self.lo, self.span)

    def camera_polys(
        self,
        s: float,
        t_s: float,
        behind: float,
        ahead: float,
        m: np.ndarray,
        off: np.ndarray,
        eye: np.ndarray,
    ):
        """The vehicles within [s-behind, s+ahead] at time t_s in camera coordinates
        (world -> camera: p @ m.T + off, any linear camera frame whose first row is the
        depth): (verts (8, 3, n): vertex, coordinate, polygon; front (n,): whether each
        faces the camera at world position `eye`; depth (n,), colours), or None when
        there are none."""
        if not self.s0.size:
            return None
        st = self.lo + np.mod(self.s0 + self.vel * t_s - self.lo, self.span)
        idx = np.flatnonzero(np.abs(st - (s + 0.5 * (ahead - behind))) < 0.5 * (ahead + behind))
        if not idx.size:
            return None
        road = self.road
        st = st[idx]
        k = np.minimum(((st - self._s_first) * self._inv_ds).astype(np.int64), self._last)
        along = st - road.s[k]
        h = road.heading[k]
        c, sn = np.cos(h), np.sin(h)
        off_l = self.lane[idx]
        cx = road.x[k] + along * c - off_l * sn
        cy = road.y[k] + along * sn + off_l * c
        b = np.stack((cx, cy, np.zeros(idx.size)), axis=1) @ m.T + off
        flip = self.flip[idx]
        c, sn = c * flip, sn * flip  # oncoming cars face the other way
        n = idx.size
        rot = np.zeros((n, 3, 3))  # car template frame -> world
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -sn, sn, c
        rot[:, 2, 2] = 1.0
        a = m @ rot  # (n, 3, 3): template -> camera
        pc = a[:, None] @ self._tv_t + b[:, None, :, None]  # (n, 8, 3, T)
        # back faces in the template frame: the eye there is rot.T @ (eye - centre)
        dx, dy = eye[0] - cx, eye[1] - cy
        et = np.stack((c * dx + sn * dy, c * dy - sn * dx, np.full(n, eye[2])), axis=1)
        front = (et @ self._tn_t >= self._plane_d).reshape(-1)  # (n * T,), car-major
        t = self.tn.shape[0]
        depth = np.repeat(b[:, 0] + 0.8 * a[:, 0, 2], t)
        cols = list(chain.from_iterable(map(self.colours.__getitem__, idx.tolist())))
        pc = pc.transpose(1, 2, 0, 3).reshape(K, 3, n * t)
        return pc, front, depth, cols

    def overlaps(
        self, s: float, lateral: float, t_s: float, half_len: float, half_wid: float
    ) -> bool:
        """Whether a box (s +- half_len, lateral +- half_wid) overlaps any vehicle."""
        lat_lim, s_lim = half_wid + self.half_wid, half_len + self.half_len
        for off, idx in self._by_lane:
            if abs(off - lateral) < lat_lim:
                st = self.lo + np.mod(
                    self.s0[idx] + self.sign[idx] * self.speed[idx] * t_s - self.lo, self.span
                )
                if (np.abs(st - s) < s_lim).any():
                    return True
        return False
