"""What the renderer draws across a road: bands and markings of its `RoadLayout`.

`CrossSection` turns a layout and a style into offset lines (sampled along the road once,
at construction), filled bands and painted lines with their dash and wear pieces, and
draws them into a top-down patch. The plain layout draws exactly what the original
two-lane renderer drew, call for call.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import cv2
import numpy as np

from sim.lanes import DOUBLE_GAP_M
from sim.road import LaneRoad

SHIFT = 3  # fixed-point bits for cv2 drawing: sub-pixel accurate edges
MARKING_WIDTH_M = 0.14
EDGE_INSET_M = 0.1  # edge lines are painted this far inside the carriageway's border
YELLOW = (226, 184, 48)
BAND_COLOURS = {  # RGB before the sun gain
    "kerb": (196, 194, 188),
    "sidewalk": (162, 160, 154),
    "barrier_guard_rail": (112, 106, 96),
    "barrier_concrete": (176, 174, 166),
    "median_raised": (150, 148, 140),
    "median_concrete": (168, 166, 158),
}


def scale(c: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, v * k)) for v in c)


def mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=False))


@dataclass
class _Line:
    """One painted line as drawn: offset rows, colour, and its pieces along the road."""

    rows: list[int]  # rows of the offset array: 1 (single) or 2 (double); far uses far_row
    far_row: int
    colour: str
    dashed: bool
    double: bool
    start_s: list[float]  # piece starts (arc length), sorted
    end_s: list[float]  # piece ends
    a: list[int]  # piece start / end sample indices
    b: list[int]
    whole: bool  # a single piece over the whole road (no wear): no piece lookup needed
    duty: float  # fraction of length painted (dashes and wear), for the far mip colour


class CrossSection:
    """The drawable cross-section of `road.layout` in `style` (a `RoadStyle`).

    Args:
        road: the road (its layout and samples).
        style: the look.
        rng: the dash generator (the renderer's; the first dashed line draws from it
            exactly as the original renderer did, so later draws from it stay the same).
    """

    def __init__(self, road: LaneRoad, style, rng: np.random.Generator) -> None:
        lay, st = road.layout, style
        self.road, self.style = road, st
        offsets: list[float] = []

        def row(o: float) -> int:
            offsets.append(o)
            return len(offsets) - 1

        pr, pl = lay.paved_edges()
        br, bl = lay.built_edges()
        self.paved = (row(pr), row(pl))
        self.verge = (row(br - st.shoulder_m), row(bl + st.shoulder_m))
        self.bands: list[tuple[int, int, str]] = []
        for lo, hi, kind in lay.side_bands():
            if kind == "median_grass" or kind.startswith("median"):
                continue
            self.bands.append((row(lo), row(hi), kind))
        self.medians = [
            (row(lo), row(hi), k) for lo, hi, k in lay.side_bands() if k.startswith("median")
        ]
        self.lines: list[_Line] = []
        first_dashed = True
        period = st.dash_len_m + st.dash_gap_m
        s0, s1 = road.s[0], road.s[-1]
        for k, ln in enumerate(lay.lines()):
            if ln.kind == "none" or (ln.role == "edge" and not st.edge_lines):
                continue
            off = ln.offset_m
            if ln.role == "edge":
                off += EDGE_INSET_M if off < 0 else -EDGE_INSET_M
            double = ln.kind == "double_solid"
            if double:
                h = 0.5 * (MARKING_WIDTH_M + DOUBLE_GAP_M)
                rows = [row(off - h), row(off + h)]
                far_row = row(off)
            else:
                rows = [row(off)]
                far_row = rows[0]
            gaps = lay.wear_stretches(k, s0, s1)
            if ln.kind == "dashed":
                r = rng if first_dashed else np.random.default_rng([road.seed, 0x44415348, k])
                first_dashed = False
                starts = np.arange(s0, s1 - period, period)
                starts = starts[r.random(starts.size) < st.dash_keep]
                ends = starts + st.dash_len_m
                if gaps.size:
                    hit = np.zeros(starts.size, bool)
                    for g0, g1 in gaps:
                        hit |= (starts < g1) & (ends > g0)
                    starts, ends = starts[~hit], ends[~hit]
                a = ((starts - s0) / road.ds).astype(np.int64)
                b = a + max(1, round(st.dash_len_m / road.ds))
                duty = st.dash_keep * st.dash_len_m / period
            else:
                starts, ends = self._solid_pieces(gaps, s0, s1)
                a = ((starts - s0) / road.ds).astype(np.int64)
                b = np.minimum(((ends - s0) / road.ds).astype(np.int64), road.s.size - 1)
                duty = 1.0
            if gaps.size:
                duty *= max(0.0, 1.0 - float(np.sum(gaps[:, 1] - gaps[:, 0])) / (s1 - s0))
            self.lines.append(
                _Line(
                    rows,
                    far_row,
                    ln.colour,
                    ln.kind == "dashed",
                    double,
                    starts.tolist(),
                    ends.tolist(),
                    a.tolist(),
                    b.tolist(),
                    ln.kind != "dashed" and not gaps.size,
                    duty,
                )
            )
        self.offsets = offsets
        # other layouts sample the far patch half as densely (chords of 4 m: a curve's
        # sagitta stays far under its pixels); the plain one as it always did
        self._far_mul = 1 if lay == lay.plain(road.lane_width) else 2
        self.pts = np.stack([road.offset_line(o) for o in offsets])  # (K, N, 2)
        self._cache: dict = {}

    @staticmethod
    def _solid_pieces(gaps: np.ndarray, s0: float, s1: float) -> tuple[np.ndarray, np.ndarray]:
        """The stretches of [s0, s1] outside the (sorted, maybe overlapping) `gaps`."""
        starts, ends, at = [], [], s0
        for g0, g1 in gaps:
            if g0 > at:
                starts.append(at)
                ends.append(min(g0, s1))
            at = max(at, g1)
        if at < s1:
            starts.append(at)
            ends.append(s1)
        return np.array(starts), np.array(ends)

    def colours(self, res: float) -> dict:
        """Fill colours for a patch of resolution `res` (cached: they never change)."""
        if res in self._cache:
            return self._cache[res]
        st = self.style
        asphalt = scale(st.asphalt, st.sun)
        thick = max(1, round(MARKING_WIDTH_M / res))
        cover = min(1.0, MARKING_WIDTH_M / (thick * res))
        c = {
            "grass": scale(st.grass, st.sun),
            "shoulder": scale(st.shoulder, st.sun),
            "asphalt": asphalt,
            "thick": thick,
            "median_grass": scale(st.grass, st.sun),
        }
        for name, rgb in BAND_COLOURS.items():
            c[name] = scale(rgb, st.sun)
        for name, rgb in (("white", st.paint), ("yellow", YELLOW)):
            paint = mix(asphalt, scale(rgb, st.sun), st.paint_alpha)
            # a line thinner than a pixel is drawn 1 px wide in a colour mixed by coverage
            c[name] = mix(asphalt, paint, cover)
            c[name + "_double"] = mix(asphalt, paint, min(1.0, 2.0 * cover))
        self._cache[res] = c
        return c

    def draw(
        self, colour: np.ndarray, aff: np.ndarray, s_lo: float, s_hi: float, res: float, fine: bool
    ) -> None:
        """Rasterise the road between arc lengths `s_lo` and `s_hi` into `colour`."""
        road, st = self.road, self.style
        c = self.colours(res)
        step = 1 if res < 0.05 else (2 if res < 0.2 else 4)
        if not fine:
            step *= self._far_mul
        a = road.index(s_lo) // step * step
        b = road.index(s_hi) + 1
        pts = (self.pts[:, a:b:step] @ aff[:, :2].T + aff[:, 2]).astype(np.int32)
        # cv2 fills 3-channel images far faster than numpy's broadcast assignment
        cv2.rectangle(colour, (0, 0), (colour.shape[1], colour.shape[0]), c["grass"], -1)
        if st.verge != "grass":
            band = np.concatenate((pts[self.verge[0]], pts[self.verge[1]][::-1]))
            cv2.fillPoly(colour, [band], c["shoulder"], cv2.LINE_8, SHIFT)
        for lo, hi, kind in self.bands:
            cv2.fillPoly(
                colour, [np.concatenate((pts[lo], pts[hi][::-1]))], c[kind], cv2.LINE_8, SHIFT
            )
        band = np.concatenate((pts[self.paved[0]], pts[self.paved[1]][::-1]))
        cv2.fillPoly(colour, [band], c["asphalt"], cv2.LINE_8, SHIFT)
        for lo, hi, kind in self.medians:
            cv2.fillPoly(
                colour, [np.concatenate((pts[lo], pts[hi][::-1]))], c[kind], cv2.LINE_8, SHIFT
            )
        thick = c["thick"]
        for ln in self.lines:
            if ln.dashed and not fine:  # mip: a dashed line seen from afar is a fainter line
                faint = mix(c["asphalt"], c[ln.colour], ln.duty)
                cv2.polylines(colour, [pts[ln.far_row]], False, faint, 1, cv2.LINE_8, SHIFT)
                continue
            if ln.double and not fine:
                rows, col, th = [ln.far_row], c[ln.colour + "_double"], 1
            else:
                rows, col, th = ln.rows, c[ln.colour], thick
            if ln.whole:
                cv2.polylines(colour, [pts[r] for r in rows], False, col, th, cv2.LINE_8, SHIFT)
                continue
            if ln.dashed:
                i = bisect_left(ln.start_s, s_lo - st.dash_len_m)
            else:
                i = bisect_left(ln.end_s, s_lo)
            j = bisect_left(ln.start_s, s_hi)
            pieces = [
                pts[r, max(da - a, 0) // step : (db - a) // step + 1]
                for da, db in zip(ln.a[i:j], ln.b[i:j], strict=True)
                if db > a
                for r in rows
            ]
            if pieces:
                cv2.polylines(colour, pieces, False, col, th, cv2.LINE_8, SHIFT)
