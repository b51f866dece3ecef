"""CarlaDrive-v0 against a STAND-IN for the `carla` module (tests/carla_standin.py), plus
the real `carla` client with no server, and the CARLA parameter files and docs.

The sign conventions are contract tests: the backend and the stand-in are each checked
against CARLA's documented conventions (`CARLA_CONVENTION`), never against each other.
"""

from __future__ import annotations

import ast
import importlib
import math
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import yaml

from sim.carla_backend import CarlaDriveEnv
from sim.carla_route import (
    PurePursuitExpert,
    RoutePolyline,
    carla_to_ros_pose,
    ros_to_carla_pose,
    wrap_angle,
)
from sim.carla_session import (
    CARLA_DEFAULT_VEHICLE,
    CarlaConnectionError,
    CarlaSensorTimeoutError,
    vehicle_spec_from_physics,
)
from sim.contract import (
    CAMERA_INFO_KEYS,
    CAMERA_SPEC_KEYS,
    INFO_KEYS,
    VEHICLE_SPEC_KEYS,
    check_contract,
)
from sim.limits import LIMITS
from steering_agent.interfaces import topics

sys.path.insert(0, str(Path(__file__).parent))
from carla_standin import make_carla_standin

REPO = Path(__file__).resolve().parents[1]
SMALL = {"width": 32, "height": 24, "route_length_m": 60.0}

# CARLA's conventions as CARLA documents them (data, not code under test):
# - CARLA docs, "Coordinates and transformations" (carla.readthedocs.io/en/latest/
#   coordinates/): Unreal Engine's left-handed frame; facing +X from the origin, X is
#   forward, Y right, Z up; metres and degrees.
# - CARLA docs, "Python API reference": carla.Rotation.yaw is the rotation about Z in
#   degrees; in that left-handed frame +yaw turns +X towards +Y: to the right, clockwise
#   seen from above. carla.VehicleControl.steer is a scalar in [-1.0, 1.0]; + steers
#   right (PythonAPI/examples/manual_control.py: the right/D key raises it, left/A lowers it).
# - ROS REP 103 ("Standard Units of Measure and Coordinate Conventions"): right-handed,
#   x forward, y left, z up, radians counter-clockwise. So y and yaw change sign.
CARLA_CONVENTION = {
    "steer_range": (-1.0, 1.0),
    "steer_sign_of_right": +1.0,
    # CARLA location/yaw (x, y, yaw_deg) -> ROS (x, y, yaw_rad)
    "poses": [
        ((10.0, 0.0, 0.0), (10.0, 0.0, 0.0)),  # ahead, facing forward
        ((0.0, 1.0, 0.0), (0.0, -1.0, 0.0)),  # 1 m to the right
        ((5.0, -1.5, 0.0), (5.0, 1.5, 0.0)),  # 1.5 m to the left
        ((20.0, 0.0, 90.0), (20.0, 0.0, -math.pi / 2)),  # facing right
        ((20.0, 0.0, -90.0), (20.0, 0.0, math.pi / 2)),  # facing left
        ((3.0, 0.5, 30.0), (3.0, -0.5, -math.pi / 6)),  # right of the axis, turned right
        ((7.0, -0.25, -45.0), (7.0, 0.25, math.pi / 4)),
        ((12.0, 0.0, 180.0), (12.0, 0.0, -math.pi)),  # facing back (+-pi alike)
    ],
    # CARLA yaw_deg -> unit forward vector (x, y) in CARLA's frame
    "forward": [(0.0, (1.0, 0.0)), (90.0, (0.0, 1.0)), (-90.0, (0.0, -1.0)), (180.0, (-1.0, 0.0))],
    # A camera mount in the env's (REP 103) terms -> CARLA's attachment transform.
    # CARLA docs, "Python API reference", carla.Rotation: pitch is the Y-axis rotation
    # (+ = nose up in Unreal's frame), yaw as above; the CARLA ROS bridge converts CARLA
    # to ROS as roll = roll, pitch = -pitch, yaw = -yaw (ros_compatibility transforms,
    # carla_rotation_to_RPY), location y = -y. ROS pitch + = nose down (right-hand rule
    # about y left), ROS roll + = clockwise seen from behind (about x forward).
    # (camera_x_m, camera_y_m, camera_height_m, pitch, roll, yaw) ->
    # CARLA ((x, y, z), (pitch, yaw, roll))
    "mounts": [
        ((2.0, 0.0, 2.0, 0.0, 0.0, 0.0), ((2.0, 0.0, 2.0), (0.0, 0.0, 0.0))),  # rgb_front
        ((1.0, 0.0, 1.5, 15.0, 0.0, 0.0), ((1.0, 0.0, 1.5), (-15.0, 0.0, 0.0))),  # looks down
        ((1.0, 0.5, 1.5, 0.0, 0.0, 0.0), ((1.0, -0.5, 1.5), (0.0, 0.0, 0.0))),  # sits left
        ((1.0, 0.0, 1.5, 0.0, 0.0, 20.0), ((1.0, 0.0, 1.5), (0.0, -20.0, 0.0))),  # looks left
        ((1.0, 0.0, 1.5, 0.0, 5.0, 0.0), ((1.0, 0.0, 1.5), (0.0, 0.0, 5.0))),  # rolled cw
        ((0.5, -1.2, 3.0, -10.0, -8.0, -30.0), ((0.5, 1.2, 3.0), (10.0, 30.0, -8.0))),
    ],
}
MOUNT_KEYS = (
    "camera_x_m",
    "camera_y_m",
    "camera_height_m",
    "camera_pitch_deg",
    "camera_roll_deg",
    "camera_yaw_deg",
)


