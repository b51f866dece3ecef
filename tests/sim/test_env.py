"""DriveEnv: gymnasium API, determinism, info, bad arguments, recenter."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.env import DriveEnv
from sim.seeds import EVAL_SEED_START


def test_registered_env_passes_check_env():
    env = gym.make("SteeringAgent/Drive-v0", route_length_m=100.0, render_mode="rgb_array")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=5)
    assert obs["image"].shape == (66, 200, 3) and obs["image"].dtype == np.uint8
    assert obs["speed"].shape == (1,) and obs["speed"].dtype == np.float32
    for key in (
        "lateral_error_m",
        "heading_error_rad",
        "progress_m",
        "route_completion",
        "off_road",
        "expert_action",
        "sim_time_s",
        "speed_mps",
        "seed",
        "pose",
    ):
        assert key in info
    assert info["seed"] == 5 and info["expert_action"].dtype == np.float32
    frame = env.render()
    assert frame.shape == (66, 200, 3) and not np.array_equal(frame, obs["image"])
    env.close()


def _rollout(seed: int, n: int = 30) -> list[np.ndarray]:
    env = DriveEnv(route_length_m=100.0)
    obs, info = env.reset(seed=seed)
    frames = [obs["image"]]
    rng = np.random.default_rng(0)
    for _ in range(n):
        action = info["expert_action"] + np.array([rng.normal(0, 0.05), 0, 0], np.float32)
        obs, _, _, _, info = env.step(action)
        frames.append(obs["image"])
    return frames


def test_same_seed_and_actions_give_identical_observations():
    a, b = _rollout(3), _rollout(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=False))
    c = _rollout(4)
    assert not np.array_equal(a[-1], c[-1])


def test_reset_without_seed_draws_training_roads_only():
    env = DriveEnv(route_length_m=50.0)
    env.reset(seed=EVAL_SEED_START + 3)
    seeds = {env.reset()[1]["seed"] for _ in range(5)}
    assert all(s < EVAL_SEED_START for s in seeds) and len(seeds) == 5
    _, info = env.reset(options={"road_seed": 42})
    assert info["seed"] == 42


@pytest.mark.parametrize("bad", ["abc", 1.5, -3, True])
def test_bad_seed_is_a_clear_error(bad):
    env = DriveEnv(route_length_m=50.0)
    with pytest.raises((TypeError, ValueError), match="seed"):
        env.reset(seed=bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": -5}, "width"),
        ({"height": 0}, "height"),
        ({"width": 20.5}, "width"),
        ({"fov_deg": 0}, "fov_deg"),
        ({"route_length_m": -1}, "route_length_m"),
        ({"render_mode": "human"}, "render_mode"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_bad_constructor_arguments_are_clear_errors(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        DriveEnv(**kwargs)


def test_nan_action_raises_and_out_of_range_is_clipped():
    env = DriveEnv(route_length_m=50.0)
    env.reset(seed=1)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.5, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([0.0, 0.5]))
    env.step(np.array([5.0, 3.0, -1.0]))
    st = env.car.state
    # clipped to steer=1 (full right): the wheel turns right at the actuator's rate limit
    assert st.wheel_angle < 0 and st.speed > 10.0


def test_recenter_zeroes_lateral_error_and_keeps_progress():
    env = DriveEnv(route_length_m=200.0)
    _, info = env.reset(seed=2)
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([-0.3, 0.3, 0.0], np.float32))
    assert abs(info["lateral_error_m"]) > 0.3
    progress = info["progress_m"]
    _, info = env.unwrapped.recenter()
    assert abs(info["lateral_error_m"]) < 1e-3 and abs(info["heading_error_rad"]) < 1e-3
    assert info["progress_m"] == pytest.approx(progress, abs=0.5)


def test_leaving_the_road_terminates_and_route_end_terminates():
    env = DriveEnv(route_length_m=30.0)
    _, info = env.reset(seed=9)
    for _ in range(200):
        _, _, term, trunc, info = env.step(np.array([1.0, 0.5, 0.0], np.float32))
        if term:
            break
    assert term and info["off_road"] and not trunc
    _, info = env.reset(seed=9)
    for _ in range(200):
        _, _, term, trunc, info = env.step(info["expert_action"])
        if term or trunc:
            break
    assert term and not info["off_road"] and info["route_completion"] == pytest.approx(1.0)


def test_step_limit_truncates():
    env = DriveEnv(route_length_m=500.0, max_steps=5)
    _, info = env.reset(seed=1)
    results = [env.step(info["expert_action"]) for _ in range(5)]
    assert [r[3] for r in results] == [False] * 4 + [True]


def test_camera_info_and_topdown():
    env = DriveEnv(width=160, height=120, fov_deg=90.0, route_length_m=50.0)
    env.reset(seed=0)
    ci = env.unwrapped.camera_info()
    assert ci["width"] == 160 and ci["fx"] == pytest.approx(80.0) and ci["cx"] == 80.0
    top = env.topdown()
    assert top.dtype == np.uint8 and top.ndim == 3
    assert (top[..., 0] > 200).any()  # the car, drawn red
    assert env.dt == 0.05 and sim.EVAL_SEED_START == EVAL_SEED_START
