"""Road layouts (sim.lanes), varied roads, the expert on 1-4 lane roads, markings drawn."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim.camera import IpmCamera
from sim.expert import ExpertDriver
from sim.lanes import LaneLine, RoadLayout
from sim.looks import lane_departure
from sim.render import RoadRenderer, RoadStyle
from sim.road import CurveSegment, LaneRoad
from sim.vehicle import BicycleModel, VehicleParams, VehicleState


@pytest.mark.parametrize("w", [3.0, 3.5, 3.9])
def test_plain_layout_is_the_original_road(w):
    lay = RoadLayout.plain(w)
    assert [(ln.offset_m, ln.kind, ln.colour) for ln in lay.lines()] == [
        (-0.5 * w, "solid", "white"),
        (0.5 * w, "dashed", "white"),
        (1.5 * w, "solid", "white"),
    ]
    assert lay.paved_edges() == (-0.5 * w - 0.35, 1.5 * w + 0.35)
    assert lay.lane_centres() == [(0.0, 1), (w, -1)]
    assert lay.ego_lane_bounds() == (-0.5 * w, 0.5 * w)
    assert lay.side_bands() == []
    right, left = lay.roadside()
    assert right < -0.5 * w - 0.35 and left > 1.5 * w + 0.35


@pytest.mark.parametrize("seed", [0, 1, 7, 1_000_000])
def test_generated_roads_keep_the_plain_layout(seed):
    road = LaneRoad.generate(seed, 300.0)
    assert road.layout == RoadLayout.plain(road.lane_width)
    w = road.lane_width
    assert road.paved_edges() == (-0.5 * w - 0.35, 1.5 * w + 0.35)
    assert road.off_road(-0.5 * w - 0.4) and not road.off_road(1.5 * w + 0.3)


def test_varied_layouts_are_consistent_and_deterministic():
    seen = set()
    for seed in range(120):
        lay = RoadLayout.from_seed(seed)
        assert lay == RoadLayout.from_seed(seed)
        w = lay.lane_width
        assert 2.7 <= w <= 3.8 and 5.0 <= lay.speed_mps <= 25.0
        centres = lay.lane_centres()
        assert len(centres) == lay.lanes_same + lay.lanes_oncoming
        assert centres[lay.ego_lane] == (0.0, 1)
        assert [d for _, d in centres] == [1] * lay.lanes_same + [-1] * lay.lanes_oncoming
        offs = [ln.offset_m for ln in lay.lines()]
        assert offs == sorted(offs)
        # every lane lies between two lines exactly one lane width apart
        for c, _ in centres:
            assert any(math.isclose(o, c - w / 2) for o in offs)
            assert any(math.isclose(o, c + w / 2) for o in offs)
        pr, pl = lay.paved_edges()
        assert pr <= offs[0] and pl >= offs[-1]
        rr, rl = lay.roadside()
        br, bl = lay.built_edges()
        assert rr < br <= pr < 0 < pl <= bl < rl
        seen.add((lay.lanes_same, lay.lanes_oncoming > 0, lay.centre_kind, lay.centre_colour))
        seen.add(("ego", lay.ego_lane))
        seen.add(("extras", lay.kerb, lay.sidewalk_m > 0, lay.barrier, lay.median_m > 0))
    # the variety the brief asks for shows up
    assert {n for n, *_ in seen if isinstance(n, int)} == {1, 2, 3, 4}
    assert any(k[1] is False for k in seen if isinstance(k[0], int))  # one-way roads
    kinds = {(k[2], k[3]) for k in seen if isinstance(k[0], int) and k[1]}
    assert {("double_solid", "yellow"), ("solid", "yellow"), ("dashed", "white")} <= kinds
    assert {("ego", 3)} <= seen
    barriers = {k[3] for k in seen if k[0] == "extras"}
    assert barriers == {"none", "guard_rail", "concrete"}


def test_from_seed_takes_lanes_and_speed_and_rejects_bad_values():
    for n in (1, 2, 3, 4):
        lay = RoadLayout.from_seed(5, lanes_per_direction=n, speed_mps=22.0)
        assert lay.lanes_same == n and lay.lanes_oncoming in (0, n) and lay.speed_mps == 22.0
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match="lanes_per_direction"):
            RoadLayout.from_seed(1, lanes_per_direction=bad)
    with pytest.raises(ValueError, match="speed_mps"):
        RoadLayout.from_seed(1, speed_mps=30.0)
    with pytest.raises(ValueError, match="ego_lane"):
        RoadLayout(3.5, lanes_same=2, ego_lane=2)
    with pytest.raises(ValueError, match="look"):
        LaneRoad.generate(1, 100.0, look="fancy")


@pytest.mark.parametrize("speed", [5.0, 25.0])
def test_varied_roads_bend_no_sharper_than_their_speed_allows(speed):
    for seed in range(6):
        road = LaneRoad.generate(seed, 1500.0, "varied", speed_mps=speed)
        r_min = 1.0 / np.abs(road.curvature).max()
        assert r_min >= max(25.0, speed**2 / 2.0) - 1e-6
        assert road.layout.speed_mps == speed
        assert np.array_equal(road.x, LaneRoad.generate(seed, 1500.0, "varied", speed_mps=speed).x)


def _drive_expert(road: LaneRoad, speed: float, metres: float) -> tuple[float, int]:
    """Largest |lateral| and the number of lane-departure steps of the expert."""
    params = VehicleParams()
    x, y, yaw = road.pose_at(0.0)
    car = BicycleModel(params, VehicleState(x, y, yaw, speed))
    expert = ExpertDriver(road, speed, params=params)
    located = road.locate(x, y, 0.0)
    worst, departures = 0.0, 0
    while located[0] < metres:
        st = car.step(*expert.act(car.state, located))
        located = road.locate(st.x, st.y, located[0])
        worst = max(worst, abs(located[1]))
        departures += lane_departure(road, located[1])
    return worst, departures


@pytest.mark.parametrize("lanes", [1, 2, 3, 4])
@pytest.mark.parametrize("speed", [5.0, 25.0])
def test_expert_keeps_its_lane_on_multi_lane_roads(lanes, speed):
    for seed in (3, 40, 77):
        road = LaneRoad.generate(seed, 400.0, "varied", lanes, speed)
        assert road.layout.lanes_same == lanes
        worst, departures = _drive_expert(road, speed, 350.0)
        assert departures == 0, (seed, worst, road.lane_width)
        assert worst < 0.3


def _straight(layout: RoadLayout) -> LaneRoad:
    return LaneRoad.from_segments([CurveSegment(400.0, 0.0)], 200.0, layout.lane_width, 0, layout)


def _yellow(px: np.ndarray) -> bool:
    r, g, b = (int(c) for c in px)
    return r > b + 60 and g > b + 40


def test_solid_yellow_centre_line_appears_where_the_camera_projects_it():
    lay = dataclasses.replace(
        RoadLayout.from_seed(9, lanes_per_direction=2),
        lanes_oncoming=2,
        ego_lane=1,
        centre_kind="solid",
        centre_colour="yellow",
        median_m=0.0,
        wear=0.0,
    )
    road = _straight(lay)
    centre = [ln for ln in lay.lines() if ln.role == "centre"]
    assert centre == [LaneLine(0.5 * lay.lane_width, "solid", "yellow", "centre")]
    cam = IpmCamera(320, 240, 90.0, 1.5, 15.0, 1.0)
    img = RoadRenderer(road, cam, RoadStyle.plain(), jitter_rows=0).render(0, 0, 0, 0, 0)
    hits = []
    for ahead in (4.0, 6.0, 9.0):
        for y, want in ((centre[0].offset_m, True), (0.0, False), (-lay.lane_width, False)):
            u, v = cam.project(np.array([[ahead, y, 0.0]]))
            assert 0 <= u[0] < 320 and 0 <= v[0] < 240
            hits.append(_yellow(img[round(v[0]), round(u[0])]) == want)
    assert all(hits)
    # a white dashed centre line instead: no yellow anywhere on the road
    white = dataclasses.replace(lay, centre_kind="dashed", centre_colour="white")
    img2 = RoadRenderer(_straight(white), cam, RoadStyle.plain(), jitter_rows=0).render(
        0, 0, 0, 0, 0
    )
    r, g, b = (img2[..., k].astype(int) for k in range(3))
    assert not ((r > b + 60) & (g > b + 40)).any()


def test_worn_lines_miss_paint_and_are_deterministic():
    lay = dataclasses.replace(RoadLayout.from_seed(2, lanes_per_direction=3), wear=0.5, seed=4)
    worn = [k for k, ln in enumerate(lay.lines()) if ln.worn]
    assert worn
    gaps = lay.wear_stretches(worn[0], 0.0, 1000.0)
    assert gaps.shape[1] == 2 and (gaps[:, 1] > gaps[:, 0]).all()
    assert np.array_equal(gaps, lay.wear_stretches(worn[0], 0.0, 1000.0))
    fresh = dataclasses.replace(lay, wear=0.0)
    cam = IpmCamera(200, 66, 90.0, 1.5, 15.0, 1.0)
    road_w, road_f = _straight(lay), _straight(fresh)
    # over a long drive the worn road shows less paint than the fresh one
    paint = []
    for road in (road_w, road_f):
        ren = RoadRenderer(road, cam, RoadStyle.plain(), jitter_rows=0)
        total = 0
        for s in range(0, 180, 6):
            x, y, yaw = road.pose_at(float(s))
            total += int((ren.render(x, y, yaw, float(s), 0.0).min(axis=2) > 200).sum())
        paint.append(total)
    assert paint[0] < paint[1]
