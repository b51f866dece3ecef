"""Weather: kinds change frames in the expected direction; apply works in place."""

import dataclasses

import cv2
import numpy as np
import pytest

from sim.camera import IpmCamera
from sim.render import RoadRenderer, RoadStyle
from sim.road import LaneRoad
from sim.weather import KINDS, Weather


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


@pytest.mark.parametrize("kind", KINDS)
def test_lut_is_single_channel_only_when_all_channels_agree(kind):
    """The per-channel table collapses to one (a faster cv2.LUT) only when it is the
    same for every channel, so frames do not change."""
    w = Weather.build(2, IpmCamera(200, 66), kind)
    lut = w._lut(1.0)
    img = np.random.default_rng(1).integers(0, 256, (66, 200, 3), dtype=np.uint8)
    if lut.ndim == 2:  # one table: the same values as the three-channel form
        assert len(set(w.tint)) == 1
        out = cv2.LUT(img, lut)
        assert np.array_equal(out, cv2.LUT(img, np.repeat(lut[:, :, None], 3, axis=2)))
    else:
        assert lut.shape == (1, 256, 3)
        assert not (lut == lut[:, :, :1]).all()