def same_angle(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(float(wrap_angle(a - b))) < tol


@pytest.fixture
def standin():
    return make_carla_standin()


def make_env(standin, **kwargs) -> CarlaDriveEnv:
    return CarlaDriveEnv(carla_module=standin, **{**SMALL, **kwargs})


def calls(standin, name):
    return [c for c in standin.server.log if c[0] == name]


def test_importing_sim_does_not_import_carla():
    code = "import sys, sim; import sim.carla_backend; assert 'carla' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_standin_sync_settings_and_tm_applied_then_restored(standin):
    env = make_env(standin, tm_port=8123)
    env.reset(seed=0)
    srv = standin.server
    assert srv.settings.synchronous_mode is True
    assert srv.settings.fixed_delta_seconds == pytest.approx(0.05)
    assert srv.tm_sync is True
    assert ("tm_set_synchronous_mode", 8123, True) in srv.log
    assert ("load_world", "Town01") in srv.log
    env.close()
    assert srv.settings.synchronous_mode is False and srv.settings.fixed_delta_seconds is None
    assert srv.tm_sync is False
    assert srv.alive_actor_ids() == []
    env.close()  # idempotent


def test_standin_keeps_current_town_when_none(standin):
    env = make_env(standin, town=None)
    env.reset(seed=0)
    env.close()
    assert calls(standin, "load_world") == []


def test_standin_one_tick_per_step(standin):
    env = make_env(standin)
    env.reset(seed=0)
    for _ in range(3):
        before = len(calls(standin, "tick"))
        env.step(np.array([0.0, 0.5, 0.0], np.float32))
        assert len(calls(standin, "tick")) == before + 1
    env.close()


def test_contract_control_reaches_carla_unchanged_and_in_documented_range(standin):
    lo, hi = CARLA_CONVENTION["steer_range"]
    env = make_env(standin)
    env.reset(seed=0)
    env.step(np.array([0.3, 0.6, 0.1], np.float32))
    c = calls(standin, "apply_control")[-1][1]
    assert (c.steer, c.throttle, c.brake) == pytest.approx((0.3, 0.6, 0.1))  # same sign
    assert (c.hand_brake, c.reverse, c.manual_gear_shift) == (False, False, False)
    env.step([2.0, -1.0, 5.0])
    c = calls(standin, "apply_control")[-1][1]
    assert (c.steer, c.throttle, c.brake) == (hi, 0.0, 1.0)
    env.step([-3.0, 0.0, 0.0])
    assert calls(standin, "apply_control")[-1][1].steer == lo
    n = len(calls(standin, "apply_control"))
    with pytest.raises(ValueError, match="action"):
        env.step([float("nan"), 0.5, 0.0])
    with pytest.raises(ValueError, match="action"):
        env.step([0.0, 0.5])
    assert len(calls(standin, "apply_control")) == n  # nothing reached the car
    env.close()


@pytest.mark.parametrize("stale", [0, 2])
def test_standin_bgra_frame_becomes_rgb_of_that_tick(stale):
    standin = make_carla_standin()
    standin.server.stale_camera_frames = stale  # older frames queued first: must be skipped
    env = make_env(standin, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step([0.0, 0.5, 0.0])
    img = obs["image"]
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    frame = calls(standin, "tick")[-1][1]
    assert np.all(img[..., 0] == frame % 256)  # R came from BGRA byte 2
    assert np.array_equal(img[:, 0, 1], np.arange(24))  # G = row
    assert np.array_equal(img[0, :, 2], np.arange(32))  # B = column
    assert obs["speed"].shape == (1,) and obs["speed"].dtype == np.float32
    assert np.array_equal(env.render(), img) and env.render() is not env.render()
    env.close()


def test_standin_render_follows_render_mode(standin):
    env = make_env(standin)  # render_mode None: gymnasium's render() returns None
    env.reset(seed=0)
    env.step([0.0, 0.5, 0.0])
    assert env.render() is None
    env.close()
    with pytest.raises(ValueError, match="render_mode"):
        make_env(standin, render_mode="human")


def test_standin_camera_like_ros_bridge_rgb_front(standin):
    env = CarlaDriveEnv(carla_module=standin)  # defaults: the bridge's rgb_front
    env.reset(seed=0)
    srv = standin.server
    cam = next(a for a in srv.actors.values() if a.type_id == "sensor.camera.rgb")
    assert cam.attributes["image_size_x"] == "800" and cam.attributes["image_size_y"] == "600"
    assert float(cam.attributes["fov"]) == 90.0
    loc, rot = cam.transform.location, cam.transform.rotation
    assert (loc.x, loc.y, loc.z) == (2.0, 0.0, 2.0) and (rot.roll, rot.pitch, rot.yaw) == (0, 0, 0)
    types = sorted(a.type_id for a in srv.actors.values())
    assert types == [
        "sensor.camera.rgb",
        "sensor.other.collision",
        "sensor.other.lane_invasion",
        "vehicle.audi.tt",
    ]
    assert all(a.parent is not None for a in srv.actors.values() if a.type_id.startswith("sensor"))
    info = env.camera_info()
    assert info["fx"] == pytest.approx(400.0) and (info["cx"], info["cy"]) == (400.0, 300.0)
    env.close()


def test_standin_default_camera_spec_is_rgb_front_in_the_env_convention(standin):
    env = CarlaDriveEnv(carla_module=standin)
    spec = env.unwrapped.camera_spec()
    assert tuple(spec) == CAMERA_SPEC_KEYS
    assert {k: spec[k] for k in CAMERA_INFO_KEYS} == env.camera_info()
    mount = {k: spec[k] for k in ("x_m", "y_m", "height_m", "pitch_deg", "roll_deg", "yaw_deg")}
    assert mount == {"x_m": 2.0, "y_m": 0.0, "height_m": 2.0, "pitch_deg": 0.0,
                     "roll_deg": 0.0, "yaw_deg": 0.0}  # fmt: skip
    assert all(math.copysign(1.0, v) == 1.0 for v in mount.values())  # no -0.0


@pytest.mark.parametrize("mount, carla_tf", CARLA_CONVENTION["mounts"])
def test_contract_camera_mount_reaches_carla_in_documented_frame(standin, mount, carla_tf):
    kwargs = dict(zip(MOUNT_KEYS, mount, strict=True))
    env = make_env(standin, **kwargs)
    spec = env.unwrapped.camera_spec()
    assert [spec[k.removeprefix("camera_")] for k in MOUNT_KEYS] == list(mount)
    env.reset(seed=0)
    cam = next(a for a in standin.server.actors.values() if a.type_id == "sensor.camera.rgb")
    loc, rot = cam.transform.location, cam.transform.rotation
    assert cam.parent is env.unwrapped._vehicle
    assert (loc.x, loc.y, loc.z) == pytest.approx(carla_tf[0])
    assert (rot.pitch, rot.yaw, rot.roll) == pytest.approx(carla_tf[1])
    env.close()


@pytest.mark.parametrize(
    "key, bad",
    [("camera_pitch_deg", 61.0), ("camera_pitch_deg", -31.0), ("camera_roll_deg", 46.0),
     ("camera_yaw_deg", -46.0), ("camera_height_m", 0.1), ("camera_height_m", 11.0),
     ("camera_y_m", 3.5)],
)  # fmt: skip
def test_out_of_range_camera_mount_names_the_keyword_and_range(key, bad):
    lo, hi, _ = LIMITS[key]
    with pytest.raises(ValueError, match=rf"^{key}=.*within {lo:g}\.\.{hi:g}"):
        CarlaDriveEnv(carla_module=object(), **{key: bad})  # refused before any connection


def test_standin_vehicle_spec_read_from_the_physics_control(standin):
    env = make_env(standin)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.vehicle_spec()
    env.reset(seed=0)
    spec = env.unwrapped.vehicle_spec()
    assert tuple(spec) == VEHICLE_SPEC_KEYS
    assert spec == pytest.approx({"wheelbase_m": 2.47, "max_steer_deg": 70.0})
    assert calls(standin, "get_physics_control")
    standin.server.wheelbase_m, standin.server.max_steer_deg = 3.3, 48.0
    env.reset(seed=1)  # a new car: read again
    want = {"wheelbase_m": 3.3, "max_steer_deg": 48.0}
    assert env.unwrapped.vehicle_spec() == pytest.approx(want)
    expert = env.unwrapped._expert  # the expert steers in this car's units
    assert expert.wheelbase_m == pytest.approx(3.3)
    assert expert.max_steer_rad == pytest.approx(math.radians(48.0))
    check_contract(env.unwrapped, seed=2)
    env.close()
    assert env.unwrapped.vehicle_spec()["wheelbase_m"] == pytest.approx(3.3)  # kept


def test_standin_vehicle_spec_falls_back_to_carlas_default_vehicle(standin, caplog):
    standin.server.physics_control = False
    env = make_env(standin)
    with caplog.at_level("WARNING", logger="sim.carla_backend"):
        env.reset(seed=0)
    assert CARLA_DEFAULT_VEHICLE == {"wheelbase_m": 2.875, "max_steer_deg": 70.0}
    assert env.unwrapped.vehicle_spec() == CARLA_DEFAULT_VEHICLE
    assert "physics control" in caplog.text
    standin.server.physics_control, standin.server.max_steer_deg = True, 0.0  # no usable lock
    env.reset(seed=0)
    want = {"wheelbase_m": 2.47, "max_steer_deg": 70.0}  # the wheelbase read, the lock default
    assert env.unwrapped.vehicle_spec() == pytest.approx(want)
    env.close()


def test_vehicle_spec_from_physics_uses_wheel_positions_whatever_the_heading(standin):
    wheel, vec = standin.WheelPhysicsControl, standin.Vector3D
    # a car heading along CARLA's +y (yaw 90), front axle at y = 150 cm, rear at -130 cm
    wheels = [
        wheel(65.0, vec(-80.0, 150.0, 30.0)),
        wheel(65.0, vec(80.0, 150.0, 30.0)),
        wheel(0.0, vec(-80.0, -130.0, 30.0)),
        wheel(0.0, vec(80.0, -130.0, 30.0)),
    ]
    spec = vehicle_spec_from_physics(standin.VehiclePhysicsControl(wheels))
    assert spec == pytest.approx({"wheelbase_m": 2.8, "max_steer_deg": 65.0})
    assert vehicle_spec_from_physics(standin.VehiclePhysicsControl([])) == CARLA_DEFAULT_VEHICLE
    assert vehicle_spec_from_physics(None) == CARLA_DEFAULT_VEHICLE
    same = [wheel(65.0, vec(0.0, 0.0, 0.0)) for _ in range(4)]  # unset positions
    assert vehicle_spec_from_physics(standin.VehiclePhysicsControl(same)) == {
        "wheelbase_m": 2.875,
        "max_steer_deg": 65.0,
    }


@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env_and_contract_on_carla_env_with_a_chosen_mount(monkeypatch, render_mode):
    from gymnasium.utils.env_checker import check_env

    import sim  # noqa: F401

    standin = make_carla_standin()
    standin.server.wheelbase_m, standin.server.max_steer_deg = 3.0, 50.0
    monkeypatch.setitem(sys.modules, "carla", standin)
    mount = dict(zip(MOUNT_KEYS, CARLA_CONVENTION["mounts"][-1][0], strict=True))
    env = gymnasium.make("SteeringAgent/CarlaDrive-v0", render_mode=render_mode, **mount,
                         **SMALL)  # fmt: skip
    check_env(env.unwrapped)
    check_contract(env.unwrapped, seed=1)
    assert env.unwrapped.camera_spec()["yaw_deg"] == -30.0
    env.close()
    assert standin.server.alive_actor_ids() == []


def test_standin_exception_mid_episode_cleans_up(standin):
    env = make_env(standin)
    env.reset(seed=0)
    assert len(standin.server.actors) == 4
    standin.server.fail_at["tick"] = standin.server.calls["tick"] + 2
    env.step([0.0, 0.5, 0.0])
    with pytest.raises(RuntimeError, match="injected"):
        env.step([0.0, 0.5, 0.0])
    srv = standin.server
    assert srv.alive_actor_ids() == []
    assert srv.settings.synchronous_mode is False and srv.tm_sync is False
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0.0, 0.5, 0.0])
    env.reset(seed=0)  # reconnects and drives again
    assert len(srv.actors) == 4
    env.close()
    assert srv.alive_actor_ids() == []


