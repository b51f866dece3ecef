"""Road cross-sections: how many lanes, which markings, what lies beside the asphalt.

A `RoadLayout` describes the road across its width, independent of its curve. All
offsets are lateral metres from the centre of the lane the ego drives in (+ = left), the
same convention as `LaneRoad`: the ego lane's centre is offset 0 whatever lane it is.

From right to left: roadside | barrier footing | sidewalk | kerb | shoulder (asphalt) |
right edge line | ego-direction lanes (lane 0 = rightmost) | centre marking (or a median
between two solid lines) | oncoming lanes | left edge line | shoulder | kerb | sidewalk |
barrier footing | roadside. A one-way road (`lanes_oncoming == 0`) ends at a solid left
edge line after the ego direction's lanes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LINE_KINDS = ("dashed", "solid", "double_solid", "none")
LINE_COLOURS = ("white", "yellow")
BARRIERS = ("none", "guard_rail", "concrete")
MEDIAN_KINDS = ("grass", "raised", "concrete")
KERB_M = 0.2  # kerb stone width
BARRIER_FOOT_M = {"none": 0.0, "guard_rail": 0.35, "concrete": 0.6}
ROADSIDE_CLEARANCE_M = 0.5  # gap between the last built band and where objects may stand
DOUBLE_GAP_M = 0.12  # gap between the two lines of a double solid (centre to centre ~0.27)
SPEED_RANGE_MPS = (5.0, 25.0)
PLAIN_SHOULDER_M = 0.35  # = road.PAVED_BEYOND_EDGE_M: asphalt outside each edge line


@dataclass(frozen=True)
class LaneLine:
    """One longitudinal marking: `offset_m` from the ego lane centre, its kind and colour."""

    offset_m: float
    kind: str  # "dashed" | "solid" | "double_solid" | "none"
    colour: str  # "white" | "yellow"
    role: str = "lane"  # "edge" | "lane" (between lanes of one direction) | "centre"
    worn: bool = False  # whether this line has missing stretches (see RoadLayout.wear)


def check_lanes_per_direction(value: object) -> None:
    """ValueError unless `value` is None or an int 1..4 (the `lanes_per_direction` keyword)."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 4
    ):
        raise ValueError(f"lanes_per_direction must be None or an int 1..4, got {value!r}")


