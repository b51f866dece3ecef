"""Static roadside objects for `sim.scenery`, as world polygons: street lights, trees,
signs, buildings, fences, barriers and parked cars, placed from a seed along a road.

Every polygon has 8 vertices (x, y, z world metres; shorter ones repeat the last), a
colour, an outward normal (zero = two-sided), an anchor point (the object's centre, the
painter's-algorithm depth of all its polygons) and the arc length of its object.
Footprints (s_lo, s_hi, lat_lo, lat_hi) in road coordinates are what the ego collides with.
"""

from __future__ import annotations

import math

import numpy as np

from sim.vehicles import PALETTE, car_template, pad, place_template, role_colours


class PolySet:
    """Accumulates polygons, footprints, shadow casters, lamps (`sim.scenery`)."""

    def __init__(self, road, light: float = 1.0, sun_dir=None, night: bool = False) -> None:
        self.road, self.light, self.night = road, light, night
        self.sun = None if sun_dir is None else np.asarray(sun_dir, np.float64)
        self.verts, self.cols, self.normals, self.anchors, self.s = [], [], [], [], []
        self.emissive: list[bool] = []
        self.foot: list[tuple] = []
        self.casters: list[tuple] = []  # (kind, s, params) for ground shadows
        self.lamps: list[tuple] = []  # (s, x, y, z) of lamp heads

    def frame(self, s: float, off: float):
        """World (x, y) of road coordinates (s, off), and the road heading there."""
        x, y, h = self.road.pose_at(s)
        return x - off * math.sin(h), y + off * math.cos(h), h

    def shade(self, colour, normal, emissive: bool = False) -> tuple:
        if emissive:
            return tuple(int(c) for c in colour)
        k = 0.85
        if self.sun is not None and any(normal):
            k = 0.62 + 0.5 * max(0.0, float(np.dot(normal, self.sun)))
        return tuple(int(min(255, c * k * self.light)) for c in colour)

    def poly(self, verts, colour, normal, anchor, s, emissive=False) -> None:
        self.verts.append(pad(np.asarray(verts, np.float64)))
        n = tuple(float(v) for v in normal)
        self.normals.append(n)
        self.cols.append(self.shade(colour, n, emissive))
        self.anchors.append(anchor)
        self.s.append(s)
        self.emissive.append(emissive)

    def upright(self, x, y, h, half_w, z0, z1, colour, anchor, s, cross=True) -> None:
        """A thin vertical post: two crossed two-sided quads (along and across heading)."""
        for ang in (h, h + math.pi / 2) if cross else (h + math.pi / 2,):
            dx, dy = half_w * math.cos(ang), half_w * math.sin(ang)
            self.poly(
                [
                    (x - dx, y - dy, z0),
                    (x + dx, y + dy, z0),
                    (x + dx, y + dy, z1),
                    (x - dx, y - dy, z1),
                ],
                colour,
                (0, 0, 0),
                anchor,
                s,
            )

    def disc(self, x, y, z, r, h, colour, anchor, s, rng=None, emissive=False) -> None:
        """A crossed pair of vertical octagons (a tree crown, a lamp's glow)."""
        t = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
        wob = 1.0 if rng is None else rng.uniform(0.85, 1.15, 8)
        ca, sa = np.cos(t) * r * wob, np.sin(t) * r * wob
        for ang in (h, h + math.pi / 2):
            v = np.stack((x + ca * math.cos(ang), y + ca * math.sin(ang), z + sa), axis=1)
            self.poly(v, colour, (0, 0, 0), anchor, s, emissive)

    def box(self, s, off, half_len, half_wid, z0, z1, colour, faces=5) -> tuple:
        """An axis box aligned with the road at (s, off); returns its world centre."""
        x, y, h = self.frame(s, off)
        c, si = math.cos(h), math.sin(h)
        anchor = (x, y, 0.5 * (z0 + z1))
        corners = [
            (a, b)
            for a, b in (
                (half_len, -half_wid),
                (half_len, half_wid),
                (-half_len, half_wid),
                (-half_len, -half_wid),
            )
        ]
        w = [(x + a * c - b * si, y + a * si + b * c) for a, b in corners]
        for k in range(4):
            p, q = w[k], w[(k + 1) % 4]
            mx, my = 0.5 * (p[0] + q[0]) - x, 0.5 * (p[1] + q[1]) - y
            nn = math.hypot(mx, my)
            self.poly(
                [(p[0], p[1], z0), (q[0], q[1], z0), (q[0], q[1], z1), (p[0], p[1], z1)],
                colour,
                (mx / nn, my / nn, 0),
                anchor,
                s,
            )
        if faces > 4:
            self.poly([(px, py, z1) for px, py in w], colour, (0, 0, 1), anchor, s)
        self.foot.append((s - half_len, s + half_len, off - half_wid, off + half_wid))
        return x, y, h

    def strip(self, s0, s1, off, z0, z1, colour, seg_m=6.0, foot_w=0.0, normal_side=0):
        """A vertical band following the road at offset `off` from s0 to s1 (fences,
        rails, barriers), in segments of `seg_m`; normal_side +1/-1 = faces left/right."""
        n = max(1, math.ceil((s1 - s0) / seg_m))
        ss = np.linspace(s0, s1, n + 1)
        pts = [self.frame(float(v), off) for v in ss]
        for k in range(n):
            (xa, ya, ha), (xb, yb, _) = pts[k], pts[k + 1]
            nrm = (0, 0, 0)
            if normal_side:
                nrm = (-normal_side * math.sin(ha), normal_side * math.cos(ha), 0)
            sm = 0.5 * (ss[k] + ss[k + 1])
            anchor = (0.5 * (xa + xb), 0.5 * (ya + yb), 0.5 * (z0 + z1))
            self.poly(
                [(xa, ya, z0), (xb, yb, z0), (xb, yb, z1), (xa, ya, z1)],
                colour,
                nrm,
                anchor,
                float(sm),
            )
            if foot_w > 0:
                self.foot.append((ss[k], ss[k + 1], off - foot_w, off + foot_w))

    def parked_car(self, s, off, rng, heading_flip=False) -> None:
        tv, tn, roles, shade = car_template()
        x, y, h = self.frame(s, off)
        h = h + (math.pi if heading_flip else 0.0)
        v, n = place_template(tv, tn, np.array([x]), np.array([y]), np.array([h]))
        body = PALETTE[int(rng.integers(len(PALETTE)))]
        cols = role_colours(body, roles, shade, self.light, False)
        for k in range(v.shape[0]):
            self.verts.append(v[k])
            self.normals.append(tuple(n[k]))
            self.cols.append(cols[k])
            self.anchors.append((x, y, 0.8))
            self.s.append(s)
            self.emissive.append(False)
        self.foot.append((s - 2.2, s + 2.2, off - 0.9, off + 0.9))
        self.casters.append(("box", s, (x, y, h, 2.2, 0.9, 1.4)))


