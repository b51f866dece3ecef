"""The calibrated view and vehicle-independent steering (steering_agent.policy.calibration,
policy.control.VehicleSpec), checked against the simulator's own camera code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.camera import IpmCamera
from steering_agent.common.package_files import shipped_checkpoint
from steering_agent.policy.calibration import (
    CANONICAL_MOUNT,
    CameraCalibration,
    CameraSpec,
    canonical_camera,
)
from steering_agent.policy.control import VehicleSpec, convert_steer
from steering_agent.policy.policy import BatchedSteeringPolicy, SteeringPolicy
from steering_agent.policy.preprocess import PreprocessConfig, preprocess_frames

BRIDGE = {"x_m": 2.0, "y_m": 0.0, "height_m": 2.0, "pitch_deg": 0.0}  # CARLA bridge rgb_front


def _bilinear(grid: np.ndarray, u: float, v: float) -> float:
    j, i = math.floor(u), math.floor(v)
    a, b = u - j, v - i
    g = grid
    return (
        g[i, j] * (1 - a) * (1 - b) + g[i, j + 1] * a * (1 - b)
        + g[i + 1, j] * (1 - a) * b + g[i + 1, j + 1] * a * b
    )  # fmt: skip


@pytest.mark.parametrize(
    "mount",
    [BRIDGE, {"x_m": 1.0, "height_m": 1.5, "pitch_deg": 5.0}, {"x_m": 0.5, "height_m": 2.4,
                                                             "pitch_deg": 20.0}],
)  # fmt: skip
def test_ground_points_land_on_the_canonical_pixels_within_half_a_pixel(mount):
    """Known ground points, projected by the simulator's camera (independent code) into
    the canonical and the real camera: the map takes the one pixel to the other."""
    canon, _ = canonical_camera(200, 66)
    real = CameraSpec.from_fov(800, 600, 90.0, **{**CANONICAL_MOUNT, **mount})
    calib = CameraCalibration(real, canon, 200, 66, supersample=1)
    sim_canon = IpmCamera(200, 66, 90.0, 1.5, 15.0, 1.0)
    sim_real = IpmCamera(800, 600, 90.0, real.height_m, real.pitch_deg, real.x_m)
    checked = 0
    for x in np.linspace(6.0, 40.0, 9):
        for y in (-3.5, -1.75, 0.0, 1.75, 3.5):
            p = np.array([[x, y, 0.0]])
            (uc,), (vc,) = sim_canon.project(p)
            (ur,), (vr,) = sim_real.project(p)
            if not (0 <= uc < 199 and 0 <= vc < 65 and 0 <= ur < 800 and 0 <= vr < 600):
                continue
            assert abs(_bilinear(calib.map_x, uc, vc) - ur) < 0.5, (x, y)
            assert abs(_bilinear(calib.map_y, uc, vc) - vr) < 0.5, (x, y)
            checked += 1
    assert checked >= 20


def test_a_canonical_frame_passes_through_unchanged():
    rgb = np.random.default_rng(0).integers(0, 256, (66, 200, 3), dtype=np.uint8)
    canon, _ = canonical_camera(200, 66)
    same = CameraCalibration(canon, canon, 200, 66, supersample=1)
    np.testing.assert_array_equal(same.apply(rgb), rgb)
    # the training mount at another resolution needs no calibration: crop and resize
    pre = PreprocessConfig()
    from steering_agent.policy.model import ModelConfig, SteeringNet

    net = SteeringNet(ModelConfig()).eval()
    big = CameraSpec.from_fov(800, 600, 90.0, **CANONICAL_MOUNT)
    policy = BatchedSteeringPolicy(net, pre, 1, "cpu", backend="torch", camera=big.to_dict())
    frame = np.random.default_rng(1).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    policy.step(frame[None], [0.0])
    assert policy.calibration is None


def test_a_checkpoint_from_before_drives_as_before():
    """The shipped checkpoints predate calibration: without a camera and vehicle they
    give exactly the network's own output on the plain preprocessing."""
    import torch

    from steering_agent.policy.checkpoint import load_checkpoint

    ckpt = load_checkpoint(shipped_checkpoint())
    assert "camera" not in ckpt.provenance  # from before this change
    policy = SteeringPolicy.load(shipped_checkpoint(), device="cpu", backend="torch")
    assert policy.calibration is None
    net = ckpt.build_model("cpu")
    frames = np.random.default_rng(2).integers(0, 256, (3, 66, 200, 3), dtype=np.uint8)
    state = None
    for k, f in enumerate(frames):
        x = torch.from_numpy(preprocess_frames(f, ckpt.preprocess_config)).float() / 127.5 - 1
        with torch.no_grad():
            out, state = net.step(x, state)
        c = policy.step(f, 0.05 * k, 5.0)
        assert c.steer == pytest.approx(float(np.clip(out.item(), -1, 1)), abs=1e-5)


