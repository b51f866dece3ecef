"""Scenery: objects drawn where the camera model projects them, occlusion, clipping,
collisions with objects and traffic, determinism."""

import math

import numpy as np

from sim.camera import IpmCamera
from sim.render import RoadRenderer, RoadStyle
from sim.road import CurveSegment, LaneRoad
from sim.scenery import Scenery

RED, BLUE = (250, 10, 10), (10, 10, 250)


def _straight():
    return LaneRoad.from_segments([CurveSegment(400.0, 0.0)], 300.0, 3.5, seed=0)


def _frame(road, cam, sc, s, t=0.0):
    x, y, yaw = road.pose_at(s)
    img = RoadRenderer(road, cam, RoadStyle.plain(), jitter_rows=0).render(x, y, yaw, s, 0.0)
    sc.draw(img, x, y, yaw, s, 0.0, t)
    return img


def _pixel(cam, road, s_car, s_obj, lat, z):
    """Where the camera projects the road point (s_obj, lat) at height z (car at s_car)."""
    X = s_obj - s_car  # straight road along +x
    u, v = cam.project(np.array([[X, lat, z]]))
    return round(float(u[0])), round(float(v[0]))


def test_pole_appears_where_projected_and_not_behind_or_beyond():
    road, cam = _straight(), IpmCamera(200, 66)
    sc = Scenery.build(road, cam, 0, objects=False, traffic=False)
    sc.add_pole(30.0, 3.0, 4.0, RED, half_width=0.3)
    u, v = _pixel(cam, road, 10.0, 30.0, 3.0, 2.0)
    assert 0 <= u < 200 and 0 <= v < 66
    img = _frame(road, cam, sc, 10.0)
    assert tuple(img[v, u]) == RED
    plain = _frame(road, cam, Scenery.build(road, cam, 0, False, False), 10.0)
    assert not (plain == np.array(RED)).all(axis=2).any()
    # behind the camera: nothing red anywhere
    assert not (_frame(road, cam, sc, 40.0) == np.array(RED)).all(axis=2).any()
    # beyond the far clip (about 85 m ahead)
    far = Scenery.build(road, cam, 0, objects=False, traffic=False)
    far.add_pole(150.0, 0.0, 30.0, RED, half_width=2.0)
    assert not (_frame(road, cam, far, 10.0) == np.array(RED)).all(axis=2).any()


def test_near_object_hides_far_one():
    road, cam = _straight(), IpmCamera(200, 66)
    sc = Scenery.build(road, cam, 0, objects=False, traffic=False)
    sc.add_pole(20.0, 0.0, 3.0, RED, half_width=0.5)  # near, added first
    sc.add_pole(40.0, 0.0, 3.0, BLUE, half_width=2.0)  # far and wider, added last
    u, v = _pixel(cam, road, 0.0, 20.0, 0.0, 1.5)
    img = _frame(road, cam, sc, 0.0)
    assert tuple(img[v, u]) == RED
    u2, v2 = _pixel(cam, road, 0.0, 40.0, 1.6, 1.5)  # the far pole beside the near one
    assert tuple(img[v2, u2]) == BLUE


def test_object_beside_the_camera_is_clipped_not_dropped():
    road, cam = _straight(), IpmCamera(200, 66)
    sc = Scenery.build(road, cam, 0, objects=False, traffic=False)
    sc.add_box(12.0, 3.0, 10.0, 0.5, 2.5, RED)  # a long wall from 2 m to 22 m ahead
    img = _frame(road, cam, sc, 10.0)  # the wall starts behind the camera
    u, v = _pixel(cam, road, 10.0, 16.0, 2.5, 1.2)
    assert tuple(img[v, u]) == RED


