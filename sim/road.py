"""Procedural roads: a smooth centre line sampled densely, with fast lookup.

The reference line of a `LaneRoad` is the centre of the lane the car drives in. Its
cross-section is `road.layout` (`sim.lanes.RoadLayout`): by default the plain two-lane
road, where the dashed centre marking lies `lane_width / 2` to the left of the reference
line, the right edge line `lane_width / 2` to its right and the left edge line
`1.5 * lane_width` to its left; varied layouts have 1-4 lanes per direction, one-way
roads, medians and so on, always with offsets relative to the ego lane's centre.
Lateral offsets are signed, + = left (x forward, y left, yaw counter-clockwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.lanes import RoadLayout
from sim.polyline import Polyline, search_window, to_frame

MIN_RADIUS_M = 25.0
SAMPLE_SPACING_M = 0.5
LEAD_IN_M = 30.0  # straight road behind the start, so the first frames show road
LEAD_OUT_M = 150.0  # road beyond the route's end, so the camera never sees it stop
PAVED_BEYOND_EDGE_M = 0.35  # asphalt outside each edge line (plain layout)
LOOKS = ("plain", "varied")
DESIGN_LATERAL_ACCEL = 2.0  # m/s^2: varied roads' curves are no sharper than v^2 / this


def check_seed(seed: object, what: str = "seed") -> int:
    """Return `seed` as an int >= 0, or raise a clear error for any other value."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{what} must be a non-negative int, got {seed!r}; pass e.g. {what}=7")
    if seed < 0:
        raise ValueError(f"{what} must be >= 0, got {seed}")
    return int(seed)


@dataclass(frozen=True)
class CurveSegment:
    """One piece of a route: `length_m` of constant curvature (1/m, + = left)."""

    length_m: float
    curvature: float


def _random_segments(
    rng: np.random.Generator, total_m: float, min_radius_m: float = MIN_RADIUS_M
) -> list[CurveSegment]:
    """Straights, gentle and sharp curves and S-bends, steered so the road keeps going
    roughly one way (which keeps it from crossing itself). Above the default
    `min_radius_m` every radius is scaled up by the same factor (the same draws)."""
    k_r = max(1.0, min_radius_m / (MIN_RADIUS_M + 2.0))
    segs = [CurveSegment(LEAD_IN_M + rng.uniform(10.0, 40.0), 0.0)]
    done, heading = segs[0].length_m, 0.0
    while done < total_m:
        kind = rng.choice(4, p=[0.25, 0.3, 0.2, 0.25])
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if abs(heading) > math.radians(50):  # turn back towards the main direction
            sign = -math.copysign(1.0, heading)
        if kind == 0:
            new = [CurveSegment(rng.uniform(20.0, 120.0), 0.0)]
        elif kind == 1:
            radius, angle = rng.uniform(80.0, 300.0), math.radians(rng.uniform(15, 60))
            radius *= k_r
            new = [CurveSegment(radius * angle, sign / radius)]
        elif kind == 2:
            radius, angle = (
                rng.uniform(MIN_RADIUS_M + 2.0, 60.0),
                math.radians(rng.uniform(30, 110)),
            )
            radius *= k_r
            new = [CurveSegment(radius * angle, sign / radius)]
        else:
            new = []
            for k in (sign, -sign):
                radius, angle = rng.uniform(30.0, 100.0), math.radians(rng.uniform(20, 60))
                radius *= k_r
                new.append(CurveSegment(radius * angle, k / radius))
        for seg in new:
            heading += seg.length_m * seg.curvature
            done += seg.length_m
        segs.extend(new)
    return segs


