"""Camera images of a `LaneRoad` by inverse perspective mapping.

Per frame the renderer rasterises two car-aligned top-down patches with cv2 drawing
calls (a fine, textured one near the car and a coarse one far away whose markings are
drawn pre-averaged, which is the mip level that keeps far dashes from aliasing), then
a single `cv2.remap` with per-pixel maps computed once maps them into the camera image.
A sky gradient lives in the same source image, so sky pixels come out of the same remap.
What lies across the road (bands, markings) comes from `road.layout` via
`sim.road_geometry.CrossSection`; scenery may add ground shadows (`add_shadows`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

import cv2
import numpy as np

from sim.camera import IpmCamera
from sim.road import LaneRoad
from sim.road_geometry import MARKING_WIDTH_M, SHIFT, CrossSection

ONE = 1 << SHIFT
LIGHT = 128  # the neutral value of the light/texture layer (C * L / 128)
FAR_HALF_WIDTH_M = 50.0
FAR_DIST_M = 90.0
SKY_ROWS = 24
SKY_TOP_RAD = math.radians(35.0)
__all__ = ["MARKING_WIDTH_M", "CameraMaps", "RoadRenderer", "RoadStyle"]


@dataclass(frozen=True)
class RoadStyle:
    """How one road looks: colours (RGB), marking wear, verge, sky, light and shadows."""

    asphalt: tuple[int, int, int]
    texture_amp: float  # asphalt/verge noise strength, in light units around 128
    paint: tuple[int, int, int]
    paint_alpha: float  # 1 = fresh paint, lower = faded
    dash_keep: float  # fraction of centre dashes still there
    edge_lines: bool
    dash_len_m: float
    dash_gap_m: float
    verge: str  # "grass", "gravel" or "kerb"
    grass: tuple[int, int, int]
    shoulder: tuple[int, int, int]
    shoulder_m: float
    sky_top: tuple[int, int, int]
    sky_horizon: tuple[int, int, int]
    sun: float  # global brightness gain
    shadows_per_100m: float
    shadow_light: int  # light level inside a shadow (of 128)

    @classmethod
    def from_seed(cls, seed: int) -> RoadStyle:
        """A random but repeatable look for road `seed`."""
        r = np.random.default_rng([seed, 0x5354594C])
        grey = int(r.uniform(62, 118))
        tint = int(r.integers(-4, 5))
        verge = str(r.choice(["grass", "gravel", "kerb"], p=[0.5, 0.3, 0.2]))
        shoulder = {"grass": (120, 112, 95), "gravel": (150, 138, 118), "kerb": (175, 175, 170)}
        sky_b = r.uniform(0.75, 1.1)
        return cls(
            asphalt=(grey + tint, grey, grey - tint),
            texture_amp=float(r.uniform(6, 26)),
            paint=(236, 236, 228) if r.random() < 0.85 else (230, 200, 90),
            paint_alpha=float(r.uniform(0.45, 1.0)),
            dash_keep=float(1.0 if r.random() < 0.6 else r.uniform(0.5, 1.0)),
            edge_lines=bool(r.random() < 0.85),
            dash_len_m=float(r.uniform(2.5, 4.5)),
            dash_gap_m=float(r.uniform(4.5, 9.0)),
            verge=verge,
            grass=(int(r.uniform(55, 110)), int(r.uniform(95, 150)), int(r.uniform(35, 70))),
            shoulder=shoulder[verge],
            shoulder_m=float({"grass": 0.4, "gravel": r.uniform(1.0, 3.0), "kerb": 0.3}[verge]),
            sky_top=tuple(int(c * sky_b) for c in (70, 120, 200)),
            sky_horizon=tuple(int(min(255, c * sky_b)) for c in (190, 205, 225)),
            sun=float(r.uniform(0.75, 1.2)),
            shadows_per_100m=float(r.choice([0.0, r.uniform(1, 6)])),
            shadow_light=int(r.uniform(55, 95)),
        )

    @classmethod
    def plain(cls) -> RoadStyle:
        """A fixed, clean look (fresh markings, no shadows) for tests and figures."""
        return cls(
            (90, 90, 90),
            0.0,
            (240, 240, 240),
            1.0,
            1.0,
            True,
            3.0,
            6.0,
            "grass",
            (80, 120, 50),
            (120, 112, 95),
            0.4,
            (70, 120, 200),
            (190, 205, 225),
            1.0,
            0.0,
            80,
        )


def _noise_tile(rng: np.random.Generator, size: int, amp: float) -> np.ndarray:
    """Seamless (tileable) 3-channel noise around LIGHT: fine grain plus soft blotches."""
    fine = rng.standard_normal((size, size)).astype(np.float32)
    coarse = rng.standard_normal((size // 8, size // 8)).astype(np.float32)
    big = np.tile(coarse, (3, 3))
    big = cv2.resize(big, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
    blotch = big[size : 2 * size, size : 2 * size]
    n = 0.6 * fine + 1.2 * blotch
    tile = np.clip(LIGHT + amp * n, 0, 255).astype(np.uint8)
    return np.repeat(tile[:, :, None], 3, axis=2)


class RoadRenderer:
    """Renders camera images of one road for one camera.

    Args:
        road: the road.
        camera: the camera (its maps are computed here, once).
        style: the look; `RoadStyle.from_seed(road.seed)` when None.
        jitter_rows: largest camera-shake offset in rows (0 = none).
    """

    def __init__(
        self,
        road: LaneRoad,
        camera: IpmCamera,
        style: RoadStyle | None = None,
        jitter_rows: int = 1,
        maps: CameraMaps | None = None,
    ) -> None:
        self.road, self.camera = road, camera
        self.style = style or RoadStyle.from_seed(road.seed)
        self.maps = maps or CameraMaps(camera, jitter_rows)
        m = self.maps
        self._src = np.zeros((m.src_h, m.src_w, 3), np.uint8)
        self._light = np.full_like(self._src, LIGHT)
        self._colour_cache: dict = {}
        self._build_geometry()
        self._build_sky()
        rng = np.random.default_rng([road.seed, 0x54455854])
        self._tile_n = 256
        tile = _noise_tile(rng, self._tile_n, self.style.texture_amp)
        self._tex = np.tile(tile, (2 + m.near_h // 256, 2 + m.near_w // 256, 1))
        # the same texture darkened, copied in where shadows fall, so shadows keep texture
        self._tex_shade = (self._tex.astype(np.uint16) * self.style.shadow_light >> 7).astype(
            np.uint8
        )
        self._mask = np.zeros((m.near_h, m.near_w), np.uint8)
        # mip level of the texture for the far patch (keeps the near/far seam quiet)
        self._far_n = max(4, round(self._tile_n * m.near_res / m.far_res))
        far_tile = cv2.resize(tile, (self._far_n, self._far_n), interpolation=cv2.INTER_AREA)
        self._tex_far = np.tile(
            far_tile, (2 + m.far_h // self._far_n, 2 + m.far_w // self._far_n, 1)
        )

    def _build_geometry(self) -> None:
        road = self.road
        rng = np.random.default_rng([road.seed, 0x44415348])
        self._xsec = CrossSection(road, self.style, rng)  # draws dashes from rng first
        shadows, shadow_s = self._make_shadows(rng)
        # Python lists for `bisect`: per frame far cheaper than np.searchsorted on scalars
        self._shadow_groups: list[tuple[np.ndarray, list[float]]] = []
        self.add_shadows(shadows, shadow_s)

    def add_shadows(self, polys: np.ndarray, s_centres: np.ndarray) -> None:
        """Add ground shadows cast by things beside the road: world polygons (M, K, 2)
        and the arc length (M,) of each one's centre; drawn like the tree shadows."""
        polys = np.asarray(polys, np.float64)
        s_c = np.asarray(s_centres, np.float64)
        if polys.ndim != 3 or polys.shape[2] != 2 or s_c.shape != polys.shape[:1]:
            raise ValueError(f"shadows must be (M, K, 2) with (M,) centres, got {polys.shape}")
        if s_c.size == 0:
            return
        # one group per polygon size: one transform per frame, and the same pixels (a
        # fill's coverage does not depend on the order of its polygons)
        for k, (old_p, old_s) in enumerate(self._shadow_groups):
            if old_p.shape[1] == polys.shape[1]:
                polys = np.concatenate((old_p, polys))
                s_c = np.concatenate((np.asarray(old_s, np.float64), s_c))
                del self._shadow_groups[k]
                break
        order = np.argsort(s_c, kind="stable")
        self._shadow_groups.append((polys[order], s_c[order].tolist()))

    def _make_shadows(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Tree-crown shadows: world polygons (M, 16, 2) lying across and beside the road."""
        road, w = self.road, self.road.lane_width
        lo, hi = -w - 4.0, 2 * w + 4.0  # the plain road's spread, kept for the same frames
        if road.layout != road.layout.plain(w):
            pr, pl = road.layout.paved_edges()
            lo, hi = pr - 4.0, pl + 4.0
        n = rng.poisson(self.style.shadows_per_100m * (road.s[-1] - road.s[0]) / 100.0)
        s_c = np.sort(rng.uniform(road.s[0], road.s[-1], n))
        if n == 0:
            return np.zeros((0, 16, 2)), s_c
        lat_c = rng.uniform(lo, hi, n)
        a = rng.uniform(1.0, 4.0, n)[:, None]
        b = rng.uniform(2.0, 7.0, n)[:, None]
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)[None, :]
        wobble = 1.0 + 0.2 * np.sin(3 * t + rng.uniform(0, 6, (n, 1)))
        ds_, dl = a * np.cos(t) * wobble, b * np.sin(t) * wobble
        idx = ((s_c - road.s[0]) / road.ds).astype(np.int64)
        h = road.heading[idx][:, None]
        cx = road.x[idx][:, None] - lat_c[:, None] * np.sin(h)
        cy = road.y[idx][:, None] + lat_c[:, None] * np.cos(h)
        px = cx + ds_ * np.cos(h) - dl * np.sin(h)
        py = cy + ds_ * np.sin(h) + dl * np.cos(h)
        return np.stack((px, py), axis=2), s_c

    def _build_sky(self) -> None:
        st, m = self.style, self.maps
        t = np.sqrt(np.linspace(0.0, 1.0, SKY_ROWS))[:, None]
        sky = (1 - t) * np.array(st.sky_horizon) + t * np.array(st.sky_top)
        sky = np.clip(sky * min(1.15, 0.85 + 0.2 * st.sun), 0, 255).astype(np.uint8)
        self._src[m.sky_row0 :] = sky[:, None, :]
        self._sky = m.remap_all(self._src)  # only its all-sky rows are ever used

    def _affine(self, x: float, y: float, yaw: float, x_top: float, y_left: float, res: float):
        """World -> patch pixel affine (2x3), patch rows run backwards from `x_top` metres
        ahead, columns rightwards from `y_left` metres to the left."""
        c, s = math.cos(yaw), math.sin(yaw)
        k = ONE / res
        # car frame: X = c*(wx-x) + s*(wy-y), Y = -s*(wx-x) + c*(wy-y)
        return np.array(
            [
                [s * k, -c * k, (y_left - s * x + c * y) * k],
                [-c * k, -s * k, (x_top + c * x + s * y) * k],
            ]
        )

    def draw_patch(
        self,
        colour: np.ndarray,
        aff: np.ndarray,
        s_lo: float,
        s_hi: float,
        res: float,
        fine: bool,
    ) -> None:
        """Rasterise the road between arc lengths `s_lo` and `s_hi` into a top-down
        `colour` image (shadows go into the light layer: `_light_layer`)."""
        self._xsec.draw(colour, aff, s_lo, s_hi, res, fine)

    def _shadow_polys(
        self,
        aff: np.ndarray,
        s_lo: float,
        s_hi: float,
        roi: tuple[int, int, int, int] | None = None,
    ) -> list | None:
        """The shadow polygons near [s_lo, s_hi] in patch pixels, or None if there are none.

        With `roi` (r0, r1, c0, c1), polygons whose bounding box misses it (by a margin)
        are left out: they change no pixel there (one fill's parity is per polygon)."""
        out = None
        for polys, s_list in self._shadow_groups:
            i = bisect_left(s_list, s_lo - 5.0)
            j = bisect_left(s_list, s_hi + 5.0)
            if j > i:
                got = (polys[i:j] @ aff[:, :2].T + aff[:, 2]).astype(np.int32)
                if roi is not None and j - i >= 12:  # only many shadows pay for the test
                    r0, r1, c0, c1 = roi
                    lo, hi = got.min(axis=1), got.max(axis=1)
                    keep = (
                        (hi[:, 0] >= (c0 - 2) * ONE)
                        & (lo[:, 0] <= (c1 + 2) * ONE)
                        & (hi[:, 1] >= (r0 - 2) * ONE)
                        & (lo[:, 1] <= (r1 + 2) * ONE)
                    )
                    if not keep.all():
                        got = got[keep]
                    if not len(got):
                        continue
                got = list(got)
                out = got if out is None else out + got
        return out

    def _light_layer(
        self,
        polys: list | None,
        tex: np.ndarray,
        light: np.ndarray,
        roi: tuple[int, int, int, int],
        shade: np.ndarray | None = None,
    ) -> np.ndarray:
        """The light layer over `roi` of a patch: the texture view `tex` itself when no
        shadow is near, else `tex` copied into `light` (the patch's whole layer) and
        shaded where `polys` fall: flat, or from `shade` (the darkened texture over roi).
        The polygons are rasterised over the whole patch, so roi does not change them."""
        if polys is None:
            return tex
        r0, r1, c0, c1 = roi
        out = light[r0:r1, c0:c1]
        np.copyto(out, tex)
        if shade is None:
            cv2.fillPoly(light, polys, (self.style.shadow_light,) * 3, cv2.LINE_8, SHIFT)
        else:
            self._mask.fill(0)
            cv2.fillPoly(self._mask, polys, 255, cv2.LINE_8, SHIFT)
            cv2.copyTo(shade, self._mask[r0:r1, c0:c1], out)
        return out

    def render(
        self,
        x: float,
        y: float,
        yaw: float,
        s: float,
        lateral: float,
        jitter: int = 0,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The camera image (H, W, 3) uint8 RGB of a car at pose (x, y, yaw).

        Args:
            s, lateral: the car's road coordinates (anchor the texture to the road).
            jitter: camera-shake offset in rows, within +-`jitter_rows`.
            out: optional output buffer to fill.
        """
        m = self.maps
        near, far = self._src[: m.near_h, : m.near_w], self._src[m.near_h : m.sky_row0, : m.far_w]
        # Texturing and shading, which work pixel by pixel, are done only where the remap
        # reads (`near_roi`, `far_roi`: rows r0:r1, columns c0:c1 of each patch). Drawing
        # covers whole patches: clipping a polygon at a row changes its raster below.
        nr0, nr1, nc0, nc1 = m.near_roi
        fr0, fr1, fc0, fc1 = m.far_roi
        # texture anchored to road coordinates: it slides as the car moves along and across
        n = self._tile_n
        r0 = round(-(m.near_top + s) / m.near_res) % n
        c0 = round(-(m.near_left + lateral) / m.near_res) % n
        tex_near = self._tex[r0 + nr0 : r0 + nr1, c0 + nc0 : c0 + nc1]
        shade = self._tex_shade[r0 + nr0 : r0 + nr1, c0 + nc0 : c0 + nc1]
        n = self._far_n
        r0 = round(-(FAR_DIST_M + s) / m.far_res) % n
        c0 = round(-(m.far_left + lateral) / m.far_res) % n
        tex_far = self._tex_far[r0 + fr0 : r0 + fr1, c0 + fc0 : c0 + fc1]
        near_lo, near_hi = s - 8.0, s + m.near_top * 1.6 + 8.0
        aff = self._affine(x, y, yaw, m.near_top, m.near_left, m.near_res)
        self.draw_patch(near, aff, near_lo, near_hi, m.near_res, True)
        light_near = self._light_layer(
            self._shadow_polys(aff, near_lo, near_hi, m.near_roi),
            tex_near,
            self._light[: m.near_h, : m.near_w],
            m.near_roi,
            shade,
        )
        far_lo, far_hi = s - 8.0, s + FAR_DIST_M * 1.6
        aff = self._affine(x, y, yaw, FAR_DIST_M, m.far_left, m.far_res)
        self.draw_patch(far, aff, far_lo, far_hi, m.far_res, False)
        light_far = self._light_layer(
            self._shadow_polys(aff, far_lo, far_hi, m.far_roi),
            tex_far,
            self._light[m.near_h : m.sky_row0, : m.far_w],
            m.far_roi,
        )
        near = near[nr0:nr1, nc0:nc1]
        far = far[fr0:fr1, fc0:fc1]
        cv2.multiply(near, light_near, dst=near, scale=1.0 / LIGHT)
        cv2.multiply(far, light_far, dst=far, scale=1.0 / LIGHT)
        return m.remap(self._src, jitter, out, self._sky)


class CameraMaps:
    """Per-pixel remap tables from the camera image into the renderer's source image.

    Source layout (rows): near patch, far patch, sky gradient. Computed once per camera.
    """

    def __init__(self, camera: IpmCamera, jitter_rows: int = 1) -> None:
        self.camera, self.jitter_rows = camera, int(jitter_rows)
        gx, gy, elev = camera.ground_points(self.jitter_rows)
        # near patch resolution about the ground footprint of a pixel 5 m ahead
        self.near_res = float(np.clip(8.0 / camera.fx, 0.03, 0.1))
        self.near_top = float(np.clip(math.sqrt(camera.mount_height_m * camera.fy), 9.0, 16.0))
        near_bottom = float(np.nanmin(gx)) if np.isfinite(gx).any() else 0.0
        near_bottom = min(near_bottom, self.near_top - 1.0) - 0.5
        # wide enough for the view ahead; a camera off the centre line, yawed or rolled
        # sees the ground ahead shifted or turned sideways, so its patch is wider
        cam = camera
        self.near_left = 0.5 * self.near_top + 4.0
        if cam.mount_y_m != 0 or cam.yaw_deg != 0 or cam.roll_deg != 0:
            self.near_left += (
                abs(cam.mount_y_m)
                + self.near_top * abs(math.tan(math.radians(cam.yaw_deg)))
                + 0.5 * self.near_top * abs(math.sin(math.radians(cam.roll_deg)))
            )
        self.near_h = math.ceil((self.near_top - near_bottom) / self.near_res) + 1
        self.near_w = math.ceil(2 * self.near_left / self.near_res) + 1
        # coarse enough that a far pixel covers several metres of road along its length
        self.far_res = float(np.clip(60.0 / camera.fx, 0.4, 0.6))
        self.far_left = FAR_HALF_WIDTH_M
        self.far_w = math.ceil(2 * self.far_left / self.far_res) + 1
        self.src_w = max(self.near_w, self.far_w)
        near_bottom = min(near_bottom, 0.0)
        self.far_h = math.ceil((FAR_DIST_M - near_bottom) / self.far_res) + 1
        self.sky_row0 = self.near_h + self.far_h
        self.src_h = self.sky_row0 + SKY_ROWS
        mx = np.full(gx.shape, 0.5 * self.src_w, np.float32)
        my = np.full(gx.shape, self.sky_row0 + 0.0, np.float32)  # haze (beyond the far patch)
        sky = ~np.isfinite(gx)
        my[sky] = self.sky_row0 + np.clip(elev[sky] / SKY_TOP_RAD, 0, 1) * (SKY_ROWS - 1)
        gxs, gys = np.where(sky, 0.0, gx), np.where(sky, 0.0, gy)
        fcol = (self.far_left - gys) / self.far_res
        frow = (FAR_DIST_M - gxs) / self.far_res
        in_far = ~sky & (gxs < FAR_DIST_M - 1) & (fcol > 1) & (fcol < self.far_w - 2)
        mx[in_far], my[in_far] = fcol[in_far], self.near_h + frow[in_far]
        ncol = (self.near_left - gys) / self.near_res
        nrow = (self.near_top - gxs) / self.near_res
        in_near = (
            ~sky & (nrow > 1) & (nrow < self.near_h - 2) & (ncol > 1) & (ncol < self.near_w - 2)
        )
        mx[in_near], my[in_near] = ncol[in_near], nrow[in_near]
        self.map1, self.map2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        self.near_roi, self.far_roi = self._read_regions()
        # rows that are all sky, from the top, for each jitter offset (a rolled camera's
        # horizon is tilted, so fewer rows are all sky; the rest are remapped)
        sky_row = sky.all(axis=1)
        h = camera.height
        self.sky_rows = [
            int(np.argmin(np.append(sky_row[j : j + h], False))) for j in range(2 * jitter_rows + 1)
        ]

    def _read_regions(self) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """The part of the near and of the far patch that the remap reads (every jitter
        offset, both bilinear neighbours, one pixel of margin), as (r0, r1, c0, c1)."""
        mx, my = cv2.convertMaps(self.map1, self.map2, cv2.CV_32FC1)
        col, row = np.floor(mx).astype(np.int64), np.floor(my).astype(np.int64)

        def region(top: int, h: int, w: int) -> tuple[int, int, int, int]:
            inside = (row >= top - 1) & (row < top + h) & (col >= -1) & (col < w)
            if not inside.any():
                return 0, 1, 0, 1
            r, c = row[inside] - top, col[inside]
            r0, r1 = max(int(r.min()) - 1, 0), min(int(r.max()) + 3, h)
            c0, c1 = max(int(c.min()) - 1, 0), min(int(c.max()) + 3, w)
            return r0, r1, c0, c1

        return region(0, self.near_h, self.near_w), region(self.near_h, self.far_h, self.far_w)

    def remap(
        self,
        src: np.ndarray,
        jitter: int = 0,
        out: np.ndarray | None = None,
        sky: np.ndarray | None = None,
    ) -> np.ndarray:
        """One `cv2.remap` of `src` into the camera image, shifted by `jitter` rows.

        With `sky` (this remap of the whole extended map, made once per look), rows that
        are all sky are copied from it instead of being remapped.
        """
        j = self.jitter_rows + max(-self.jitter_rows, min(self.jitter_rows, int(jitter)))
        h, w = self.camera.height, self.camera.width
        if out is None:
            out = np.empty((h, w, 3), np.uint8)
        k = self.sky_rows[j] if sky is not None else 0
        if k:
            out[:k] = sky[j : j + k]
        if k < h:
            cv2.remap(
                src,
                self.map1[j + k : j + h],
                self.map2[j + k : j + h],
                cv2.INTER_LINEAR,
                dst=out[k:],
                borderMode=cv2.BORDER_REPLICATE,
            )
        return out

    def remap_all(self, src: np.ndarray) -> np.ndarray:
        """`src` remapped through the whole extended (jitter margin included) map."""
        return cv2.remap(
            src, self.map1, self.map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
