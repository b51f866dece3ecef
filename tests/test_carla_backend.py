"""CarlaDrive-v0 against a STAND-IN for the `carla` module (tests/carla_standin.py), plus
the real `carla` client with no server, and the CARLA parameter files and docs."""

from __future__ import annotations

import ast
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.carla_backend import CarlaConnectionError, CarlaDriveEnv, CarlaSensorTimeoutError
from sim.carla_route import PurePursuitExpert, RoutePolyline, carla_to_ros_pose
from steering_agent.interfaces import topics

sys.path.insert(0, str(Path(__file__).parent))
from carla_standin import make_carla_standin

REPO = Path(__file__).resolve().parents[1]
SMALL = {"width": 32, "height": 24, "route_length_m": 60.0}


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


def test_standin_control_mapping_and_clipping(standin):
    env = make_env(standin)
    env.reset(seed=0)
    env.step(np.array([0.3, 0.6, 0.1], np.float32))
    c = calls(standin, "apply_control")[-1][1]
    assert (c.steer, c.throttle, c.brake) == pytest.approx((0.3, 0.6, 0.1))
    assert (c.hand_brake, c.reverse, c.manual_gear_shift) == (False, False, False)
    env.step([2.0, -1.0, 5.0])
    c = calls(standin, "apply_control")[-1][1]
    assert (c.steer, c.throttle, c.brake) == (1.0, 0.0, 1.0)
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
    env = make_env(standin)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step([0.0, 0.5, 0.0])
    img = obs["image"]
    assert img.shape == (24, 32, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    frame = calls(standin, "tick")[-1][1]
    assert np.all(img[..., 0] == frame % 256)  # R came from BGRA byte 2
    assert np.array_equal(img[:, 0, 1], np.arange(24))  # G = row
    assert np.array_equal(img[0, :, 2], np.arange(32))  # B = column
    assert obs["speed"].shape == (1,) and obs["speed"].dtype == np.float32
    assert np.array_equal(env.render(), img)
    env.close()


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


def test_standin_lateral_sign_expert_and_recenter(standin):
    env = make_env(standin)
    _, info = env.reset(seed=0)
    for _ in range(15):  # CARLA steer + = right: the car ends right of the centre line
        _, _, terminated, _, info = env.step([0.4, 0.8, 0.0])
    assert not terminated
    assert info["lateral_error_m"] < -0.05
    assert info["heading_error_rad"] < 0.0
    assert info["expert_action"][0] < 0.0  # the expert steers back left
    assert info["progress_m"] > 0.5 and 0 < info["route_completion"] < 1
    _, y, _ = info["pose"]
    assert y == pytest.approx(info["lateral_error_m"], abs=1e-6)  # straight road along x
    env.unwrapped.recenter()
    _, _, _, _, info = env.step([0.0, 0.0, 0.0])
    assert abs(info["lateral_error_m"]) < 0.05
    env.close()


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


def test_standin_native_ros_names(standin):
    env = make_env(standin, enable_ros=True, role_name="hero")
    env.reset(seed=0)
    log = standin.server.log
    assert ("set_attribute", "vehicle.audi.tt", "ros_name", "hero") in log
    assert ("set_attribute", "sensor.camera.rgb", "ros_name", "rgb_front") in log
    assert len(calls(standin, "enable_for_ros")) == 1
    env.close()


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
    keys = {"lateral_error_m", "heading_error_rad", "progress_m", "route_completion"}
    keys |= {"off_road", "expert_action", "sim_time_s", "speed_mps", "seed", "pose"}
    assert keys <= set(info) and info["seed"] == 5
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
    assert carla_to_ros_pose(1.0, 2.0, 90.0) == pytest.approx((1.0, -2.0, -math.pi / 2))
    theta = np.linspace(0, math.pi / 2, 200)  # quarter circle, radius 20, turning left
    route = RoutePolyline(np.stack([20 * np.sin(theta), 20 - 20 * np.cos(theta)], 1))
    assert route.length_m == pytest.approx(20 * math.pi / 2, rel=1e-3)
    s, lateral, heading, _ = route.locate(19 * math.sin(0.5), 20 - 19 * math.cos(0.5), 0.5)
    assert s == pytest.approx(10.0, abs=0.05) and lateral == pytest.approx(1.0, abs=0.02)
    assert heading == pytest.approx(0.0, abs=0.02)
    expert = PurePursuitExpert(route, target_speed_mps=8.0)
    act = expert.act(0.0, 0.0, 0.0, speed_mps=5.0, s=0.0)
    assert act.dtype == np.float32 and act[0] < 0.0  # left bend: CARLA steer < 0
    assert act[1] > 0.0 and act[2] == 0.0
    with pytest.raises(ValueError, match="points_xy"):
        RoutePolyline(np.zeros((1, 2)))


# ---- parameter files and docs --------------------------------------------------------


def node_parameter_names() -> set[str]:
    """Keys of steering_agent/ros/agent_node.py's PARAMETERS (parsed, so no rclpy is needed)."""
    tree = ast.parse((REPO / "steering_agent" / "ros" / "agent_node.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PARAMETERS" for t in node.targets
        ):
            return {k.value for k in node.value.keys}
    raise AssertionError("steering_agent/ros/agent_node.py has no PARAMETERS dict")


@pytest.mark.parametrize("name", ["carla_ros_bridge.yaml", "carla_native_ros2.yaml"])
def test_param_file_keys_are_node_parameters(name):
    params = yaml.safe_load((REPO / "config" / name).read_text())["agent"]["ros__parameters"]
    assert set(params) <= node_parameter_names()
    agent_yaml = REPO / "config" / "agent.yaml"
    if agent_yaml.exists():  # same structure and keys as the shipped default file
        base = yaml.safe_load(agent_yaml.read_text())
        assert set(params) <= set(base["agent"]["ros__parameters"])


def test_param_files_match_the_naming_schemes():
    load = lambda n: yaml.safe_load((REPO / "config" / n).read_text())["agent"]["ros__parameters"]  # noqa: E731
    bridge, native = load("carla_ros_bridge.yaml"), load("carla_native_ros2.yaml")
    assert bridge["image_topic"] == topics.IMAGE and bridge["control_topic"] == topics.CONTROL
    assert bridge["speed_topic"] == topics.SPEEDOMETER and bridge["twist_topic"] == topics.TWIST
    assert native["image_topic"] == "/carla/hero/rgb_front/image"
    assert native["control_topic"] == "/carla/hero/vehicle_control_cmd"
    assert native["control_type"] == "carla"


def test_docs_match_code_and_param_files():
    doc = (REPO / "README.md").read_text()
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
    for name in ("carla_ros_bridge.yaml", "carla_native_ros2.yaml"):
        params = yaml.safe_load((REPO / "config" / name).read_text())["agent"]["ros__parameters"]
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