def test_collisions_with_objects_and_traffic():
    road, cam = _straight(), IpmCamera(200, 66)
    sc = Scenery.build(road, cam, 0, objects=False, traffic=False)
    sc.add_box(50.0, 0.5, 1.0, 0.5, 1.0, RED)
    assert sc.collides(49.0, 0.0, 0.0)
    assert not sc.collides(40.0, 0.0, 0.0)
    assert not sc.collides(50.0, -2.0, 0.0)
    tr = Scenery.build(road, cam, 3, objects=False, traffic=True, traffic_density=1.5)
    assert len(tr.traffic) > 0
    lane_w = road.lane_width
    for t in np.linspace(0.0, 30.0, 61):
        # the ego in its own lane never touches the oncoming traffic beside it
        for s in (0.0, 50.0, 120.0):
            assert not tr.collides(s, 0.0, float(t))
    st = tr.traffic.s_at(7.0)
    k = int(np.argmin(np.abs(st - 100.0)))
    assert tr.collides(float(st[k]) + 1.0, float(tr.traffic.lane[k]), 7.0)
    assert abs(tr.traffic.lane[k] - lane_w) < 1e-6  # the oncoming lane of a 2-lane road


def test_traffic_moves_and_none_in_the_ego_lane():
    road = LaneRoad.generate(11)
    sc = Scenery.build(road, IpmCamera(), 11, objects=False, traffic=True, traffic_density=1.0)
    assert len(sc.traffic) > 0
    assert not np.any((np.abs(sc.traffic.lane) < 1e-6) & (sc.traffic.sign > 0))
    assert not np.allclose(sc.traffic.s_at(0.0), sc.traffic.s_at(2.0))


def test_deterministic_per_seed_and_varies_between_seeds():
    road, cam = LaneRoad.generate(5), IpmCamera(200, 66)
    a = _frame(road, cam, Scenery.build(road, cam, 5, True, True, sun=(1.0, 0.6)), 30.0, 3.0)
    b = _frame(road, cam, Scenery.build(road, cam, 5, True, True, sun=(1.0, 0.6)), 30.0, 3.0)
    assert np.array_equal(a, b)
    frames = [
        _frame(road, cam, Scenery.build(road, cam, k, True, True), 30.0, 3.0) for k in (6, 7, 8)
    ]
    assert any(not np.array_equal(a, f) for f in frames)


def test_ground_shadows_lie_away_from_the_sun():
    road, cam = _straight(), IpmCamera()
    az = math.radians(90.0)  # sun to the left (+y): shadows fall to the right
    sc = Scenery.build(road, cam, 2, objects=True, traffic=False, sun=(az, math.radians(40)))
    sh = sc.ground_shadows()
    assert sh is not None
    polys, s = sh
    assert polys.ndim == 3 and polys.shape[1:] == (16, 2) and len(s) == len(polys)
    assert np.all(np.diff(s) >= 0)
    assert Scenery.build(road, cam, 2, objects=True, traffic=False).ground_shadows() is None
    crowns = [p for kind, _s, p in sc._ps.casters if kind == "crown"]
    if crowns:
        y = crowns[0][1]
        k = next(i for i, (_kind, _s, p) in enumerate(sc._ps.casters) if p == crowns[0])
        order = np.argsort([c[1] for c in sc._ps.casters], kind="stable")
        poly = polys[int(np.flatnonzero(order == k)[0])]
        assert poly[:, 1].mean() < y  # shifted to -y, away from the sun


def test_draw_on_every_frame_of_a_drive_keeps_the_image_valid():
    road, cam = LaneRoad.generate(9), IpmCamera(160, 120)
    sc = Scenery.build(road, cam, 9, True, True, night=True, light=0.3)
    r = RoadRenderer(road, cam)
    for i in range(0, 400, 7):
        s = float(i)
        x, y, yaw = road.pose_at(s)
        img = r.render(x, y, yaw, s, 0.0)
        sc.draw(img, x, y, yaw, s, 0.0, i * 0.05)
        assert img.dtype == np.uint8 and img.shape == (120, 160, 3)