def test_the_frame_size_must_match_given_intrinsics_and_fov_only_follows_the_frames():
    pre = PreprocessConfig()
    from steering_agent.policy.model import ModelConfig, SteeringNet

    net = SteeringNet(ModelConfig()).eval()
    spec = CameraSpec.from_fov(800, 600, 90.0, **{**CANONICAL_MOUNT, **BRIDGE})
    policy = SteeringPolicy(net, pre, "cpu", backend="torch", camera=spec.to_dict())
    assert policy.calibration.real.width == 800
    with pytest.raises(ValueError, match="camera_info"):
        policy.step(np.zeros((480, 640, 3), np.uint8), 0.0)
    policy.set_camera({**BRIDGE, "fov_deg": 90.0})  # no intrinsics: from each frame size
    policy.step(np.zeros((480, 640, 3), np.uint8), 0.05)
    assert policy.calibration.real.width == 640
    assert policy.calibration.real.fx == pytest.approx(320.0)


def test_vehicle_independent_steering():
    canon = VehicleSpec()  # 2.9 m, 70 deg
    assert convert_steer(0.3, canon, canon) == 0.3
    tight = VehicleSpec(2.9, 40.0)
    s = convert_steer(0.2, canon, tight)
    assert s > 0.2  # a smaller lock needs a larger command for the same path
    assert tight.curvature(s) == pytest.approx(canon.curvature(0.2), rel=1e-9)
    assert convert_steer(s, tight, canon) == pytest.approx(0.2, abs=1e-12)
    assert convert_steer(0.9, canon, tight) == 1.0  # clipped at full lock
    long = VehicleSpec(3.2, 70.0)
    assert convert_steer(-0.1, canon, long) < -0.1  # a longer car turns more for a path
    with pytest.raises(ValueError, match="max_steer_deg"):
        VehicleSpec(2.9, 95.0)


@pytest.mark.slow
def test_the_bridge_camera_drives_with_the_calibration_and_not_without():
    import gymnasium

    from sim.seeds import eval_seeds
    from steering_agent.evaluation.episodes import EpisodeRules, EpisodeRun

    env_kw = {"width": 800, "height": 600, "camera_pitch_deg": 0.0, "camera_height_m": 2.0,
              "camera_x_m": 2.0, "route_length_m": 300.0}  # fmt: skip
    spec = CameraSpec.from_fov(800, 600, 90.0, **{**CANONICAL_MOUNT, **BRIDGE})
    result = {}
    for name, camera in (("calibrated", spec), ("raw", None)):
        policy = SteeringPolicy.load(shipped_checkpoint(), camera=camera)
        env = gymnasium.make("SteeringAgent/Drive-v0", **env_kw)
        run = EpisodeRun(env, eval_seeds(1)[0], EpisodeRules(300.0))
        while not run.done:
            c = policy.step(run.obs["image"], run.info["sim_time_s"], run.obs["speed"])
            run.step([c.steer, c.throttle, c.brake])
        result[name] = run.summary()
    assert result["calibrated"].interventions == 0
    assert result["raw"].interventions > 10


def test_an_explicit_none_means_the_checkpoints_own_settings():
    from steering_agent.policy.checkpoint import load_checkpoint

    want = load_checkpoint(shipped_checkpoint()).provenance["target_speed_mps"]
    for policy in (
        SteeringPolicy.load(shipped_checkpoint(), target_speed_mps=None),
        SteeringPolicy.load(shipped_checkpoint()),
        BatchedSteeringPolicy.load(shipped_checkpoint(), 2, target_speed_mps=None),
    ):
        assert policy.speed_controller.target_speed_mps == pytest.approx(want)
