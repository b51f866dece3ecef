"""A camera and a vehicle of the user's choosing: mount and vehicle keywords of DriveEnv,
`camera_spec()`/`vehicle_spec()`, the renderer's sign conventions checked on pixels,
range checks, determinism, and the expert in other vehicles."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401  (registers the envs)
from sim.camera import IpmCamera, camera_axes
from sim.contract import (
    CAMERA_INFO_KEYS,
    CAMERA_SPEC_KEYS,
    VEHICLE_SPEC_KEYS,
    check_contract,
)
from sim.env import DriveEnv
from sim.expert import ExpertDriver
from sim.limits import LIMITS
from sim.render import RoadRenderer, RoadStyle
from sim.road import CurveSegment, LaneRoad
from sim.seeds import eval_seeds
from sim.vehicle import VehicleParams, VehicleState

MOUNT = {
    "camera_height_m": 1.8,
    "camera_pitch_deg": 10.0,
    "camera_roll_deg": 4.0,
    "camera_yaw_deg": -6.0,
    "camera_x_m": 1.6,
    "camera_y_m": 0.4,
}
VEHICLE = {"wheelbase_m": 2.5, "max_steer_deg": 40.0}


# ---- specs --------------------------------------------------------------------------


def test_default_specs_are_the_training_camera_and_vehicle():
    env = DriveEnv(route_length_m=50.0)
    spec = env.unwrapped.camera_spec()
    assert tuple(spec) == CAMERA_SPEC_KEYS
    assert {k: spec[k] for k in CAMERA_INFO_KEYS} == env.camera_info()
    assert spec["width"] == 200 and spec["height"] == 66 and spec["fx"] == pytest.approx(100.0)
    assert {k: spec[k] for k in CAMERA_SPEC_KEYS[6:]} == {
        "x_m": 1.0,
        "y_m": 0.0,
        "height_m": 1.5,
        "pitch_deg": 15.0,
        "roll_deg": 0.0,
        "yaw_deg": 0.0,
    }
    assert env.unwrapped.vehicle_spec() == {"wheelbase_m": 2.9, "max_steer_deg": 70.0}
    assert env.vehicle_params == VehicleParams()  # the default vehicle, exactly


def test_specs_report_the_chosen_camera_and_vehicle():
    env = gym.make(
        "SteeringAgent/Drive-v0",
        width=160,
        height=120,
        fov_deg=70.0,
        route_length_m=50.0,
        **MOUNT,
        **VEHICLE,
    )
    spec = env.unwrapped.camera_spec()
    assert tuple(spec) == CAMERA_SPEC_KEYS
    fx = 80.0 / math.tan(math.radians(35.0))
    assert (spec["width"], spec["height"], spec["cx"], spec["cy"]) == (160, 120, 80.0, 60.0)
    assert spec["fx"] == pytest.approx(fx) and spec["fy"] == pytest.approx(fx)
    assert spec["x_m"] == 1.6 and spec["y_m"] == 0.4 and spec["height_m"] == 1.8
    assert (spec["pitch_deg"], spec["roll_deg"], spec["yaw_deg"]) == (10.0, 4.0, -6.0)
    vspec = env.unwrapped.vehicle_spec()
    assert tuple(vspec) == VEHICLE_SPEC_KEYS and vspec == VEHICLE
    p = env.unwrapped.vehicle_params
    assert p.wheelbase_m == 2.5 and p.rear_to_ref_m == 1.25
    assert p.max_wheel_angle_rad == pytest.approx(math.radians(40.0))
    env.reset(seed=0)
    assert env.unwrapped.car.params is p and env.unwrapped.expert.params is p
    env.unwrapped.camera_spec()["x_m"] = 99.0  # a copy: the env's camera is unchanged
    assert env.unwrapped.camera_spec()["x_m"] == 1.6
    env.close()


@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env_and_contract_with_a_chosen_camera_and_vehicle(render_mode):
    env = gym.make(
        "SteeringAgent/Drive-v0",
        route_length_m=100.0,
        render_mode=render_mode,
        **MOUNT,
        **VEHICLE,
    )
    check_env(env.unwrapped)
    check_contract(env.unwrapped, seed=3, steps=5)
    env.close()
    env = DriveEnv(
        width=96,
        height=64,
        route_length_m=100.0,
        camera_roll_deg=-30.0,
        camera_yaw_deg=40.0,
        camera_pitch_deg=-20.0,
        camera_y_m=-2.0,
        camera_x_m=-1.0,
        wheelbase_m=3.2,
        max_steer_deg=55.0,
    )
    check_contract(env, seed=4, steps=5)


# ---- range checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, bad",
    [
        ("camera_pitch_deg", -31.0),
        ("camera_pitch_deg", 61.0),
        ("camera_roll_deg", 46.0),
        ("camera_roll_deg", -46.0),
        ("camera_yaw_deg", 45.5),
        ("camera_yaw_deg", -90.0),
        ("camera_height_m", 0.1),
        ("camera_height_m", 10.5),
        ("camera_x_m", 6.0),
        ("camera_y_m", -3.5),
        ("fov_deg", 5.0),
        ("wheelbase_m", 1.4),
        ("wheelbase_m", 6.1),
        ("max_steer_deg", 9.0),
        ("max_steer_deg", 89.5),
        ("max_steer_deg", float("nan")),
    ],
)
def test_out_of_range_mount_or_vehicle_names_the_keyword_and_range(key, bad):
    lo, hi, _ = LIMITS[key]
    with pytest.raises(ValueError, match=rf"^{key}=.*within {lo:g}\.\.{hi:g}"):
        DriveEnv(route_length_m=50.0, **{key: bad})


@pytest.mark.parametrize("key", ["camera_y_m", "camera_roll_deg", "max_steer_deg"])
def test_non_number_mount_or_vehicle_is_a_type_error(key):
    with pytest.raises(TypeError, match=key):
        DriveEnv(route_length_m=50.0, **{key: "10"})


@pytest.mark.parametrize("key", list(LIMITS))
def test_range_limits_themselves_are_accepted(key):
    lo, hi, _ = LIMITS[key]
    for v in (lo, hi):
        env = DriveEnv(width=32, height=24, route_length_m=50.0, **{key: v})
        obs, _ = env.reset(seed=0)
        assert obs["image"].shape == (24, 32, 3)


# ---- the camera model ---------------------------------------------------------------


def test_default_mount_takes_the_pitch_only_arithmetic():
    axis, right, down = camera_axes(15.0)
    p = math.radians(15.0)
    assert np.array_equal(axis, [math.cos(p), 0.0, -math.sin(p)])
    assert np.array_equal(right, [0.0, -1.0, 0.0])
    assert np.array_equal(down, [-math.sin(p), 0.0, -math.cos(p)])
    # the general rotation agrees with it (to rounding) as roll and yaw go to 0
    for got, want in zip(camera_axes(15.0, 1e-12, -1e-12), (axis, right, down), strict=True):
        assert got == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("pitch, roll, yaw", [(15, 0, 30), (15, 20, 0), (-20, -35, 40)])
def test_rotated_camera_axes_are_orthonormal_and_right_handed(pitch, roll, yaw):
    axis, right, down = camera_axes(pitch, roll, yaw)
    m = np.stack([right, down, axis], axis=1)  # OpenCV camera x, y, z in the car frame
    assert m.T @ m == pytest.approx(np.eye(3), abs=1e-12)
    assert np.linalg.det(m) == pytest.approx(1.0)


def test_conventions_on_the_axes():
    # yaw + looks left: the optical axis has a +Y (left) component
    assert camera_axes(0.0, 0.0, 30.0)[0][1] == pytest.approx(math.sin(math.radians(30)))
    # pitch + looks down
    assert camera_axes(20.0)[0][2] < 0
    # roll + turns the camera clockwise seen from behind: its right side goes down
    right = camera_axes(0.0, 20.0, 0.0)[1]
    assert right[2] == pytest.approx(-math.sin(math.radians(20))) and right[1] < 0


def test_rotated_offset_camera_projects_its_ground_points_back():
    cam = IpmCamera(160, 120, 80.0, 1.7, 12.0, 1.3, mount_y_m=-0.6, roll_deg=8.0, yaw_deg=-15.0)
    gx, gy, elev = cam.ground_points()
    for r, c in ((100, 20), (80, 140), (119, 0), (60, 80)):
        assert np.isfinite(gx[r, c])
        u, v = cam.project(np.array([[gx[r, c], gy[r, c], 0.0]]))
        assert (u[0], v[0]) == pytest.approx((c, r), abs=1e-6)
    # the horizon: rays level there, sky above it and ground below, column by column
    cols = np.arange(cam.width)
    rows = cam.horizon_rows(cols)
    for c in (0, 40, 80, 159):
        r = int(np.floor(rows[c]))
        if 0 <= r < cam.height - 1:
            assert elev[r, c] >= 0 > elev[r + 1, c]
    assert cam.horizon_row == pytest.approx(rows[80])  # cx = 80: the centre column's


# ---- pixels: the renderer draws the camera as the conventions say -------------------


def _straight_view(**camera) -> tuple[IpmCamera, np.ndarray]:
    """A straight road (long dashes, plain look) seen by a camera of a car on the lane
    centre, no shake."""
    road = LaneRoad.from_segments([CurveSegment(400, 0.0)], 200.0, lane_width=3.5)
    cam = IpmCamera(200, 100, 90.0, **camera)
    style = dataclasses.replace(RoadStyle.plain(), dash_len_m=5.0, dash_gap_m=0.5)
    return cam, RoadRenderer(road, cam, style, jitter_rows=0).render(0.0, 0.0, 0.0, 0.0, 0.0)


def _paint_runs(row: np.ndarray) -> list[float]:
    """Centre columns of the runs of white paint in one image row."""
    bright = np.flatnonzero(row.astype(int).sum(axis=1) > 600)
    if bright.size == 0:
        return []
    runs = np.split(bright, np.flatnonzero(np.diff(bright) > 1) + 1)
    return [float(r.mean()) for r in runs]


def _predicted_columns(cam: IpmCamera, r: int, lateral: float) -> float:
    """Column where image row `r` sees the ground line at car-frame Y = `lateral`."""
    _, gy, _ = cam.ground_points()
    g = gy[r]
    if not np.isfinite(g).all() or not g.min() < lateral < g.max():
        return math.nan
    return float(np.interp(lateral, g[::-1], np.arange(cam.width, dtype=float)[::-1]))


# the markings a car on the lane centre sees: centre dashes (left), right edge line
MARKS_Y = (1.75, -1.65)


def _marking_midpoints(cam: IpmCamera, img: np.ndarray) -> list[tuple[float, float]]:
    """(measured, predicted) midpoint columns of the two lane markings, per usable row."""
    out = []
    for r in range(cam.height):
        want = [_predicted_columns(cam, r, y) for y in MARKS_Y]
        if not all(4 < w < cam.width - 5 for w in want):
            continue
        runs = _paint_runs(img[r])
        if len(runs) < 2:
            continue
        got = [min(runs, key=lambda c, w=w: abs(c - w)) for w in want]
        if all(abs(g - w) < 3 for g, w in zip(got, want, strict=True)):
            out.append((0.5 * sum(got), 0.5 * sum(want)))
    return out


@pytest.mark.parametrize(
    "camera, side",
    [
        ({}, 0),
        ({"yaw_deg": 10.0}, +1),  # looks left: the lane ahead is right of centre
        ({"yaw_deg": -10.0}, -1),
        ({"mount_y_m": 0.6}, +1),  # sits left: the lane centre is to its right
        ({"mount_y_m": -0.6}, -1),
    ],
)
def test_yawed_or_offset_camera_sees_the_lane_on_the_expected_side(camera, side):
    cam, img = _straight_view(**camera)
    mids = _marking_midpoints(cam, img)
    assert len(mids) >= 15, f"only {len(mids)} rows show both markings"
    got = np.array([m[0] for m in mids])
    want = np.array([m[1] for m in mids])
    assert np.abs(got - want).max() < 1.5  # drawn where the camera model puts them
    lane_centre = got - cam.cx
    if side == 0:  # the markings' midpoint is 5 cm left of the lane centre: near rows
        assert abs(lane_centre.mean()) < 1.5 and np.abs(lane_centre).max() < 2.5
    else:
        assert (side * lane_centre > 3.0).all(), lane_centre


def _first_ground_row(img: np.ndarray, c: int) -> int:
    """The first row from the top of column `c` that is not sky (blue above green)."""
    col = img[:, c].astype(int)
    ground = np.flatnonzero(col[:, 2] <= col[:, 1])
    return int(ground[0]) if ground.size else img.shape[0]


@pytest.mark.parametrize("roll", [10.0, -10.0])
def test_rolled_camera_horizon_tilts_the_expected_way(roll):
    cam, img = _straight_view(pitch_deg=5.0, roll_deg=roll)
    left, right = 50, 150
    row_l, row_r = _first_ground_row(img, left), _first_ground_row(img, right)
    want_l, want_r = cam.horizon_rows(np.array([left, right]))
    # + roll (clockwise seen from behind): the horizon rises to the right of the image
    assert np.sign(row_l - row_r) == np.sign(roll)
    assert abs(row_l - row_r) > 10
    # the drawn horizon sits on the model's (haze beyond the far patch: up to 3 rows below)
    assert want_l - 0.5 <= row_l <= want_l + 3.5 and want_r - 0.5 <= row_r <= want_r + 3.5
    assert (row_l - row_r) == pytest.approx(want_l - want_r, abs=2.0)
    _, level = _straight_view(pitch_deg=5.0)
    assert abs(_first_ground_row(level, left) - _first_ground_row(level, right)) <= 1


def test_pitched_up_camera_sees_the_horizon_below_centre():
    cam, img = _straight_view(pitch_deg=-10.0)
    assert cam.horizon_row > cam.cy
    row = _first_ground_row(img, 100)
    assert cam.horizon_row - 0.5 <= row <= cam.horizon_row + 3.5


# ---- determinism --------------------------------------------------------------------


def _frames(seed: int, **kwargs) -> list[np.ndarray]:
    env = DriveEnv(route_length_m=100.0, **{**MOUNT, **VEHICLE, **kwargs})
    obs, info = env.reset(seed=seed)
    frames = [obs["image"]]
    rng = np.random.default_rng(0)
    for _ in range(40):
        action = info["expert_action"] + np.array([rng.normal(0, 0.05), 0, 0], np.float32)
        obs, _, _, _, info = env.step(action)
        frames.append(obs["image"])
    return frames


def test_same_seed_gives_identical_frames_with_a_chosen_mount():
    a, b = _frames(3), _frames(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = _frames(4)
    assert not np.array_equal(a[-1], c[-1])
    d = _frames(3, camera_yaw_deg=6.0)
    assert not np.array_equal(a[0], d[0])  # the mount changes the view


# ---- the expert in other vehicles ---------------------------------------------------


@pytest.mark.parametrize("wheelbase, max_steer", [(2.5, 40.0), (3.2, 55.0)])
@pytest.mark.parametrize("seed", eval_seeds(2))
def test_expert_keeps_its_lane_in_other_vehicles(wheelbase, max_steer, seed):
    env = DriveEnv(route_length_m=300.0, wheelbase_m=wheelbase, max_steer_deg=max_steer)
    _, info = env.reset(seed=seed)
    worst = 0.0
    for _ in range(env.max_steps):
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        worst = max(worst, abs(info["lateral_error_m"]))
        if terminated or truncated:
            break
    assert terminated and not info["off_road"]
    assert info["route_completion"] == pytest.approx(1.0) and info["progress_m"] >= 300.0
    assert worst < 0.3


def test_expert_action_is_in_the_env_vehicles_steer_units():
    """Two cars with different locks, driven with the same wheel angles, are in the same
    state; the expert asks both for the same wheel angle, so its steer scales as 1/lock."""
    envs = {lock: DriveEnv(route_length_m=200.0, max_steer_deg=lock) for lock in (70.0, 35.0)}
    infos = {lock: env.reset(seed=1)[1] for lock, env in envs.items()}
    for _ in range(10):
        for lock, env in envs.items():
            infos[lock] = env.step([0.04 * 70.0 / lock, 0.3, 0.0])[4]
    a, b = infos[70.0], infos[35.0]
    assert a["pose"] == pytest.approx(b["pose"], abs=1e-9)
    steer70, steer35 = float(a["expert_action"][0]), float(b["expert_action"][0])
    assert abs(steer70) > 0.05 and abs(steer35) < 1.0  # a correction, not clipped
    assert steer35 == pytest.approx(2.0 * steer70, rel=1e-5)
    # the same as an expert told the vehicle directly
    road, car = envs[35.0].road, envs[35.0].car
    direct = ExpertDriver(road, params=VehicleParams.of(2.9, 35.0)).act(
        VehicleState(**vars(car.state))
    )
    assert direct[0] == pytest.approx(steer35, abs=1e-6)