def test_standin_ctrl_c_during_step_cleans_up(standin, monkeypatch):
    env = make_env(standin)
    env.reset(seed=0)
    world = env._session.world

    def interrupted_tick(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(world, "tick", interrupted_tick)
    with pytest.raises(KeyboardInterrupt):
        env.step([0.0, 0.5, 0.0])
    assert standin.server.alive_actor_ids() == []
    assert standin.server.settings.synchronous_mode is False


def test_standin_spawn_failure_in_reset_leaks_nothing(standin):
    standin.server.fail_at["spawn_actor"] = 3  # the camera spawned, collision sensor fails
    env = make_env(standin)
    with pytest.raises(RuntimeError, match="injected"):
        env.reset(seed=0)
    assert standin.server.alive_actor_ids() == []
    assert standin.server.settings.synchronous_mode is False


def test_standin_camera_timeout_is_clear_and_cleans_up(standin):
    standin.server.drop_camera = True
    env = make_env(standin, timeout=0.2)
    with pytest.raises(CarlaSensorTimeoutError, match="no camera image for frame"):
        env.reset(seed=0)
    assert standin.server.alive_actor_ids() == []


def test_standin_reset_twice_does_not_leak(standin):
    env = make_env(standin)
    env.reset(seed=0)
    first = set(standin.server.actors)
    env.reset(seed=1)
    assert len(standin.server.actors) == 4 and not first & set(standin.server.actors)
    env.close()


def test_standin_finalizer_cleans_up_without_close(standin):
    env = make_env(standin)
    env.reset(seed=0)
    del env
    import gc

    gc.collect()
    assert standin.server.alive_actor_ids() == []
    assert standin.server.settings.synchronous_mode is False


@pytest.mark.parametrize("carla_pose, ros_pose", CARLA_CONVENTION["poses"])
def test_contract_carla_to_ros_pose_matches_documented_frames(carla_pose, ros_pose):
    x, y, yaw = carla_to_ros_pose(*carla_pose)
    assert (x, y) == pytest.approx(ros_pose[:2]) and same_angle(yaw, ros_pose[2])
    back = ros_to_carla_pose(*ros_pose)
    assert back[:2] == pytest.approx(carla_pose[:2])
    assert same_angle(math.radians(back[2]), math.radians(carla_pose[2]))


@pytest.mark.parametrize("yaw_deg, forward", CARLA_CONVENTION["forward"])
def test_contract_standin_moves_along_documented_forward_vector(standin, yaw_deg, forward):
    """The stand-in itself obeys CARLA's documented frame (checked here, not assumed)."""
    env = make_env(standin)
    env.reset(seed=0)
    car = env.unwrapped._vehicle
    car.set_transform(
        standin.Transform(standin.Location(50.0, 0.0, 0.5), standin.Rotation(yaw=yaw_deg))
    )
    car.speed = 2.0
    env.advance()
    loc = car.get_transform().location
    moved = np.array([loc.x - 50.0, loc.y])
    assert moved / np.linalg.norm(moved) == pytest.approx(forward, abs=1e-9)
    env.close()


def test_contract_standin_steers_by_documented_sign(standin):
    """+ steer turns right: CARLA yaw grows (clockwise from above) and the car goes to +y."""
    env = make_env(standin)
    env.reset(seed=0)
    for _ in range(15):
        env.step([0.4 * CARLA_CONVENTION["steer_sign_of_right"], 0.8, 0.0])
    tf = env.unwrapped._vehicle.get_transform()
    assert tf.rotation.yaw > 1.0 and tf.location.y > 0.05
    env.close()


@pytest.mark.parametrize("carla_pose, ros_pose", CARLA_CONVENTION["poses"])
def test_contract_backend_reads_documented_frames(standin, carla_pose, ros_pose):
    """A car put at a documented CARLA pose beside a route along +x reads as the ROS pose."""
    env = make_env(standin)
    env.reset(seed=0)
    x, y, yaw = carla_pose
    env.unwrapped._vehicle.set_transform(
        standin.Transform(standin.Location(x, y, 0.5), standin.Rotation(yaw=yaw))
    )
    _, info = env.advance()  # no control, the car stands still
    px, py, pyaw = info["pose"]
    assert (px, py) == pytest.approx(ros_pose[:2]) and same_angle(pyaw, ros_pose[2])
    assert info["lateral_error_m"] == pytest.approx(ros_pose[1])  # + = left of the route
    assert same_angle(info["heading_error_rad"], ros_pose[2])
    env.close()


def test_contract_expert_steers_by_documented_sign(standin):
    right = CARLA_CONVENTION["steer_sign_of_right"]
    env = make_env(standin)
    env.reset(seed=0)
    car = env.unwrapped._vehicle
    for carla_y, back in ((1.0, -right), (-1.0, right)):  # right of the route: steer left
        car.set_transform(standin.Transform(standin.Location(10.0, carla_y, 0.5)))
        _, info = env.advance()
        assert np.sign(info["expert_action"][0]) == back
    env.close()
    theta = np.linspace(0, math.pi / 2, 200)  # a bend to the left in the ROS frame
    route = RoutePolyline(np.stack([20 * np.sin(theta), 20 - 20 * np.cos(theta)], 1))
    act = PurePursuitExpert(route).act(0.0, 0.0, 0.0, speed_mps=5.0, s=0.0)
    assert np.sign(act[0]) == -right


def test_contract_steer_right_ends_right_of_centre_and_recenter_returns_pose(standin):
    """With the stand-in and the backend each pinned to the documented frame above, the
    whole chain: + steer ends right of the centre line (lateral < 0, heading < 0)."""
    env = make_env(standin)
    env.reset(seed=0)
    for _ in range(15):
        _, _, terminated, _, info = env.step(
            [0.4 * CARLA_CONVENTION["steer_sign_of_right"], 0.8, 0.0]
        )
    assert not terminated
    assert info["lateral_error_m"] < -0.05 and info["heading_error_rad"] < 0.0
    assert info["progress_m"] > 0.5 and 0 < info["route_completion"] < 1
    before = info["sim_time_s"]
    out = env.unwrapped.recenter()
    assert isinstance(out, tuple) and len(out) == 2
    obs, info = out
    assert env.observation_space.contains(obs)
    tf = calls(standin, "set_transform")[-1][1]  # documented frame: on the x axis, yaw 0
    assert tf.location.y == pytest.approx(0.0, abs=1e-9)
    assert tf.rotation.yaw == pytest.approx(0.0, abs=1e-9)
    assert abs(info["lateral_error_m"]) < 0.05 and abs(info["heading_error_rad"]) < 0.05
    assert info["sim_time_s"] == pytest.approx(before + env.unwrapped.dt)  # one tick
    assert calls(standin, "apply_control")[-1][1].steer == 0.0  # wheels straight
    _, _, _, _, info = env.step([0.0, 0.0, 0.0])
    assert abs(info["lateral_error_m"]) < 0.05
    env.close()


def test_gymnasium_check_env_on_carla_env_with_standin(monkeypatch):
    """gymnasium's own checker, on CarlaDrive-v0 over the STAND-IN (not a CARLA server)."""
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    import sim  # noqa: F401

    standin = make_carla_standin()
    monkeypatch.setitem(sys.modules, "carla", standin)
    for render_mode in (None, "rgb_array"):
        env = gymnasium.make("SteeringAgent/CarlaDrive-v0", render_mode=render_mode, **SMALL)
        check_env(env.unwrapped)
        env.close()
    assert standin.server.alive_actor_ids() == []
    assert not standin.server.settings.synchronous_mode


def test_standin_expert_drives_route_to_the_end(standin):
    env = make_env(standin)
    _, info = env.reset(seed=3)
    for _ in range(env.max_steps):
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    assert terminated and info["route_completion"] == pytest.approx(1.0)
    assert not info["off_road"] and not info["collision"]
    env.close()


def test_standin_off_road_and_collision_terminate():
    standin = make_carla_standin()
    env = make_env(standin)
    env.reset(seed=0)
    for _ in range(200):
        _, _, terminated, _, info = env.step([1.0, 1.0, 0.0])
        if terminated:
            break
    assert terminated and info["off_road"]
    standin.server.collide_at_frame = standin.server.frame + 3
    env.reset(seed=0)
    for _ in range(3):
        _, _, terminated, _, info = env.step([0.0, 0.3, 0.0])
    assert terminated and info["collision"]
    env.close()


def test_standin_truncates_at_step_limit(standin):
    env = make_env(standin, max_steps=3)
    env.reset(seed=0)
    out = [env.step([0.0, 0.0, 0.0]) for _ in range(3)]
    assert [o[3] for o in out] == [False, False, True] and not any(o[2] for o in out)
    env.close()


@pytest.mark.parametrize("role, ros_name", [("hero", "front_cam"), ("ego", "rgb_front")])
def test_standin_native_ros_camera_named_and_enabled(standin, role, ros_name):
    env = make_env(standin, ros_name=ros_name, role_name=role)
    assert env.ros_topics() == {
        "image": f"/carla/{role}/{ros_name}/image",
        "camera_info": f"/carla/{role}/{ros_name}/camera_info",
    }
    env.reset(seed=0)
    srv = standin.server
    log = srv.log
    assert ("set_attribute", "vehicle.audi.tt", "role_name", role) in log
    assert ("set_attribute", "vehicle.audi.tt", "ros_name", role) in log
    assert ("set_attribute", "sensor.camera.rgb", "ros_name", ros_name) in log
    cam = next(a for a in srv.actors.values() if a.type_id == "sensor.camera.rgb")
    assert cam.attributes["ros_name"] == ros_name and cam.ros_enabled
    assert [c[1] for c in calls(standin, "enable_for_ros")] == [cam.id]  # the camera only
    # enabled after it listens, before the first tick of the episode
    order = [c for c in log if c[0] in ("listen", "enable_for_ros", "tick")]
    assert order.index(("listen", "sensor.camera.rgb")) < order.index(("enable_for_ros", cam.id))
    assert order.index(("enable_for_ros", cam.id)) < next(
        i for i, c in enumerate(order) if c[0] == "tick"
    )
    env.step([0.0, 0.3, 0.0])
    env.close()
    assert srv.alive_actor_ids() == []


def test_standin_camera_not_published_by_default(standin):
    env = make_env(standin)
    assert env.role_name == "hero" and env.ros_name is None and env.ros_topics() is None
    env.reset(seed=0)
    assert not [c for c in calls(standin, "set_attribute") if c[2] == "ros_name"]
    assert calls(standin, "enable_for_ros") == []
    env.close()


def test_enable_ros_is_shorthand_for_rgb_front(standin):
    env = make_env(standin, enable_ros=True)
    assert env.ros_name == "rgb_front"
    assert env.ros_topics()["image"] == "/carla/hero/rgb_front/image"


@pytest.mark.parametrize("kw", [{"ros_name": "front cam"}, {"ros_name": ""},
                                {"ros_name": "cam", "role_name": "my/car"}])  # fmt: skip
def test_bad_native_ros_names_are_refused(kw):
    with pytest.raises(ValueError, match="native ROS 2 name"):
        CarlaDriveEnv(carla_module=object(), **kw)


def test_standin_spawn_point_out_of_range_is_clear(standin):
    env = make_env(standin, spawn_point=7)
    with pytest.raises(ValueError, match=r"spawn_point=7.*2 spawn"):
        env.reset(seed=0)
    assert standin.server.alive_actor_ids() == []


def test_gymnasium_make_uses_sys_modules_standin(monkeypatch):
    import gymnasium

    import sim  # noqa: F401

    standin = make_carla_standin()
    monkeypatch.setitem(sys.modules, "carla", standin)
    env = gymnasium.make("SteeringAgent/CarlaDrive-v0", **SMALL)
    obs, info = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    assert set(INFO_KEYS) <= set(info) and info["seed"] == 5
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    env.close()
    assert standin.server.alive_actor_ids() == []


def test_real_carla_client_without_server_fails_fast_and_clearly():
    pytest.importorskip("carla")
    import gymnasium

    import sim  # noqa: F401

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = gymnasium.make("SteeringAgent/CarlaDrive-v0", port=port, timeout=2)
    start = time.monotonic()
    with pytest.raises(CarlaConnectionError) as err:
        env.reset()
    elapsed = time.monotonic() - start
    assert elapsed < 5.0  # the functional ceiling, not a speed benchmark
    msg = str(err.value)
    assert f"localhost:{port}" in msg and "CarlaUE4.sh" in msg and "docker" in msg
    env.close()


def test_route_geometry_and_pure_pursuit():
    theta = np.linspace(0, math.pi / 2, 200)  # quarter circle, radius 20, turning left
    route = RoutePolyline(np.stack([20 * np.sin(theta), 20 - 20 * np.cos(theta)], 1))
    assert route.length_m == pytest.approx(20 * math.pi / 2, rel=1e-3)
    s, lateral, heading, _ = route.locate(19 * math.sin(0.5), 20 - 19 * math.cos(0.5), 0.5)
    assert s == pytest.approx(10.0, abs=0.05) and lateral == pytest.approx(1.0, abs=0.02)
    assert heading == pytest.approx(0.0, abs=0.02)
    expert = PurePursuitExpert(route, target_speed_mps=8.0)
    act = expert.act(0.0, 0.0, 0.0, speed_mps=5.0, s=0.0)
    assert act.dtype == np.float32 and act[1] > 0.0 and act[2] == 0.0
    with pytest.raises(ValueError, match="points_xy"):
        RoutePolyline(np.zeros((1, 2)))


# ---- parameter files and docs --------------------------------------------------------


AGENT_NODE = "steering_agent.ros.agent_params"
UNKNOWN = object()  # a default the source does not spell as a literal or `topics.X`


def node_parameters() -> dict[str, tuple[object, list[str]]]:
    """The agent node's declared parameters: name -> (default, allowed values or []).

    Imports the node's module where rclpy imports (the real declarations); elsewhere reads
    its PARAMETERS dict from the source (defaults that are literals or `topics.X`).
    """
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return _parsed_node_parameters()
    declared = importlib.import_module(AGENT_NODE).PARAMETERS
    choices_of = getattr(importlib.import_module("steering_agent.ros.params"), "choices_of", None)
    return {
        name: (default, choices_of(descriptor) if choices_of else [])
        for name, (default, descriptor) in declared.items()
    }


def _parsed_node_parameters() -> dict[str, tuple[object, list[str]]]:
    path = REPO / Path(*AGENT_NODE.split(".")).with_suffix(".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PARAMETERS" for t in node.targets
        ):
            out = {}
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                default = value.elts[0] if isinstance(value, ast.Tuple) else None
                if isinstance(default, ast.Constant):
                    out[key.value] = (default.value, [])
                elif (
                    isinstance(default, ast.Attribute)
                    and getattr(default.value, "id", "") == "topics"
                ):
                    out[key.value] = (getattr(topics, default.attr), [])
                else:
                    out[key.value] = (UNKNOWN, [])
            return out
    raise AssertionError(f"{path} has no PARAMETERS dict")


def agent_params(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())["agent"]["ros__parameters"]


CARLA_PARAM_FILES = ["carla_ros_bridge.yaml", "carla_native_ros2.yaml"]
TOPIC_KEYS = ("image_topic", "speed_topic", "control_topic", "twist_topic")


@pytest.mark.parametrize("name", CARLA_PARAM_FILES)
def test_param_file_is_accepted_by_the_node_declarations(name):
    """Every key is a declared parameter, of the declared type, among its choices."""
    declared = node_parameters()
    params = agent_params(name)
    assert set(params) <= set(declared), set(params) - set(declared)
    for key, value in params.items():
        default, choices = declared[key]
        if default is not UNKNOWN:
            ok = isinstance(value, type(default)) or (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            )
            assert ok, f"{name}: {key}: {value!r} is not a {type(default).__name__}"
        assert not choices or value in choices, f"{name}: {key}={value!r} not in {choices}"
    agent_yaml = REPO / "config" / "agent.yaml"
    if agent_yaml.exists():  # same structure and keys as the shipped default file
        assert set(params) <= set(agent_params("agent.yaml"))


def test_param_files_match_the_naming_schemes():
    # The bridge file: the node's defaults, which are the topics module's names.
    declared = node_parameters()
    bridge = agent_params("carla_ros_bridge.yaml")
    expected = {
        "image_topic": topics.IMAGE,
        "speed_topic": topics.SPEEDOMETER,
        "control_topic": topics.CONTROL,
        "twist_topic": topics.TWIST,
    }
    assert {k: bridge[k] for k in TOPIC_KEYS} == expected
    for key in TOPIC_KEYS:
        assert declared[key][0] in (bridge[key], UNKNOWN), key
    bridge_role = re.fullmatch(r"/carla/([^/]+)/[^/]+/image", topics.IMAGE).group(1)
    assert bridge_role == topics.ROLE  # the bridge's own spawner names the ego so

    # The native file: CARLA's native ROS 2 names, /carla/<role>/<sensor>/..., with the
    # role and camera name that CarlaDrive-v0 gives its actors for native ROS 2.
    native = agent_params("carla_native_ros2.yaml")
    m = re.fullmatch(r"/carla/(?P<role>[^/]+)/(?P<sensor>[^/]+)/image", native["image_topic"])
    assert m, native["image_topic"]
    role, sensor = m["role"], m["sensor"]
    assert native["control_topic"] == f"/carla/{role}/vehicle_control_cmd"
    assert native["speed_topic"].startswith(f"/carla/{role}/")  # no native speedometer
    assert native["twist_topic"] == f"/carla/{role}/twist"
    assert native["control_type"] == "carla"  # native CARLA subscribes to no Twist
    assert role == CarlaDriveEnv(carla_module=object()).role_name  # the env's default
    standin = make_carla_standin()
    env = make_env(standin, ros_name=sensor)
    assert env.ros_topics()["image"] == native["image_topic"]
    env.reset(seed=0)
    ros_names = {e[1]: e[3] for e in calls(standin, "set_attribute") if e[2] == "ros_name"}
    env.close()
    assert ros_names == {"vehicle.audi.tt": role, "sensor.camera.rgb": sensor}


def test_docs_match_code_and_param_files():
    doc_path = REPO / "docs" / "carla.md"
    assert doc_path.exists(), "the CARLA documentation lives in docs/carla.md"
    doc = doc_path.read_text()
    for needle in (
        "config/carla_ros_bridge.yaml",
        "config/carla_native_ros2.yaml",
        "SteeringAgent/CarlaDrive-v0",
        "params_file:=",
        "--ros2",
        "enable_for_ros",
        "CarlaConnectionError",
        "-RenderOffScreen",
        "steering_agent.data.carla_recording",
    ):
        assert needle in doc, needle
    for name in CARLA_PARAM_FILES:
        params = agent_params(name)
        assert params["image_topic"] in doc and params["control_topic"] in doc


def test_standin_carla_drive_recorded_as_training_data(tmp_path, monkeypatch):
    from steering_agent.data.carla_recording import main
    from steering_agent.data.dataset import load_episodes

    standin = make_carla_standin()
    monkeypatch.setitem(sys.modules, "carla", standin)
    argv = ["--out", str(tmp_path), "--episodes", "2", "--max-steps", "6", "--width", "32"]
    argv += ["--height", "24", "--route-length", "60", "--no-progress", "--spawn-point", "0"]
    assert main(argv) == 0
    assert standin.server.alive_actor_ids() == [] and not standin.server.settings.synchronous_mode
    report = load_episodes(tmp_path)
    assert not report.problems and len(report.episodes) == 2
    ep = report.episodes[0]
    assert ep.images.shape == (6, 24, 32, 3) and np.all(np.isfinite(ep.steer))
    assert np.all(np.diff(ep.stamps) > 0)
    assert main(argv) == 2  # the bags exist already: clear refusal, no overwrite


def test_carla_recording_without_server_is_a_clear_cli_error(tmp_path, capsys):
    from steering_agent.data.carla_recording import main

    pytest.importorskip("carla")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--out", str(tmp_path), "--port", str(port), "--timeout", "1"]) == 2
    assert f"localhost:{port}" in capsys.readouterr().err


def test_standin_advance_ticks_without_control(standin):
    env = make_env(standin)
    env.reset(seed=0)
    n_ctrl, n_tick = len(calls(standin, "apply_control")), len(calls(standin, "tick"))
    obs, info = env.advance()
    assert len(calls(standin, "apply_control")) == n_ctrl
    assert len(calls(standin, "tick")) == n_tick + 1
    assert np.all(obs["image"][..., 0] == standin.server.frame % 256)
    assert info["sim_time_s"] == pytest.approx(0.05)
    env.close()


@pytest.fixture
def junk_service():
    """A TCP service on localhost that is not CARLA (answers anything with HTTP junk)."""
    import socket
    import threading

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nnot carla" * 50)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_a_service_that_is_not_carla_is_refused_without_aborting_this_process(junk_service):
    # The real CARLA client (not the stand-in): it aborts the process it runs in when it
    # talks to a non-CARLA service; the env asks from a child process first.
    pytest.importorskip("carla")
    env = gymnasium.make("SteeringAgent/CarlaDrive-v0", host="127.0.0.1", port=junk_service,
                         timeout=2.0)  # fmt: skip
    with pytest.raises(CarlaConnectionError, match="not a CARLA server"):
        env.reset(seed=1)


def test_no_server_is_a_clear_error_naming_the_port():
    import socket

    pytest.importorskip("carla")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = gymnasium.make("SteeringAgent/CarlaDrive-v0", host="127.0.0.1", port=port, timeout=1.0)
    with pytest.raises(CarlaConnectionError, match=rf"127.0.0.1:{port}.*CarlaUE4.sh"):
        env.reset(seed=1)


@pytest.mark.parametrize(("kw", "match"), [({"port": 70000}, "TCP port"),
                                           ({"port": 0}, "TCP port"),
                                           ({"timeout": -1.0}, "timeout")])  # fmt: skip
def test_bad_connection_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        gymnasium.make("SteeringAgent/CarlaDrive-v0", **kw)
