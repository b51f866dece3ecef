"""The per-frame rasteriser of `sim.scenery`: camera-frame polygons to filled pixels.

`PolyRaster(camera).fill(img, p, front, depth, cols)` takes polygons in the camera's
homogeneous pixel frame (z, U = fx*x + cx*z, V = fy*y + cy*z; pixel = (U/z, V/z)), which
`PolyRaster.homogeneous` folds into the world -> camera matrix, and a front-facing flag
per polygon. It culls back faces, polygons wholly behind the camera, outside the view or
under a pixel, clips the few that cross the near plane (or project far outside the
image), and fills the rest far to near (painter's algorithm by `depth`) with
`cv2.fillConvexPoly`. The work is a fixed, small number of numpy calls on all polygons
at once, then one lean Python loop over those drawn.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat

import cv2
import numpy as np

SHIFT = 3
ONE = 1 << SHIFT
ZNEAR = 0.2
GUARD_PX = 8000.0  # cv2 drawing needs |pixel| < 2**15 (fixed point)
MIN_SPAN_PX = 0.3  # a polygon thinner than this along u or v is not drawn
MIN_SUM_PX = 1.2  # nor one whose width plus height is below this
_LINE_8 = int(cv2.LINE_8)


def clip_poly(poly: list, keep) -> list:
    """Sutherland-Hodgman: the part of `poly` (list of tuples) where keep(p) >= 0,
    keep linear in p."""
    out = []
    n = len(poly)
    for k in range(n):
        p, q = poly[k - 1], poly[k]
        dp, dq = keep(p), keep(q)
        if dq >= 0:
            if dp < 0:
                t = dp / (dp - dq)
                out.append(tuple(a + t * (b - a) for a, b in zip(p, q, strict=True)))
            out.append(q)
        elif dp >= 0:
            t = dp / (dp - dq)
            out.append(tuple(a + t * (b - a) for a, b in zip(p, q, strict=True)))
    return out


def clip_near(poly: list) -> list:
    """`clip_poly(poly, lambda p: p[0] - ZNEAR)` for (z, U, V) vertices (lists or
    tuples), unrolled: the same arithmetic, so the same vertices (the kept ones as
    given, the new ones on the near plane as tuples)."""
    out = []
    p = poly[-1]
    dp = p[0] - ZNEAR
    for q in poly:
        dq = q[0] - ZNEAR
        if dq >= 0:
            if dp < 0:
                t = dp / (dp - dq)
                out.append(
                    (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]), p[2] + t * (q[2] - p[2]))
                )
            out.append(q)
        elif dp >= 0:
            t = dp / (dp - dq)
            out.append(
                (p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]), p[2] + t * (q[2] - p[2]))
            )
        p, dp = q, dq
    return out


class PolyRaster:
    """Draws polygons given in camera coordinates (z forward, x right, y down) for one
    camera (see the module doc)."""

    def __init__(self, camera) -> None:
        cam = camera
        self.camera = cam
        self.fx, self.fy, self.cx, self.cy = cam.fx, cam.fy, cam.cx, cam.cy
        self.w, self.h = cam.width, cam.height
        self._fxy = np.array([[cam.fx], [cam.fy]])
        self._cxy = np.array([[cam.cx], [cam.cy]])
        self._wh = np.array([[cam.width], [cam.height]], np.float64)
        self._guard_hi = self._wh + GUARD_PX
        # camera (z, x, y) -> homogeneous pixel frame (z, U, V)
        self.kz = np.array([[1.0, 0.0, 0.0], [cam.cx, cam.fx, 0.0], [cam.cy, 0.0, cam.fy]])
        # (z, U, V) -> how far outside each side plane: -U, U - w z, -V, V - h z (> 0: out)
        self._sides = np.array(
            [[0.0, -1.0, 0.0], [-self.w, 1.0, 0.0], [0.0, 0.0, -1.0], [-self.h, 0.0, 1.0]]
        )
        self._guard = (-GUARD_PX, GUARD_PX + self.w, -GUARD_PX, GUARD_PX + self.h)

    def homogeneous(self, m: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World -> camera (z, x, y) = p @ m.T + off, as world -> (z, U, V) (module doc)."""
        return self.kz @ m, self.kz @ off

    def fill(self, img, p: np.ndarray, front: np.ndarray, depth: np.ndarray, cols) -> None:
        """Cull, clip, sort and fill polygons: `p` (8, 3, n) their vertices in the
        homogeneous pixel frame (z, U, V; vertex, then coordinate, then polygon:
        reductions over the vertices run along the first axis, which numpy does fast),
        `front` (n,) whether each faces the camera (or is two-sided), `depth` (n,) their
        painter's depths, `cols` their colours (n tuples)."""
        z = p[:, 0]
        zlo = z.min(axis=0)
        # u and v together: (8, 2, n)
        uv = p[:, 1:] / np.maximum(z, ZNEAR)[:, None, :]
        lo, hi = uv.min(axis=0), uv.max(axis=0)  # (2, n)
        d = hi - lo  # too thin or too small to cover a pixel: skip
        ok = (hi >= 0) & (lo < self._wh) & (d > MIN_SPAN_PX)  # per axis: on screen, not thin
        show = front & (zlo >= ZNEAR) & ok[0] & ok[1] & (d[0] + d[1] > MIN_SUM_PX)
        special: set = set()
        if zlo.min() < ZNEAR:
            slow = np.flatnonzero(front & (zlo < ZNEAR) & (z.max(axis=0) >= ZNEAR))
            if slow.size:  # crossing the near plane: keep those not wholly outside a side
                keep = self._keep_crossing(p, slow)
                if keep.size:
                    special.update(keep.tolist())
                    show[keep] = True
        if lo.min() < -GUARD_PX or hi.max() > GUARD_PX:
            big = show & ((lo < -GUARD_PX).any(axis=0) | (hi > self._guard_hi).any(axis=0))
            special.update(np.flatnonzero(big).tolist())
        idx = np.flatnonzero(show)
        if not idx.size:
            return
        idx = idx[np.argsort(-depth[idx], kind="stable")]
        pts = np.empty((idx.size, 8, 2), np.int32)
        np.rint(uv[:, :, idx].transpose(2, 0, 1) * ONE, out=pts, casting="unsafe")
        polys = list(pts)
        ks = idx.tolist()
        if special:
            for pos, k in enumerate(ks):
                if k in special:
                    polys[pos] = self.clipped(p[:, :, k])
            drawn = [(q, cols[k]) for q, k in zip(polys, ks, strict=True) if q is not None]
            polys, colours = [q for q, _ in drawn], [c for _, c in drawn]
        else:
            colours = list(map(cols.__getitem__, ks))
        # one C-level loop over the polygons, far to near
        n = len(polys)
        deque(
            map(cv2.fillConvexPoly, repeat(img, n), polys, colours, repeat(_LINE_8, n),
                repeat(SHIFT, n)),
            maxlen=0,
        )  # fmt: skip

    def _keep_crossing(self, p, slow: np.ndarray) -> np.ndarray:
        """Of the polygons `slow` that cross the near plane, those not wholly outside
        one of the view's side planes (U < 0, U > w z, V < 0, V > h z)."""
        out = ((self._sides @ p[:, :, slow]) > 0).all(axis=0).any(axis=0)  # (8, 4, k)
        return slow[~out]

    def clipped(self, pc: np.ndarray):
        """Fixed-point pixels of one polygon ((8, 3) in the homogeneous pixel frame)
        clipped to the near plane and to a guard band around the image; None when
        nothing is left."""
        poly = clip_near(pc.tolist())
        if len(poly) < 3:
            return None
        us = [p[1] / p[0] for p in poly]
        vs = [p[2] / p[0] for p in poly]
        g = self._guard
        if min(us) >= g[0] and max(us) <= g[1] and min(vs) >= g[2] and max(vs) <= g[3]:
            uv = np.array((us, vs)).T
        else:
            uv = list(zip(us, vs, strict=True))
            for keep in (
                lambda p: p[0] - g[0],
                lambda p: g[1] - p[0],
                lambda p: p[1] - g[2],
                lambda p: g[3] - p[1],
            ):
                uv = clip_poly(uv, keep)
                if len(uv) < 3:
                    return None
        return np.rint(np.asarray(uv) * ONE).astype(np.int32, order="C")