class LaneRoad(Polyline):
    """A road's lane centre line, sampled every `ds` metres, with markings metadata.

    Attributes: `s` (arc length, m; the route starts at s=0 and runs to `length_m`),
    `x`, `y`, `heading` (rad), `curvature` (1/m), `lane_width` (m), `seed`, `layout`
    (the cross-section; `RoadLayout.plain(lane_width)` unless given).
    """

    def __init__(
        self,
        curvature: np.ndarray,
        ds: float,
        lane_width: float,
        length_m: float,
        seed: int,
        layout: RoadLayout | None = None,
    ) -> None:
        if not 2.5 <= lane_width <= 5.0:
            raise ValueError(f"lane_width must be within 2.5..5 m, got {lane_width}")
        self.curvature = np.asarray(curvature, dtype=np.float64)
        n = self.curvature.size
        s = np.arange(n, dtype=np.float64) * ds - LEAD_IN_M
        head = np.concatenate(([0.0], np.cumsum(self.curvature[:-1]) * ds))
        mid = head + 0.5 * self.curvature * ds  # midpoint rule keeps the curve's shape
        x = np.concatenate(([0.0], np.cumsum(np.cos(mid[:-1])) * ds))
        y = np.concatenate(([0.0], np.cumsum(np.sin(mid[:-1])) * ds))
        i0 = round(LEAD_IN_M / ds)
        super().__init__(x - x[i0], y - y[i0], s, ds)
        self.heading = head
        self.lane_width = float(lane_width)
        self.length_m = float(length_m)
        self.seed = seed
        self.layout = RoadLayout.plain(lane_width) if layout is None else layout
        if self.layout.lane_width != self.lane_width:
            raise ValueError(
                f"layout.lane_width {self.layout.lane_width} != lane_width {self.lane_width}"
            )
        self._paved = self.layout.paved_edges()
        self._hl, self._kl = self.heading.tolist(), self.curvature.tolist()
        self._abs_k = np.abs(self.curvature)

    @classmethod
    def from_segments(
        cls,
        segments: list[CurveSegment],
        length_m: float,
        lane_width: float = 3.5,
        seed: int = 0,
        layout: RoadLayout | None = None,
    ) -> LaneRoad:
        """Build a road from constant-curvature pieces, eased into each other (clothoid-like)."""
        ds = SAMPLE_SPACING_M
        need = LEAD_IN_M + length_m + LEAD_OUT_M
        kappa = np.concatenate(
            [np.full(max(1, round(g.length_m / ds)), g.curvature) for g in segments]
        )
        if kappa.size * ds < need:
            kappa = np.concatenate((kappa, np.zeros(int(need / ds) - kappa.size + 1)))
        kappa = kappa[: int(need / ds) + 1]
        win = round(12.0 / ds)  # a moving average turns steps into linear ramps
        kappa = np.convolve(
            np.pad(kappa, (win // 2, win - 1 - win // 2), mode="edge"),
            np.ones(win) / win,
            mode="valid",
        )
        return cls(kappa, ds, lane_width, length_m, seed, layout)

    @classmethod
    def generate(
        cls,
        seed: int,
        length_m: float = 1000.0,
        look: str = "plain",
        lanes_per_direction: int | None = None,
        speed_mps: float | None = None,
    ) -> LaneRoad:
        """A random road for `seed` (the same seed always gives the same road).

        look "plain": the original two-lane road. look "varied": a layout from
        `RoadLayout.from_seed(seed, lanes_per_direction, speed_mps)` and curves no
        sharper than its speed allows (radius >= speed^2 / 2 m/s^2, and >= 25 m).
        """
        seed = check_seed(seed)
        if not (isinstance(length_m, (int, float)) and 10.0 <= length_m <= 100_000.0):
            raise ValueError(f"length_m must be a number within 10..100000, got {length_m!r}")
        if look not in LOOKS:
            raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
        if look == "varied":
            layout = RoadLayout.from_seed(seed, lanes_per_direction, speed_mps)
            rng = np.random.default_rng([seed, 0x56524F44])
            r_min = max(MIN_RADIUS_M, layout.speed_mps**2 / DESIGN_LATERAL_ACCEL)
            segs = _random_segments(rng, LEAD_IN_M + length_m + LEAD_OUT_M, r_min)
            return cls.from_segments(segs, float(length_m), layout.lane_width, seed, layout)
        if lanes_per_direction is not None or speed_mps is not None:
            raise ValueError("lanes_per_direction and speed_mps need look='varied'")
        rng = np.random.default_rng([seed, 0x524F4144])
        lane_width = float(rng.uniform(3.0, 4.0))
        segs = _random_segments(rng, LEAD_IN_M + length_m + LEAD_OUT_M)
        return cls.from_segments(segs, float(length_m), lane_width, seed)

    def locate(self, x: float, y: float, hint_s: float | None = None) -> tuple[float, float, float]:
        """Project a point onto the centre line.

        Args:
            x, y: world position (m).
            hint_s: arc length near the answer (e.g. last step's); searches only a window
                around it, which is what makes per-step use cheap.

        Returns:
            (s, lateral_m, heading_rad): arc length, signed offset (+ = left) and the
            centre line's heading at s.
        """
        hint = None if hint_s is None else self.index(hint_s)
        k = self.nearest_vertex(x, y, *search_window(hint, self.s.size, 40, 80))
        h = self._hl[k]
        along, lateral = to_frame(x - self._xl[k], y - self._yl[k], math.cos(h), math.sin(h))
        return self.s[k] + along, lateral, h + self._kl[k] * along

    def pose_at(self, s: float) -> tuple[float, float, float]:
        """Centre-line (x, y, heading) at arc length `s`."""
        k = self.index(s)
        along = s - (self.s[0] + k * self.ds)
        h = self._hl[k]
        return (
            self._xl[k] + along * math.cos(h),
            self._yl[k] + along * math.sin(h),
            h + self._kl[k] * along,
        )

    def paved_edges(self) -> tuple[float, float]:
        """Lateral offsets (m, + = left) of the paved road's right and left borders."""
        return self._paved

    def off_road(self, lateral: float) -> bool:
        """Whether a car centre `lateral` m from the centre line is off the paved road."""
        right, left = self._paved
        return bool(lateral < right or lateral > left)

    def curvature_at(self, s: float) -> float:
        """Curvature (1/m, + = left) at arc length `s`."""
        return self._kl[self.index(s)]

    def max_abs_curvature(self, s0: float, s1: float) -> float:
        """Largest |curvature| over [s0, s1] (the speed planner's look-ahead)."""
        a, b = self.index(s0), self.index(s1) + 1
        return float(self._abs_k[a:b].max())

    def offset_line(self, offset_m: float) -> np.ndarray:
        """World points (N, 2) of the line `offset_m` to the left of the centre line."""
        return np.stack(
            (self.x - offset_m * np.sin(self.heading), self.y + offset_m * np.cos(self.heading)),
            axis=1,
        )
