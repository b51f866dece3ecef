"""Polyline lookups, written once for every centre line in `sim` (pure numpy).

`Polyline` holds vertices (`x`, `y`) with their arc length `s` and answers the questions
both centre lines ask: which vertex lies at or before an arc length (`index`), which
vertex or which point on the segments lies nearest a position (`nearest_vertex`,
`nearest_on_segments`), searched in a window around last step's answer
(`search_window`). `to_frame` expresses an offset in a heading's frame. The embedded
road (`sim.road.LaneRoad`, dense, evenly spaced) and CARLA routes
(`sim.carla_route.RoutePolyline`, waypoints) are both Polylines.

Frames are right-handed, as everywhere in `sim`: x forward, y left, yaw counter-clockwise.
"""

from __future__ import annotations

from bisect import bisect_right
from functools import cached_property

import numpy as np


def arc_length(points: np.ndarray) -> np.ndarray:
    """Cumulative length (m) along `points` [N, 2], starting at 0."""
    seg = np.diff(points, axis=0)
    return np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])


def to_frame(dx: float, dy: float, cos_h: float, sin_h: float) -> tuple[float, float]:
    """An offset (dx, dy) in the frame of heading h, given cos(h) and sin(h).

    Returns (along, left): the part along the heading and the part to its left (+ = left).
    """
    return dx * cos_h + dy * sin_h, cos_h * dy - sin_h * dx


def search_window(hint: int | None, n: int, behind: int, ahead: int) -> tuple[int, int]:
    """Index range [lo, hi) of `n` items within `behind`/`ahead` of `hint` (all if None)."""
    if hint is None:
        return 0, n
    return max(hint - behind, 0), min(hint + ahead, n)


class Polyline:
    """Vertices `x`, `y` (m) and their arc length `s` (m, increasing).

    Args:
        x, y: vertex coordinates, N >= 2.
        s: arc length of each vertex; None = measured along the vertices from 0.
        ds: the spacing in `s` when it is uniform (vertex i at s[0] + i * ds): makes
            `index` O(1) arithmetic instead of a binary search.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, s: np.ndarray | None = None, ds: float | None = None
    ) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if s is None:
            s = arc_length(np.stack((self.x, self.y), axis=1))
        self.s = np.asarray(s, dtype=np.float64)
        self.ds = None if ds is None else float(ds)
        # Plain floats are much faster than numpy scalars in the per-step lookups.
        self._xl, self._yl, self._sl = self.x.tolist(), self.y.tolist(), self.s.tolist()

    def index(self, s: float) -> int:
        """The vertex at or before arc length `s` (clamped to the first and last vertex)."""
        even = self.ds is not None
        i = int((s - self.s[0]) / self.ds) if even else bisect_right(self._sl, s) - 1
        return min(max(i, 0), self.s.size - 1)

    def nearest_vertex(self, x: float, y: float, lo: int = 0, hi: int | None = None) -> int:
        """Index of the vertex nearest (x, y) among vertices lo..hi-1."""
        dx, dy = self.x[lo:hi] - x, self.y[lo:hi] - y
        return lo + int(np.argmin(dx * dx + dy * dy))

    @cached_property
    def points(self) -> np.ndarray:
        """The vertices as one array [N, 2]."""
        return np.stack((self.x, self.y), axis=1)

    @cached_property
    def seg_len(self) -> np.ndarray:
        """Length of segment i (vertex i to i + 1), [N - 1]."""
        seg = np.diff(self.points, axis=0)
        return np.hypot(seg[:, 0], seg[:, 1])

    @cached_property
    def seg_dir(self) -> np.ndarray:
        """Unit direction of segment i, [N - 1, 2]."""
        return np.diff(self.points, axis=0) / self.seg_len[:, None]

    def nearest_on_segments(
        self, x: float, y: float, lo: int = 0, hi: int | None = None
    ) -> tuple[int, float, float]:
        """The point nearest (x, y) on segments lo..hi-1.

        Returns:
            (i, t, left): its segment, its distance along that segment and the signed
            distance of (x, y) from it (+ = left of the segment's direction).
        """
        start, d = self.points[lo:hi], self.seg_dir[lo:hi]
        rel = np.array([x, y]) - start
        t = np.clip(np.einsum("ij,ij->i", rel, d), 0.0, self.seg_len[lo:hi])
        off = rel - d * t[:, None]
        k = int(np.argmin(np.einsum("ij,ij->i", off, off)))
        _, left = to_frame(off[k, 0], off[k, 1], d[k, 0], d[k, 1])
        return lo + k, float(t[k]), float(left)
