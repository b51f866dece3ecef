"""The calibrated view and vehicle-independent steering (steering_agent.policy.calibration,
policy.control.VehicleSpec), checked against the simulator's own camera code."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from sim.camera import IpmCamera
from steering_agent.common.package_files import shipped_checkpoint
from steering_agent.policy.calibration import (
    CANONICAL_MOUNT,
    CameraCalibration,
    CameraSpec,
    GroundMemory,
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


# -- GroundMemory: the ground a camera misses, from the frames before ------------------------

LEVEL_NARROW = {"x_m": 1.0, "height_m": 1.2, "pitch_deg": 0.0}  # the camera grid's grid00


def _memory(mount, width=200, height=66, fov=60.0):
    canon, first_row = canonical_camera(200, 66)
    real = CameraSpec.from_fov(width, height, fov, **{**CANONICAL_MOUNT, **mount})
    calib = CameraCalibration(real, canon, 200, 66, first_row)
    return GroundMemory(calib, first_row), canon, calib, first_row


def test_ground_memory_maps_ground_points_and_the_cars_motion_exactly():
    """`ground_to_view` takes car-frame ground points to the canonical camera's pixels
    (its own projection, the crop's rows off), and `motion_map` takes the pixel of a
    world-fixed point in the new view to its pixel in the last one."""
    mem, canon, _, first_row = _memory(LEVEL_NARROW)
    pts = np.array([[x, y, 0.0] for x in (3.0, 6.0, 15.0, 40.0) for y in (-3.0, 0.0, 2.5)])
    u, v = canon.project(pts)
    h = mem.ground_to_view @ np.column_stack((pts[:, 0], pts[:, 1], np.ones(len(pts)))).T
    np.testing.assert_allclose(h[0] / h[2], u, atol=1e-9)
    np.testing.assert_allclose(h[1] / h[2], v - first_row, atol=1e-9)
    # the car drove 1.2 m along an arc turning 0.05 rad left: a world point p_last of the
    # last car frame is, in the new one, R(-dpsi) (p_last - chord)
    ds, dpsi = 1.2, 0.05
    chord = ds * np.array([math.cos(dpsi / 2), math.sin(dpsi / 2)])
    c, s = math.cos(-dpsi), math.sin(-dpsi)
    last = pts[:, :2]
    new = (last - chord) @ np.array([[c, -s], [s, c]]).T
    un, vn = canon.project(np.column_stack((new, np.zeros(len(new)))))
    m = mem.motion_map(ds, dpsi) @ np.stack((un, vn - first_row, np.ones(len(un))))
    np.testing.assert_allclose(m[0] / m[2], u, atol=1e-7)
    np.testing.assert_allclose(m[1] / m[2], v - first_row, atol=1e-7)


def test_ground_memory_fills_only_ground_that_was_in_view_earlier():
    """A level camera misses the ground just ahead (the bottom of the view, which it saw
    further ahead a moment before): that is filled, never the sky. A camera pitched
    steeply down misses the far road too, which it never sees: that is not filled."""
    mem, canon, _, first_row = _memory(LEVEL_NARROW)
    assert mem.active
    horizon = canon.cy - canon.fy * math.tan(math.radians(canon.pitch_deg)) - first_row
    assert not mem.mask[: math.ceil(horizon)].any()  # the sky: never
    assert mem.mask[-1, 90:110].all()  # straight ahead at the bottom row: missed, filled
    assert not mem.mask[20, 95:105].any()  # the road 10 m ahead: in view, the frame's own
    steep, *_ = _memory({"x_m": 1.0, "height_m": 1.5, "pitch_deg": 20.0})
    v_far = canon.project(np.array([[60.0, 0.0, 0.0]]))[1][0] - first_row
    assert 0 <= v_far < 66
    assert not steep.mask[round(v_far), 95:105].any()  # far road: never seen, not filled
    assert not _memory(LEVEL_NARROW, 800, 600, 90.0)[0].mask[:10].any()  # the sky: never


def test_ground_memory_brings_back_the_ground_the_canonical_camera_sees():
    """Driving the simulator with a level camera beside the canonical one (the same
    seed and actions, so the same poses): with the memory the unseen near ground of the
    calibrated view is much closer to what the canonical camera rendered there than
    the calibration's own stretch of the nearest visible ground."""
    import gymnasium

    import sim  # noqa: F401 (registers the env)

    cam_kw = {"camera_pitch_deg": 0.0, "camera_height_m": 1.2, "camera_x_m": 1.0,
              "fov_deg": 60.0}  # fmt: skip
    level = gymnasium.make("SteeringAgent/Drive-v0", width=200, height=66, **cam_kw).unwrapped
    canon_env = gymnasium.make("SteeringAgent/Drive-v0", width=200, height=66).unwrapped
    _, info = level.reset(seed=1000000)
    canon_env.reset(seed=1000000)
    mem, _, calib, _ = _memory(LEVEL_NARROW)
    veh = VehicleSpec()
    sel = mem.mask.astype(bool)
    err_memory, err_stretch = [], []
    for step in range(120):
        action = info["expert_action"]
        obs, _, _, _, info = level.step(action)
        want = canon_env.step(action)[0]["image"].astype(np.int16)
        stretch = calib.apply(obs["image"])
        view = stretch.copy()
        ds = float(obs["speed"][0]) * level.dt
        mem.fill(0, view, ds, -ds * veh.curvature(float(action[0])) if step else math.nan)
        if step >= 40:  # the memory has driven over the missed ground by now
            err_memory.append(np.abs(view[sel] - want[sel]).mean())
            err_stretch.append(np.abs(stretch[sel] - want[sel]).mean())
    # 0.75 here; a turn the wrong way gives 0.93, no motion 0.96, half the distance 0.85
    assert np.mean(err_memory) < 0.8 * np.mean(err_stretch), (err_memory, err_stretch)


def test_the_policy_fills_from_memory_only_with_a_known_speed_and_forgets_on_reset():
    from steering_agent.policy.model import ModelConfig, SteeringNet

    net = SteeringNet(ModelConfig()).eval()
    spec = CameraSpec.from_fov(200, 66, 60.0, **{**CANONICAL_MOUNT, **LEVEL_NARROW})
    policy = SteeringPolicy(net, PreprocessConfig(color="rgb"), "cpu", backend="torch",
                            camera=spec.to_dict())  # fmt: skip
    batched = policy._batched
    assert batched._memory is not None
    sel = batched._memory.mask.astype(bool)
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (4, 66, 200, 3), dtype=np.uint8)

    def stretched(k):
        return batched.calibration.apply(frames[k])

    policy.step(frames[0], 0.0, None)
    policy.step(frames[1], 0.05, None)  # no speed: no motion known, the stretch only
    np.testing.assert_array_equal(batched._frames[0], stretched(1))
    policy.step(frames[2], 0.10, 10.0)  # 0.5 m straight ahead: the last view, moved
    got = batched._frames[0]
    assert np.array_equal(got[~sel], stretched(2)[~sel])  # in view: the frame's own
    assert not np.array_equal(got[sel], stretched(2)[sel])
    policy.reset()
    policy.step(frames[3], 0.15, 10.0)  # the first frame after a reset: nothing to move
    np.testing.assert_array_equal(batched._frames[0], stretched(3))


