"""The rasteriser's near-plane paths give what their plain references give.

`PolyRaster._keep_crossing` (one matrix product against the four side planes) against
the per-side tests, and `PolyRaster.clipped` (an unrolled near-plane clip) against the
generic Sutherland-Hodgman clip followed by the guard-band clip, on random polygons
that cross the near plane, lie wholly in front of or behind it, or reach far outside
the image.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.camera import IpmCamera
from sim.scenery_draw import GUARD_PX, ONE, ZNEAR, PolyRaster, clip_near, clip_poly


def _raster(w: int, h: int) -> PolyRaster:
    return PolyRaster(IpmCamera(width=w, height=h))


def _random_polys(rng: np.random.Generator, k: int, w: int, h: int) -> np.ndarray:
    """(8, 3, k) polygons in the homogeneous pixel frame (z, U, V)."""
    z = rng.uniform(-3.0, 30.0, (8, k))
    u = rng.uniform(-1.5, 2.5, (8, k)) * w * np.abs(z) + rng.normal(0.0, 20.0, (8, k))
    v = rng.uniform(-1.5, 2.5, (8, k)) * h * np.abs(z)
    u[:, : k // 3] *= 300.0  # some far outside the guard band
    return np.stack((z, u, v), axis=1)


def _reference_keep(raster: PolyRaster, p: np.ndarray, slow: np.ndarray) -> np.ndarray:
    q = p[:, :, slow]
    qz, qu, qv = q[:, 0], q[:, 1], q[:, 2]
    out = (
        (qu < 0).all(0)
        | ((qu - raster.w * qz) > 0).all(0)
        | (qv < 0).all(0)
        | ((qv - raster.h * qz) > 0).all(0)
    )
    return slow[~out]


def _reference_clipped(raster: PolyRaster, pc: np.ndarray):
    poly = clip_poly([tuple(r) for r in pc.tolist()], lambda p: p[0] - ZNEAR)
    if len(poly) < 3:
        return None
    uv = [(p[1] / p[0], p[2] / p[0]) for p in poly]
    g = (-GUARD_PX, GUARD_PX + raster.w, -GUARD_PX, GUARD_PX + raster.h)
    if (
        min(p[0] for p in uv) < g[0]
        or max(p[0] for p in uv) > g[1]
        or min(p[1] for p in uv) < g[2]
        or max(p[1] for p in uv) > g[3]
    ):
        for keep in (
            lambda p: p[0] - g[0],
            lambda p: g[1] - p[0],
            lambda p: p[1] - g[2],
            lambda p: g[3] - p[1],
        ):
            uv = clip_poly(uv, keep)
            if len(uv) < 3:
                return None
    return np.rint(np.asarray(uv) * ONE).astype(np.int32)


@pytest.mark.parametrize("size", [(200, 66), (800, 600)])
def test_keep_crossing_matches_the_per_side_tests(size):
    raster = _raster(*size)
    rng = np.random.default_rng(7)
    kept = 0
    for _ in range(200):
        p = _random_polys(rng, 24, *size)
        slow = np.flatnonzero(rng.random(24) < 0.7)
        got = raster._keep_crossing(p, slow)
        np.testing.assert_array_equal(got, _reference_keep(raster, p, slow))
        kept += got.size
    assert 0 < kept < 200 * 24 * 0.7  # both outcomes occur


@pytest.mark.parametrize("size", [(200, 66), (800, 600)])
def test_clipped_matches_the_generic_clip(size):
    raster = _raster(*size)
    rng = np.random.default_rng(11)
    drawn = empty = 0
    for _ in range(60):
        p = _random_polys(rng, 20, *size)
        for k in range(p.shape[2]):
            got, want = raster.clipped(p[:, :, k]), _reference_clipped(raster, p[:, :, k])
            if want is None:
                assert got is None
                empty += 1
                continue
            assert got is not None and got.flags.c_contiguous and got.dtype == np.int32
            np.testing.assert_array_equal(got, want)
            drawn += 1
    assert drawn > 100 and empty > 10


def test_clip_near_keeps_the_front_part_only():
    square = [(-1.0, 0.0, 0.0), (1.0, 10.0, 0.0), (1.0, 10.0, 10.0), (-1.0, 0.0, 10.0)]
    out = clip_near(square)
    assert out == clip_poly(square, lambda p: p[0] - ZNEAR)
    assert len(out) == 4 and all(p[0] >= ZNEAR - 1e-12 for p in out)
    assert clip_near([(0.1, 0.0, 0.0), (0.0, 1.0, 0.0), (0.1, 1.0, 1.0)]) == []