@dataclass(frozen=True)
class RoadLayout:
    """A road's cross-section. See the module docstring for the order of the bands."""

    lane_width: float
    lanes_same: int = 1
    lanes_oncoming: int = 1
    ego_lane: int = 0
    centre_kind: str = "dashed"
    centre_colour: str = "white"
    median_m: float = 0.0
    shoulder_m: float = PLAIN_SHOULDER_M
    kerb: bool = False
    sidewalk_m: float = 0.0
    barrier: str = "none"
    speed_mps: float = 10.0
    # additions beyond the brief's minimum:
    median_kind: str = "grass"  # how a median (median_m > 0) looks
    lane_kind: str = "dashed"  # lines between lanes of one direction ("dashed" | "solid")
    edge_kind: str = "solid"  # outer edge lines ("solid" | "none")
    wear: float = 0.0  # fraction (0..0.6) of worn-away marking length on worn lines
    seed: int = 0  # drives where the worn stretches are

    def __post_init__(self) -> None:
        if not 2.5 <= self.lane_width <= 5.0:
            raise ValueError(f"lane_width must be within 2.5..5 m, got {self.lane_width}")
        if not 1 <= self.lanes_same <= 4:
            raise ValueError(f"lanes_same must be 1..4, got {self.lanes_same}")
        if not 0 <= self.lanes_oncoming <= 4:
            raise ValueError(f"lanes_oncoming must be 0..4, got {self.lanes_oncoming}")
        if not 0 <= self.ego_lane < self.lanes_same:
            raise ValueError(f"ego_lane must be 0..{self.lanes_same - 1}, got {self.ego_lane}")
        for name, val, allowed in (
            ("centre_kind", self.centre_kind, LINE_KINDS),
            ("centre_colour", self.centre_colour, LINE_COLOURS),
            ("lane_kind", self.lane_kind, ("dashed", "solid")),
            ("edge_kind", self.edge_kind, ("solid", "none")),
            ("barrier", self.barrier, BARRIERS),
            ("median_kind", self.median_kind, MEDIAN_KINDS),
        ):
            if val not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {val!r}")
        if self.median_m < 0 or self.shoulder_m < 0 or self.sidewalk_m < 0:
            raise ValueError("median_m, shoulder_m and sidewalk_m must be >= 0")
        if not 0.0 <= self.wear <= 0.6:
            raise ValueError(f"wear must be within 0..0.6, got {self.wear}")

    # --- offsets ---------------------------------------------------------------
    @property
    def same_right(self) -> float:
        """Offset of the ego direction's right edge line."""
        return -(self.ego_lane + 0.5) * self.lane_width

    @property
    def same_left(self) -> float:
        """Offset of the ego direction's left border (centre line, or median's right side)."""
        return (self.lanes_same - self.ego_lane - 0.5) * self.lane_width

    @property
    def far_left(self) -> float:
        """Offset of the left edge line of the whole carriageway."""
        if self.lanes_oncoming == 0:
            return self.same_left
        # one product, so the plain layout gives exactly 1.5 * lane_width
        n = self.lanes_same - self.ego_lane - 0.5 + self.lanes_oncoming
        return n * self.lane_width + self.median_m

    def lane_centres(self) -> list[tuple[float, int]]:
        """(offset from the ego lane centre, +1 same direction / -1 oncoming), right to left."""
        w = self.lane_width
        out = [((i - self.ego_lane) * w, 1) for i in range(self.lanes_same)]
        base = self.same_left + self.median_m
        out += [(base + (j + 0.5) * w, -1) for j in range(self.lanes_oncoming)]
        return out

    def lines(self) -> list[LaneLine]:
        """Every longitudinal line, right to left (kind "none" where nothing is painted)."""
        w, worn = self.lane_width, self.wear > 0.0
        out = [LaneLine(self.same_right, self.edge_kind, "white", "edge")]
        for i in range(1, self.lanes_same):
            out.append(LaneLine(self.same_right + i * w, self.lane_kind, "white", "lane", worn))
        if self.lanes_oncoming == 0:
            out.append(
                LaneLine(
                    self.same_left,
                    self.edge_kind,
                    "yellow" if self.centre_colour == "yellow" else "white",
                    "edge",
                )
            )
            return out
        if self.median_m > 0.0:
            out.append(LaneLine(self.same_left, "solid", self.centre_colour, "centre"))
            out.append(
                LaneLine(self.same_left + self.median_m, "solid", self.centre_colour, "centre")
            )
        else:
            out.append(
                LaneLine(
                    self.same_left,
                    self.centre_kind,
                    self.centre_colour,
                    "centre",
                    worn and self.centre_kind == "dashed",
                )
            )
        base = self.same_left + self.median_m
        for j in range(1, self.lanes_oncoming):
            out.append(LaneLine(base + j * w, self.lane_kind, "white", "lane", worn))
        out.append(LaneLine(self.far_left, self.edge_kind, "white", "edge"))
        return out

    def ego_lane_bounds(self) -> tuple[float, float]:
        """Offsets of the ego lane's right and left lines: (-w/2, +w/2)."""
        return -0.5 * self.lane_width, 0.5 * self.lane_width

    def paved_edges(self) -> tuple[float, float]:
        """Right and left border of the asphalt (edge lines plus shoulders)."""
        return self.same_right - self.shoulder_m, self.far_left + self.shoulder_m

    def side_bands(self) -> list[tuple[float, float, str]]:
        """Non-asphalt bands beside and between the carriageways: (lo, hi, kind) with
        kind "median_<median_kind>", "kerb", "sidewalk" or "barrier_<barrier>"."""
        out: list[tuple[float, float, str]] = []
        if self.median_m > 0.0 and self.lanes_oncoming > 0:
            out.append(
                (self.same_left, self.same_left + self.median_m, f"median_{self.median_kind}")
            )
        pr, pl = self.paved_edges()
        for sign, edge in ((-1.0, pr), (1.0, pl)):
            at = edge
            for width, kind in (
                (KERB_M if self.kerb else 0.0, "kerb"),
                (self.sidewalk_m, "sidewalk"),
                (BARRIER_FOOT_M[self.barrier], f"barrier_{self.barrier}"),
            ):
                if width > 0.0:
                    nxt = at + sign * width
                    out.append((min(at, nxt), max(at, nxt), kind))
                    at = nxt
        return out

    def built_edges(self) -> tuple[float, float]:
        """Right and left border of everything built (asphalt, kerbs, sidewalks, barriers)."""
        extra = (KERB_M if self.kerb else 0.0) + self.sidewalk_m + BARRIER_FOOT_M[self.barrier]
        pr, pl = self.paved_edges()
        return pr - extra, pl + extra

    def roadside(self) -> tuple[float, float]:
        """Offsets beyond shoulder/kerb/sidewalk/barrier where objects may stand (r < 0 < l)."""
        br, bl = self.built_edges()
        return br - ROADSIDE_CLEARANCE_M, bl + ROADSIDE_CLEARANCE_M

    def wear_stretches(self, line_index: int, s0: float, s1: float) -> np.ndarray:
        """(K, 2) arc-length intervals [a, b) over [s0, s1] where worn line `line_index`
        is missing (empty when the line is not worn). Deterministic per seed and line."""
        line = self.lines()[line_index]
        if not line.worn or self.wear <= 0.0:
            return np.zeros((0, 2))
        rng = np.random.default_rng([self.seed, 0x57454152, line_index])
        mean_gap = 20.0  # metres of missing marking per stretch, on average
        n = math.ceil((s1 - s0) * self.wear / mean_gap) + 1
        starts = np.sort(rng.uniform(s0, s1, n))
        lens = rng.uniform(0.4, 1.6, n) * mean_gap
        return np.stack((starts, starts + lens), axis=1)

    # --- constructors ------------------------------------------------------------
    @classmethod
    def plain(cls, lane_width: float) -> RoadLayout:
        """Exactly the original road: one lane each way, dashed white centre, solid edges."""
        return cls(lane_width=float(lane_width))

    @classmethod
    def from_seed(
        cls, seed: int, lanes_per_direction: int | None = None, speed_mps: float | None = None
    ) -> RoadLayout:
        """A varied, deterministic layout for `seed`. `lanes_per_direction` (1..4) fixes the
        ego direction's lane count (and the oncoming one on two-way roads); `speed_mps`
        (5..25) fixes the road's speed, otherwise drawn to suit the road's size."""
        check_lanes_per_direction(lanes_per_direction)
        if speed_mps is not None and not (
            isinstance(speed_mps, (int, float, np.floating))
            and not isinstance(speed_mps, bool)
            and SPEED_RANGE_MPS[0] <= speed_mps <= SPEED_RANGE_MPS[1]
        ):
            raise ValueError(f"speed_mps must be None or within 5..25 m/s, got {speed_mps!r}")
        r = np.random.default_rng([int(seed), 0x4C414E45])
        n = (
            int(lanes_per_direction)
            if lanes_per_direction
            else int(r.choice(4, p=[0.35, 0.35, 0.18, 0.12]) + 1)
        )
        one_way = bool(r.random() < (0.15 if n == 1 else 0.3))
        oncoming = 0 if one_way else n
        ego_lane = int(r.integers(0, n))
        # bigger roads are faster on average
        if speed_mps is None:
            lo, hi = {1: (5.0, 20.0), 2: (8.0, 25.0), 3: (12.0, 25.0), 4: (14.0, 25.0)}[n]
            speed = float(r.uniform(lo, hi))
        else:
            r.uniform()  # keep the draws that follow the same
            speed = float(speed_mps)
        lane_width = float(r.uniform(2.7, 3.8))
        centre_kind, centre_colour = [
            ("double_solid", "yellow"),
            ("solid", "yellow"),
            ("dashed", "yellow"),
            ("solid", "white"),
            ("dashed", "white"),
            ("double_solid", "white"),
            ("none", "white"),
        ][int(r.choice(7, p=[0.25, 0.12, 0.1, 0.1, 0.28, 0.05, 0.1]))]
        median = float(r.uniform(1.0, 4.0)) if (oncoming and n >= 2 and r.random() < 0.4) else 0.0
        urban = bool(r.random() < (0.6 if speed < 15.0 else 0.2))
        kerb = urban or bool(r.random() < 0.15)
        sidewalk = float(r.uniform(1.2, 3.0)) if urban and r.random() < 0.8 else 0.0
        barrier = "none"
        if sidewalk == 0.0 and r.random() < (0.5 if speed >= 15.0 else 0.2):
            barrier = "guard_rail" if r.random() < 0.6 else "concrete"
        shoulder = float(r.uniform(0.2, 0.5) if urban else r.uniform(0.3, 2.5))
        return cls(
            lane_width=lane_width,
            lanes_same=n,
            lanes_oncoming=oncoming,
            ego_lane=ego_lane,
            centre_kind=centre_kind,
            centre_colour=centre_colour,
            median_m=median,
            shoulder_m=shoulder,
            kerb=kerb,
            sidewalk_m=sidewalk,
            barrier=barrier,
            speed_mps=speed,
            median_kind=str(r.choice(MEDIAN_KINDS, p=[0.6, 0.25, 0.15])),
            lane_kind="solid" if r.random() < 0.05 else "dashed",
            edge_kind="none" if r.random() < 0.1 else "solid",
            wear=float(r.uniform(0.05, 0.4)) if r.random() < 0.35 else 0.0,
            seed=int(seed),
        )
