"""Road geometry, lookup and the camera's projection and horizon."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim.camera import IpmCamera
from sim.render import RoadRenderer, RoadStyle
from sim.road import CurveSegment, LaneRoad


@pytest.mark.parametrize("seed", [0, 1, 2, 1_000_000])
def test_generated_road_is_long_smooth_and_not_too_sharp(seed):
    road = LaneRoad.generate(seed, 1000.0)
    assert road.s[-1] >= 1000.0 and 3.0 <= road.lane_width <= 4.0
    assert np.abs(road.curvature).max() <= 1 / 25.0 + 1e-9
    assert np.abs(road.curvature).max() > 1 / 300.0  # it does bend
    step = np.hypot(np.diff(road.x), np.diff(road.y))
    assert np.allclose(step, road.ds, atol=1e-3)
    same = LaneRoad.generate(seed, 1000.0)
    assert np.array_equal(road.x, same.x)


def test_locate_recovers_offsets_on_a_curve():
    road = LaneRoad.from_segments([CurveSegment(40, 0.0), CurveSegment(300, 1 / 30.0)], 200.0)
    for s, lateral in ((20.0, 0.7), (100.0, -1.2), (150.3, 0.0)):
        x, y, h = road.pose_at(s)
        px, py = x - lateral * math.sin(h), y + lateral * math.cos(h)
        s2, lat2, h2 = road.locate(px, py, hint_s=s - 3.0)
        assert s2 == pytest.approx(s, abs=0.02) and lat2 == pytest.approx(lateral, abs=0.01)
        assert h2 == pytest.approx(h, abs=1e-3)
        assert road.locate(px, py)[1] == pytest.approx(lateral, abs=0.01)


def test_bad_road_arguments():
    with pytest.raises(TypeError, match="seed"):
        LaneRoad.generate("abc")
    with pytest.raises(ValueError, match="length_m"):
        LaneRoad.generate(1, -5.0)


def test_point_ahead_on_centre_line_projects_to_centre_column_and_horizon_matches_pitch():
    cam = IpmCamera(200, 66, 90.0, mount_height_m=1.5, pitch_deg=15.0)
    u, v = cam.project(np.array([[20.0, 0.0, 0.0], [1e6, 0.0, 0.0], [20.0, 2.0, 0.0]]))
    assert u[0] == pytest.approx(cam.cx) and u[2] < cam.cx  # left of centre is left in image
    assert v[1] == pytest.approx(cam.cy - cam.fy * math.tan(math.radians(15.0)), abs=1e-3)
    assert cam.horizon_row == pytest.approx(v[1], abs=1e-3)
    gx, gy, elev = cam.ground_points()
    rows_sky = np.isnan(gx[:, 0])
    assert rows_sky.sum() == math.floor(cam.horizon_row) + 1  # rows at/above the horizon
    assert (elev[rows_sky] >= 0).all()
    # a ground pixel's point projects back onto the same pixel
    u2, v2 = cam.project(np.array([[gx[50, 30], gy[50, 30], 0.0]]))
    assert (u2[0], v2[0]) == pytest.approx((30.0, 50.0), abs=1e-6)


def test_straight_road_renders_symmetric_markings_and_sky_above_horizon():
    road = LaneRoad.from_segments([CurveSegment(400, 0.0)], 200.0, lane_width=3.5)
    cam = IpmCamera(200, 66, 90.0, pitch_deg=15.0)
    style = dataclasses.replace(RoadStyle.plain(), dash_len_m=5.0, dash_gap_m=0.5)
    img = RoadRenderer(road, cam, style, jitter_rows=0).render(0.0, 0.0, 0.0, 0, 0)
    row = img[60].astype(int).sum(axis=1)
    bright = np.flatnonzero(row > 600)  # white paint: the centre dashes and right edge line
    left, right = bright[bright < cam.cx], bright[bright > cam.cx]
    assert left.size and right.size
    # lane centre straight ahead: markings at +-w/2 sit symmetric about the centre column
    assert (left.mean() + right.mean()) / 2 == pytest.approx(cam.cx, abs=1.5)
    sky = img[: int(cam.horizon_row)]
    assert (sky[..., 2] > sky[..., 1]).all()  # blue
    assert (img[-1, :, 2] <= img[-1, :, 0] + 10).all()  # ground, not sky, at the bottom
