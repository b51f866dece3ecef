"""Light and weather for the embedded simulator, as cheap per-frame image operations.

`Weather.build(seed, camera, kind)` draws a condition ("clear", "overcast", "dusk",
"night", "fog", "rain"; None = drawn from the seed) and, per seed, which extra effects
are present and how strong: exposure drift, sensor noise, vignette, glare, motion blur,
JPEG artefacts. Everything that depends on the pixel is precomputed for the camera:

- a gain map A and an offset map B (out = img * A * exposure + B): fog by ground
  distance (full fog above the horizon), the night's headlight cone, a vignette;
- a look-up table (contrast, tint, gamma, exposure when there is no map); on big frames
  one table for all channels, then the tint as a constant per-channel gain map;
- tiles of sensor noise and of rain streaks, read at an offset that changes per step;
- a glare sprite added where the sun is in view (needs the car's yaw: `apply(..., yaw)`).

`style_overrides()` gives the `RoadStyle` fields the renderer should take (sky colours,
brightness, wet asphalt, no random shadows without sun) and `sun_azimuth_rad`,
`sun_elevation_rad`, `shadows`, `night`, `light` are for `sim.scenery.Scenery.build`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

KINDS = ("clear", "overcast", "dusk", "night", "fog", "rain")
NOISE_BIAS = 24  # noise tiles hold bias + noise; the LUT takes the bias back off
A_ONE = 64  # gain map fixed point: A / 64
TINT_ONE = 224  # tint map fixed point (t ** gamma <= 1.12 ** 1.1 < 255 / 224)
TINT_MAP_MIN_PX = 100_000  # frames this big apply a tint as a map after a one-channel LUT


class Weather:
    """One episode's light and weather for one camera (module doc)."""

    def __init__(self, seed: int, camera, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"weather kind must be one of {KINDS} or None, got {kind!r}")
        r = np.random.default_rng([int(seed), 0x57454154])
        self.name, self.camera = kind, camera
        self.night = kind == "night"
        self.shadows = kind in ("clear", "dusk")
        self.sun_azimuth_rad = float(r.uniform(0, 2 * math.pi))
        el = {"dusk": r.uniform(2, 9), "night": -20.0}.get(kind, r.uniform(18, 65))
        self.sun_elevation_rad = math.radians(float(el))
        self.light = float(
            {
                "clear": r.uniform(0.95, 1.1),
                "overcast": r.uniform(0.75, 0.9),
                "dusk": r.uniform(0.55, 0.75),
                "night": r.uniform(0.12, 0.2),
                "fog": r.uniform(0.8, 0.95),
                "rain": r.uniform(0.6, 0.8),
            }[kind]
        )
        self.contrast = float(
            {
                "overcast": r.uniform(0.7, 0.85),
                "fog": r.uniform(0.75, 0.9),
                "rain": r.uniform(0.75, 0.9),
            }.get(kind, r.uniform(0.95, 1.05))
        )
        self.tint = {
            "dusk": (1.12, 0.93, 0.78),
            "night": (0.9, 0.95, 1.1),
            "rain": (0.95, 0.98, 1.03),
        }.get(kind, (1.0, 1.0, 1.0))
        self.gamma = float(r.uniform(0.9, 1.1))
        self.visibility_m = (
            float(r.uniform(25, 90))
            if kind == "fog"
            else (float(r.uniform(120, 300)) if kind == "rain" else math.inf)
        )
        g = int(r.uniform(175, 215))
        self.fog_colour = (g, g, min(255, g + 5))
        # per-seed extras
        self.exposure_amp = float(r.uniform(0.04, 0.18)) if r.random() < 0.5 else 0.0
        self.exposure_period = float(r.uniform(40, 200))
        self.noise_sigma = float(r.uniform(1.0, 5.0)) if r.random() < 0.7 else 0.0
        if self.night and self.noise_sigma:
            self.noise_sigma *= 1.6
        self.vignette = float(r.uniform(0.12, 0.35)) if r.random() < 0.3 else 0.0
        self.glare = (
            kind in ("clear", "dusk")
            and math.degrees(self.sun_elevation_rad) < 35
            and r.random() < 0.8
        )
        self.blur = int(r.choice([3, 5])) if r.random() < 0.15 else 0
        self.jpeg_quality = int(r.uniform(25, 75)) if r.random() < 0.15 else 0
        self.rain = kind == "rain"
        self._r = r
        self._prepare()

    @classmethod
    def build(cls, seed: int, camera, kind: str | None = None) -> Weather:
        """The weather of episode `seed` for `camera`; `kind` fixes the main condition."""
        if kind is None:
            r = np.random.default_rng([int(seed), 0x4B494E44])
            kind = str(r.choice(KINDS, p=[0.4, 0.15, 0.12, 0.11, 0.11, 0.11]))
        return cls(seed, camera, kind)

    # -- for the renderer and the scenery ------------------------------------------------

    def style_overrides(self, base=None) -> dict:
        """`RoadStyle` field -> value for this weather (`base`: the road's own style, so
        wet asphalt darkens that road's grey; a fixed dark grey without it)."""
        k = self.name
        sky = {
            "clear": ((70, 120, 200), (190, 205, 225)),
            "overcast": ((150, 153, 158), (182, 184, 188)),
            "dusk": ((55, 50, 95), (235, 150, 95)),
            "night": ((6, 8, 18), (22, 24, 36)),
            "fog": (self.fog_colour, self.fog_colour),
            "rain": ((105, 108, 115), (140, 142, 148)),
        }[k]
        out = {"sky_top": sky[0], "sky_horizon": sky[1], "sun": self.light}
        if not self.shadows:
            out["shadows_per_100m"] = 0.0
        if k == "dusk":
            out["shadow_light"] = 70
        if k == "rain":
            grey = (52, 54, 57) if base is None else tuple(int(c * 0.62) for c in base.asphalt)
            out.update(asphalt=grey, texture_amp=4.0, paint_alpha=0.6)
        return out

    # -- precomputation --------------------------------------------------------------------

    def _prepare(self) -> None:
        cam, r = self.camera, self._r
        h, w = cam.height, cam.width
        gx, gy, _elev = cam.ground_points()
        dist = np.where(np.isfinite(gx), np.hypot(gx, gy), np.inf)
        a = np.ones((h, w), np.float32)
        b = None
        if self.vignette:
            yy, xx = np.mgrid[0:h, 0:w]
            rr = ((xx - cam.cx) / (0.5 * w)) ** 2 + ((yy - cam.cy) / (0.5 * h)) ** 2
            a *= (1.0 - self.vignette * np.clip(rr / 2.0, 0, 1)).astype(np.float32)
        a3 = np.repeat(a[:, :, None], 3, axis=2)
        if self.night:  # headlights: a cone on the ground ahead, fading with distance
            ang = np.arctan2(np.where(np.isfinite(gy), gy, 0), np.where(np.isfinite(gx), gx, 1))
            cone = np.exp(-((ang / math.radians(20.0)) ** 2)) * np.exp(-dist / 30.0)
            cone *= np.clip(dist / 3.0, 0, 1)
            boost = 1.0 + np.nan_to_num(cone, nan=0.0) * r.uniform(3.0, 5.0)
            a3 *= boost.astype(np.float32)[:, :, None] * np.array([1.0, 0.97, 0.85], np.float32)
        if math.isfinite(self.visibility_m):
            f = 1.0 - np.exp(-np.minimum(dist, 1e6) / self.visibility_m)
            f[~np.isfinite(dist)] = 0.85 if self.name == "fog" else 0.6  # sky: fog coloured
            f = f.astype(np.float32)[:, :, None]
            a3 *= 1.0 - f
            b = np.clip(f * np.array(self.fog_colour, np.float32), 0, 255).astype(np.uint8)
        self._a = None
        if not np.allclose(a3, 1.0):
            self._a = np.clip(np.rint(a3 * A_ONE), 0, 255).astype(np.uint8)
        self._b = b
        # noise tile twice the frame, read at a per-step offset
        self._offsets = r.integers(0, 1 << 16, (256, 2))
        self._noise = None
        if self.noise_sigma:
            n = r.standard_normal((2 * h, 2 * w, 1)).astype(np.float32) * self.noise_sigma
            n = n + 0.4 * r.standard_normal((2 * h, 2 * w, 3)).astype(np.float32) * self.noise_sigma
            self._noise = np.clip(n + NOISE_BIAS, 0, 255).astype(np.uint8)
        self._streaks = None
        if self.rain:
            tile = np.zeros((2 * h, w, 3), np.uint8)
            count = int(r.uniform(0.002, 0.006) * w * h)
            slant = r.uniform(-0.25, 0.25)
            for _ in range(count):
                x0, y0 = r.uniform(0, w), r.uniform(0, 2 * h)
                ln = r.uniform(0.04, 0.12) * h
                val = int(r.uniform(25, 60))
                cv2.line(
                    tile,
                    (int(x0), int(y0)),
                    (int(x0 + slant * ln), int(y0 + ln)),
                    (val, val, val + 5),
                    1,
                    cv2.LINE_AA,
                )
            self._streaks = np.concatenate((tile, tile))  # wraps vertically
            self._streak_speed = int(max(1, r.uniform(0.15, 0.3) * h))
        self._sprite = None
        if self.glare:
            rad = max(4, int(0.35 * w))
            yy, xx = np.mgrid[-rad : rad + 1, -rad : rad + 1]
            g = np.exp(-(xx**2 + yy**2) / (2 * (0.35 * rad) ** 2))
            g = g + 1.5 * np.exp(-(xx**2 + yy**2) / (2 * (0.06 * rad + 1) ** 2))
            amp = r.uniform(70, 150)
            col = np.array([1.0, 0.92, 0.75] if self.name == "dusk" else [1.0, 0.98, 0.92])
            self._sprite = np.clip(g[:, :, None] * amp * col, 0, 255).astype(np.uint8)
            self._sprite_r = rad
        self._lut_cache: dict = {}
        # a tint is a per-channel factor before the gamma, so after it: t ** gamma. On
        # big frames one table for all channels, then one multiply by a constant map, is
        # far cheaper than a three-channel table (the same frames within a grey level of
        # rounding); small frames keep the exact three-channel table (it costs little)
        self._tint_map = None
        if any(t != 1.0 for t in self.tint) and h * w >= TINT_MAP_MIN_PX:
            f = [round(TINT_ONE * t**self.gamma) for t in self.tint]
            self._tint_map = np.empty((h, w, 3), np.uint8)
            self._tint_map[:] = np.array(f, np.uint8)

    def _lut(self, gain: float) -> np.ndarray:
        """Per-channel table: contrast around mid grey, tint, gamma, `gain`, noise bias."""
        key = round(gain, 3)
        lut = self._lut_cache.get(key)
        if lut is None:
            x = np.arange(256, dtype=np.float64)
            if self._noise is not None:
                x = x - NOISE_BIAS
            x = np.clip(x, 0, 255) * gain
            x = 118.0 + self.contrast * (x - 118.0)
            if self._tint_map is not None or all(t == 1.0 for t in self.tint):
                # one table for all channels (twice as fast as three); a tint comes after
                lut = 255.0 * (np.clip(x, 0, 255) / 255.0) ** self.gamma
                lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8)[None]
            else:
                chans = [255.0 * (np.clip(x * t, 0, 255) / 255.0) ** self.gamma for t in self.tint]
                lut = np.clip(np.rint(np.stack(chans, axis=1)), 0, 255).astype(np.uint8)[None]
            if len(self._lut_cache) < 512:
                self._lut_cache[key] = lut
        return lut

    # -- per frame ---------------------------------------------------------------------------

    def exposure(self, step: int) -> float:
        """The exposure gain at `step` (drifts slowly on some seeds)."""
        if not self.exposure_amp:
            return 1.0
        return 1.0 + self.exposure_amp * math.sin(2 * math.pi * step / self.exposure_period)

    def sun_pixel(self, yaw: float) -> tuple[float, float] | None:
        """Image position of the sun for a car heading `yaw`, or None if behind."""
        cam = self.camera
        rel = self.sun_azimuth_rad - yaw
        ce = math.cos(self.sun_elevation_rad)
        d = (ce * math.cos(rel), ce * math.sin(rel), math.sin(self.sun_elevation_rad))
        ax, rt, dn = cam._axis, cam._right, cam._down
        z = d[0] * ax[0] + d[1] * ax[1] + d[2] * ax[2]
        if z <= 1e-3:
            return None
        u = cam.cx + cam.fx * (d[0] * rt[0] + d[1] * rt[1] + d[2] * rt[2]) / z
        v = cam.cy + cam.fy * (d[0] * dn[0] + d[1] * dn[1] + d[2] * dn[2]) / z
        return u, v

    def apply(self, img: np.ndarray, step: int, yaw: float = 0.0) -> None:
        """Apply this weather to the RGB uint8 frame `img` of step `step`, in place
        (`yaw`: the car's heading, places the sun's glare; 0 = along the world x axis)."""
        h, w = img.shape[:2]
        gain = self.exposure(step)
        if self._a is not None:
            cv2.multiply(img, self._a, dst=img, scale=gain / A_ONE)
            gain = 1.0
        if self._b is not None:
            cv2.add(img, self._b, dst=img)
        if self._streaks is not None:
            r0 = (step * self._streak_speed) % (2 * h)
            cv2.add(img, self._streaks[r0 : r0 + h], dst=img)
        if self._sprite is not None:
            self._add_glare(img, yaw)
        if self._noise is not None:
            oy, ox = self._offsets[step % 256]
            oy, ox = int(oy) % h, int(ox) % w
            cv2.add(img, self._noise[oy : oy + h, ox : ox + w], dst=img)
        cv2.LUT(img, self._lut(gain), dst=img)
        if self._tint_map is not None:
            cv2.multiply(img, self._tint_map, dst=img, scale=1.0 / TINT_ONE)
        if self.blur:
            cv2.blur(img, (1, self.blur), dst=img)
        if self.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                np.copyto(img, cv2.imdecode(buf, cv2.IMREAD_COLOR))

    def _add_glare(self, img: np.ndarray, yaw: float) -> None:
        p = self.sun_pixel(yaw)
        if p is None:
            return
        h, w = img.shape[:2]
        rad = self._sprite_r
        cu, cv_ = round(p[0]), round(p[1])
        c0, c1 = max(cu - rad, 0), min(cu + rad + 1, w)
        r0, r1 = max(cv_ - rad, 0), min(cv_ + rad + 1, h)
        if c1 <= c0 or r1 <= r0:
            return
        roi = img[r0:r1, c0:c1]
        spr = self._sprite[r0 - (cv_ - rad) : r1 - (cv_ - rad), c0 - (cu - rad) : c1 - (cu - rad)]
        cv2.add(roi, spr, dst=roi)
