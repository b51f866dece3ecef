"""Weather: kinds change frames in the expected direction; apply works in place."""

import dataclasses

import cv2
import numpy as np
import pytest

from sim.camera import IpmCamera
from sim.render import RoadRenderer, RoadStyle
from sim.road import LaneRoad
from sim.weather import KINDS, NOISE_BIAS, TINT_MAP_MIN_PX, TINT_ONE, Weather


def _frame(kind, seed=4, cam=None, step=10):
    cam = cam or IpmCamera(200, 66)
    road = LaneRoad.generate(3)
    base = RoadStyle.from_seed(3)
    w = Weather.build(seed, cam, kind)
    style = dataclasses.replace(base, **w.style_overrides(base))
    x, y, yaw = road.pose_at(40.0)
    img = RoadRenderer(road, cam, style, jitter_rows=0).render(x, y, yaw, 40.0, 0.0)
    w.apply(img, step, yaw=yaw)
    return img, w


@pytest.mark.parametrize("kind", KINDS)
def test_apply_keeps_dtype_shape_and_works_in_place(kind):
    cam = IpmCamera(200, 66)
    w = Weather.build(1, cam, kind)
    assert w.name == kind
    img = np.full((66, 200, 3), 120, np.uint8)
    before = img.copy()
    ref = img
    w.apply(img, 3)
    assert img is ref and img.dtype == np.uint8 and img.shape == (66, 200, 3)
    assert not np.array_equal(img, before) or kind == "clear"


def test_night_is_darker_than_day():
    day, _ = _frame("clear")
    night, _ = _frame("night")
    assert night.mean() < 0.5 * day.mean()


def test_fog_lowers_contrast_far_away():
    clear, _ = _frame("clear")
    fog, wf = _frame("fog")
    cam = IpmCamera(200, 66)
    gx, gy, _ = cam.ground_points()
    far = np.isfinite(gx) & (np.hypot(gx, gy) > 30)
    assert far.any()
    assert fog[far].std() < 0.7 * clear[far].std()
    # and towards the fog colour
    fc = np.array(wf.fog_colour, np.float64)
    assert np.abs(fog[far] - fc).mean() < np.abs(clear[far] - fc).mean()


def test_rain_darkens_the_road_via_style():
    cam = IpmCamera()
    base = RoadStyle.from_seed(3)
    wet = Weather.build(0, cam, "rain").style_overrides(base)
    assert sum(wet["asphalt"]) < sum(base.asphalt)
    assert "asphalt" not in Weather.build(0, cam, "clear").style_overrides(base)


def test_deterministic_per_seed_and_kind_drawn_from_seed():
    a, _ = _frame(None, seed=8)
    b, _ = _frame(None, seed=8)
    assert np.array_equal(a, b)
    names = {Weather.build(s, IpmCamera(), None).name for s in range(60)}
    assert len(names) >= 4
    with pytest.raises(ValueError):
        Weather.build(0, IpmCamera(), "snow")


def test_noise_and_exposure_change_over_steps():
    cam = IpmCamera(200, 66)
    for seed in range(40):
        w = Weather.build(seed, cam, "clear")
        if w.noise_sigma or w.exposure_amp:
            break
    a = np.full((66, 200, 3), 100, np.uint8)
    b = a.copy()
    w.apply(a, 5)
    w.apply(b, 37)
    assert not np.array_equal(a, b)


def test_glare_brightens_where_the_sun_is_in_view():
    cam = IpmCamera(200, 66)
    w = next(w for s in range(200) if (w := Weather.build(s, cam, "dusk")).glare)
    yaw = w.sun_azimuth_rad  # driving towards the sun
    u, _v = w.sun_pixel(yaw)
    assert abs(u - cam.cx) < 1.0
    toward = np.full((66, 200, 3), 60, np.uint8)
    away = toward.copy()
    w.apply(toward, 0, yaw=yaw)
    w.apply(away, 0, yaw=yaw + np.pi)
    assert toward.mean() > away.mean()


def _reference_colour_stage(w, img: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """The colour stage as one three-channel table: contrast, tint, gamma (the earlier form)."""
    x = np.arange(256, dtype=np.float64)
    if w._noise is not None:
        x = x - NOISE_BIAS
    x = 118.0 + w.contrast * (np.clip(x, 0, 255) * gain - 118.0)
    chans = [255.0 * (np.clip(x * t, 0, 255) / 255.0) ** w.gamma for t in w.tint]
    lut = np.clip(np.rint(np.stack(chans, axis=1)), 0, 255).astype(np.uint8)[None]
    return cv2.LUT(img, lut)


@pytest.mark.parametrize("size", [(200, 66), (400, 300)])
@pytest.mark.parametrize("kind", KINDS)
def test_colour_stage_matches_the_per_channel_table(kind, size):
    """Untinted kinds use one table for all channels (a faster cv2.LUT), exactly the
    per-channel table's pixels. Tinted kinds keep the exact per-channel table on small
    frames; on big ones one table then a constant tint map, within rounding."""
    w_, h_ = size
    w = Weather.build(2, IpmCamera(w_, h_), kind)
    lut = w._lut(1.0)
    img = np.random.default_rng(1).integers(0, 256, (h_, w_, 3), dtype=np.uint8)
    out = cv2.LUT(img, lut)
    if w._tint_map is not None:
        cv2.multiply(out, w._tint_map, dst=out, scale=1.0 / TINT_ONE)
    want = _reference_colour_stage(w, img)
    d = np.abs(out.astype(np.int16) - want)
    tinted = len(set(w.tint)) > 1
    assert (w._tint_map is not None) == (tinted and w_ * h_ >= TINT_MAP_MIN_PX)
    assert lut.shape == ((1, 256, 3) if tinted and w._tint_map is None else (1, 256))
    if w._tint_map is None:
        assert not d.any()
    else:
        assert d.mean() < 0.6, d.mean()
        # a grey level of rounding, more only where the contrast pushed past white
        assert np.percentile(d, 99) <= 2