def test_bgra_frames_fill_and_feed_the_network_as_their_rgb():
    """A bgra8 frame is remapped and filled from memory in its own channels, its colour
    converted once at the input's size: the network sees what the same RGB frames give,
    frame after frame. A change of layout starts the memory afresh (it does not move a
    view of the other layout)."""
    from steering_agent.policy.model import ModelConfig, SteeringNet

    net = SteeringNet(ModelConfig()).eval()
    spec = CameraSpec.from_fov(400, 300, 60.0, **{**CANONICAL_MOUNT, **LEVEL_NARROW})
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (4, 300, 400, 3), dtype=np.uint8)
    seen = {}
    for layout in ("rgb", "bgra"):
        policy = SteeringPolicy(net, PreprocessConfig(), "cpu", backend="torch",
                                camera=spec.to_dict())  # fmt: skip
        batched = policy._batched
        seen[layout] = []
        for k, rgb in enumerate(frames):
            image = rgb if layout == "rgb" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
            policy.step(image, 0.05 * k, 10.0)
            seen[layout].append(batched._frames[0].copy())
    sel = batched._memory.mask.astype(bool)
    for a, b in zip(seen["rgb"], seen["bgra"], strict=True):
        np.testing.assert_array_equal(a, b)
    # filled from memory (else the check above would not reach the memory's pixels)
    alone = SteeringPolicy(net, PreprocessConfig(), "cpu", backend="torch", camera=spec.to_dict())
    alone.step(frames[3], 0.0, 10.0)
    assert not np.array_equal(seen["rgb"][3][sel], alone._batched._frames[0][sel])
    # rgb, then bgra: the bgra frame is not filled from the rgb view before it
    policy.step(frames[0], 1.0, 10.0)
    policy.step(cv2.cvtColor(frames[3], cv2.COLOR_RGB2BGRA), 1.05, 10.0)
    np.testing.assert_array_equal(batched._frames[0], alone._batched._frames[0])