def populate(ps: PolySet, layout, rng: np.random.Generator, lo: float, hi: float) -> None:
    """Place this seed's kinds and densities of roadside objects over s in [lo, hi]."""
    right, left = layout.roadside()
    sides = [(-1, right), (1, left)]
    urban = layout.sidewalk_m > 0 or layout.kerb
    # street lights
    if rng.random() < (0.8 if urban else 0.35):
        gap = rng.uniform(25, 45)
        both = rng.random() < 0.4
        z = rng.uniform(6.5, 9.0)
        grey = (int(rng.uniform(90, 150)),) * 3
        for k, s in enumerate(np.arange(lo + rng.uniform(0, gap), hi, gap)):
            for sign, edge in sides if both else [sides[k % 2 if rng.random() < 0.3 else 0]]:
                off = edge + sign * 0.3
                x, y, h = ps.frame(s, off)
                anchor = (x, y, 0.5 * z)
                ps.upright(x, y, h, 0.09, 0.0, z, grey, anchor, s)
                arm = -sign * rng.uniform(1.5, 2.5)
                hx, hy, _ = ps.frame(s, off + arm)
                ps.poly(
                    [(x, y, z - 0.08), (hx, hy, z - 0.08), (hx, hy, z + 0.05), (x, y, z + 0.05)],
                    grey,
                    (0, 0, 0),
                    anchor,
                    s,
                )
                head = (255, 240, 190) if ps.night else (200, 200, 190)
                if ps.night:
                    ps.disc(hx, hy, z - 0.2, 0.45, h, head, anchor, s, emissive=True)
                else:
                    ps.upright(hx, hy, h, 0.3, z - 0.25, z - 0.05, head, anchor, s, cross=False)
                ps.foot.append((s - 0.15, s + 0.15, off - 0.15, off + 0.15))
                ps.casters.append(("pole", s, (x, y, z, 0.18)))
                ps.lamps.append((s, hx, hy, z))
    # trees
    for sign, edge in sides:
        dens = rng.choice([0.0, rng.uniform(1, 4), rng.uniform(4, 9)], p=[0.3, 0.4, 0.3])
        n = rng.poisson(dens * (hi - lo) / 100.0)
        for s in np.sort(rng.uniform(lo, hi, n)):
            off = edge + sign * rng.uniform(1.0, 10.0)
            x, y, h = ps.frame(s, off)
            trunk_h, r = rng.uniform(1.5, 3.5), rng.uniform(1.3, 3.2)
            green = (int(rng.uniform(30, 80)), int(rng.uniform(70, 130)), int(rng.uniform(20, 60)))
            anchor = (x, y, trunk_h)
            ps.upright(
                x, y, h, rng.uniform(0.1, 0.2), 0.0, trunk_h + 0.3 * r, (80, 60, 42), anchor, s
            )
            ps.disc(x, y, trunk_h + 0.8 * r, r, h, green, anchor, s, rng)
            ps.foot.append((s - 0.3, s + 0.3, off - 0.3, off + 0.3))
            ps.casters.append(("crown", s, (x, y, trunk_h + 0.8 * r, r)))
    # signs facing the ego's traffic
    gap = rng.uniform(70, 250)
    for s in np.arange(lo + rng.uniform(0, gap), hi, gap):
        off = right + 0.2
        x, y, h = ps.frame(s, off)
        anchor = (x, y, 1.5)
        ps.upright(x, y, h, 0.04, 0.0, 2.3, (150, 150, 150), anchor, s)
        kind = int(rng.integers(3))
        face, rim = [
            ((30, 80, 170), (235, 235, 235)),
            ((235, 235, 235), (200, 20, 20)),
            ((240, 200, 30), (30, 30, 30)),
        ][kind]
        c, si = math.cos(h), math.sin(h)
        for r, col, dx in ((0.45, rim, 0.03), (0.36, face, 0.06)):
            t = np.linspace(0, 2 * np.pi, 8 if kind == 1 else 4, endpoint=False) + np.pi / 4
            a, zz = r * np.cos(t), 2.3 + r + r * np.sin(t)
            v = np.stack((x - dx * c - a * si, y - dx * si + a * c, zz), axis=1)
            ps.poly(v, col, (-c, -si, 0), anchor, s)
        ps.foot.append((s - 0.1, s + 0.1, off - 0.1, off + 0.1))
    # buildings
    if rng.random() < (0.85 if urban else 0.3):
        for sign, edge in sides:
            if rng.random() < 0.25:
                continue
            s = lo + rng.uniform(0, 30)
            while s < hi:
                hl, hw = rng.uniform(4, 12), rng.uniform(4, 8)
                s += hl
                if rng.random() < 0.75:
                    off = edge + sign * (rng.uniform(2, 14) + hw)
                    top = rng.uniform(4, 20)
                    wall = tuple(int(v) for v in rng.uniform(110, 215, 3))
                    x, y, h = ps.box(s, off, hl, hw, 0.0, top, wall)
                    ps.casters.append(("box", s, (x, y, h, hl, hw, top)))
                    # window bands on the wall that faces the road, 3 cm proud of it
                    wo = off - sign * (hw + 0.03)
                    floors = min(4, int(top / 3.0))
                    for f in range(floors):
                        z0 = 1.0 + 3.0 * f
                        ps.strip(
                            s - 0.8 * hl,
                            s + 0.8 * hl,
                            wo,
                            z0,
                            z0 + 1.3,
                            (45, 55, 70),
                            seg_m=2 * hl,
                            normal_side=-sign,
                        )
                        ps.anchors[-1] = (x, y, 0.5 * top)
                        ps.s[-1] = s
                s += hl + rng.uniform(1, 25)
    # fences
    for sign, edge in sides:
        if rng.random() < 0.3:
            col = (120, 90, 60) if rng.random() < 0.5 else (150, 155, 160)
            top = rng.uniform(0.9, 1.6)
            s = lo + rng.uniform(0, 60)
            while s < hi:
                ln = rng.uniform(40, 200)
                ps.strip(s, min(hi, s + ln), edge + sign * 0.5, 0.05, top, col, 6.0, 0.05)
                s += ln + rng.uniform(20, 150)
    # barriers (their footing bands come from the layout)
    for lo_b, hi_b, kind in layout.side_bands():
        if kind not in ("barrier_guard_rail", "barrier_concrete", "median_concrete"):
            continue
        mid = 0.5 * (lo_b + hi_b)
        face = 1 if mid < 0 else -1  # the side facing the ego's road
        if kind == "barrier_guard_rail":
            ps.strip(lo, hi, mid, 0.45, 0.8, (175, 178, 182), 6.0, 0.1, face)
            for s in np.arange(lo, hi, 4.0):
                x, y, h = ps.frame(float(s), mid - face * 0.1)
                ps.upright(
                    x, y, h, 0.06, 0.0, 0.7, (110, 110, 115), (x, y, 0.3), float(s), cross=False
                )
        else:
            col = (170, 168, 160)
            if kind == "median_concrete":
                ps.strip(lo, hi, mid, 0.0, 0.85, col, 6.0, 0.3)
            else:
                ps.strip(lo, hi, mid + face * 0.2, 0.0, 0.85, col, 6.0, 0.3, face)
    # parked cars
    if rng.random() < (0.6 if urban else 0.25):
        gap_mean = rng.uniform(15, 80)
        s = lo + rng.uniform(0, gap_mean)
        while s < hi:
            ps.parked_car(s, right - 1.1, rng)
            s += 4.6 + rng.exponential(gap_mean)
