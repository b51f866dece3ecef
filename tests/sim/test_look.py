"""DriveEnv's `look` switch: plain frames unchanged, varied worlds deterministic, the
gymnasium and env contracts on both looks, the new info keys and bad keywords."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.contract import check_contract
from sim.env import DriveEnv
from sim.looks import resolve_look
from tests.sim.plain_frames import FIXTURE, frame_hashes

# scenery and weather come from their own modules; until they exist, varied worlds run
# without them (an explicit False), afterwards with everything the look turns on
HAVE_EXTRAS = all(importlib.util.find_spec(m) for m in ("sim.scenery", "sim.weather"))
EXTRAS = {} if HAVE_EXTRAS else {"traffic": False, "objects": False, "weather": False}
NEW_KEYS = (
    "lane_index",
    "lanes_same",
    "lane_width_m",
    "lane_departure",
    "collision",
    "speed_limit_mps",
)


def test_plain_look_frames_are_byte_identical_to_the_original_renderer():
    assert frame_hashes() == json.loads(FIXTURE.read_text())


def test_explicit_plain_look_is_the_default():
    assert frame_hashes(look="plain", traffic=None, objects=None, weather=None) == json.loads(
        FIXTURE.read_text()
    )


def _drive(env: DriveEnv, seed: int, n: int = 40) -> tuple[list[np.ndarray], list[dict]]:
    obs, info = env.reset(seed=seed)
    frames, infos = [obs["image"].copy()], [info]
    for _ in range(n):
        obs, _, term, trunc, info = env.step(info["expert_action"])
        frames.append(obs["image"].copy())
        infos.append(info)
        if term or trunc:
            break
    return frames, infos


@pytest.mark.parametrize("seed", [1, 6, 1_000_003])
def test_varied_look_is_deterministic_per_seed(seed):
    a, ia = _drive(DriveEnv(look="varied", route_length_m=150.0, **EXTRAS), seed)
    b, ib = _drive(DriveEnv(look="varied", route_length_m=150.0, **EXTRAS), seed)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert [i["pose"] for i in ia] == [i["pose"] for i in ib]
    plain, _ = _drive(DriveEnv(route_length_m=150.0), seed, 3)
    assert not np.array_equal(a[0], plain[0])  # a different world from the plain one


def test_varied_info_keys_describe_the_road():
    env = DriveEnv(look="varied", route_length_m=200.0, lanes_per_direction=3, **EXTRAS)
    _frames, infos = _drive(env, 12, 60)
    lay = env.road.layout
    for info in infos:
        assert set(NEW_KEYS) <= set(info)
        assert info["lanes_same"] == 3 and info["lane_index"] == lay.ego_lane
        assert info["lane_width_m"] == lay.lane_width
        assert info["speed_limit_mps"] == lay.speed_mps
        assert info["lane_departure"] is False and isinstance(info["collision"], bool)
    # no explicit target speed: the expert cruises at the road's speed
    assert env.target_speed_mps == lay.speed_mps
    assert abs(infos[-1]["speed_mps"] - lay.speed_mps) < 2.0


def test_plain_info_keys_and_lane_departure():
    env = DriveEnv(route_length_m=100.0)
    _, info = env.reset(seed=2)
    assert info["lanes_same"] == 1 and info["lane_index"] == 0
    assert info["speed_limit_mps"] == 10.0 and info["collision"] is False
    assert env.target_speed_mps == 10.0
    w = info["lane_width_m"]
    for _ in range(200):  # steer hard left until a wheel is over the centre line
        _, _, term, _, info = env.step(np.array([1.0, 0.3, 0.0], np.float32))
        if abs(info["lateral_error_m"]) > 0.5 * w - 0.9 or term:
            break
    assert info["lane_departure"] is True


@pytest.mark.parametrize("look", ["plain", "varied"])
def test_check_env_passes(look):
    check_env(DriveEnv(look=look, route_length_m=100.0, render_mode="rgb_array", **EXTRAS))


def test_varied_env_keeps_the_contract():
    check_contract(DriveEnv(look="varied", route_length_m=100.0, **EXTRAS), seed=3, steps=3)


def test_target_speed_explicit_wins_on_varied():
    env = DriveEnv(look="varied", route_length_m=100.0, target_speed_mps=7.5, **EXTRAS)
    _, info = env.reset(seed=4)
    assert env.target_speed_mps == 7.5 and info["speed_limit_mps"] == env.road.layout.speed_mps


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"look": "fancy"}, "look"),
        ({"lanes_per_direction": 0}, "lanes_per_direction"),
        ({"lanes_per_direction": 5}, "lanes_per_direction"),
        ({"lanes_per_direction": 2.0}, "lanes_per_direction"),
        ({"traffic": "yes"}, "traffic"),
        ({"objects": 1}, "objects"),
        ({"weather": "snow"}, "weather"),
        ({"target_speed_mps": 0.0}, "target_speed_mps"),
        ({"target_speed_mps": 31.0}, "target_speed_mps"),
    ],
)
def test_bad_look_keywords_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DriveEnv(**kwargs)


def test_resolve_look_defaults_and_overrides():
    plain = resolve_look("plain")
    assert (plain.varied_road, plain.traffic, plain.objects, plain.weather) == (
        False,
        False,
        False,
        False,
    )
    varied = resolve_look("varied")
    assert (varied.varied_road, varied.traffic, varied.objects, varied.weather) == (
        True,
        True,
        True,
        None,
    )
    over = resolve_look("varied", 2, False, True, "fog")
    assert (over.lanes_per_direction, over.traffic, over.objects, over.weather) == (
        2,
        False,
        True,
        "fog",
    )
    assert resolve_look("plain", weather=True).weather is None  # True = from the seed
    assert resolve_look("plain", lanes_per_direction=3).varied_road


@pytest.mark.skipif(not HAVE_EXTRAS, reason="sim.scenery / sim.weather not there yet")
def test_varied_with_everything_on_renders_scenery_and_weather():
    env = DriveEnv(look="varied", route_length_m=150.0)
    frames, _infos = _drive(env, 21, 30)
    assert env.scenery is not None and env.weather is not None
    bare, _ = _drive(
        DriveEnv(look="varied", route_length_m=150.0, traffic=False, objects=False, weather=False),
        21,
        30,
    )
    assert any(not np.array_equal(a, b) for a, b in zip(frames, bare, strict=False))
