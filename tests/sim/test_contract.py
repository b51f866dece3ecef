"""Both driving envs keep the one env contract (sim.contract); the checker catches breaks.

The CARLA env runs over a STAND-IN for the `carla` module (tests/carla_standin.py), not a
CARLA server.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sim.carla_backend import CarlaDriveEnv
from sim.contract import (
    CAMERA_INFO_KEYS,
    CAMERA_SPEC_KEYS,
    INFO_KEYS,
    OPTIONAL_INFO_KEYS,
    VEHICLE_SPEC_KEYS,
    ContractError,
    DrivingEnv,
    check_contract,
    info_problems,
)
from sim.env import DriveEnv
from tests.carla_standin import make_carla_standin

REPO = Path(__file__).resolve().parents[2]


def drive_env(render_mode):
    return DriveEnv(route_length_m=100.0, render_mode=render_mode)


def carla_env_over_standin(render_mode):
    return CarlaDriveEnv(
        carla_module=make_carla_standin(),
        width=32,
        height=24,
        route_length_m=60.0,
        render_mode=render_mode,
    )


ENVS = {"Drive-v0": drive_env, "CarlaDrive-v0 over the carla stand-in": carla_env_over_standin}


@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
@pytest.mark.parametrize("name", list(ENVS))
def test_env_keeps_the_contract(name, render_mode):
    env = ENVS[name](render_mode)
    check_contract(env, seed=1, steps=3)
    # the same rules spelled out, so a weak checker cannot hide a break
    assert isinstance(env, DrivingEnv)
    assert isinstance(env.dt, float) and env.dt > 0
    obs, info = env.reset(seed=2)
    assert set(INFO_KEYS) <= set(info) and info["sim_time_s"] == 0
    cam = env.camera_info()
    assert tuple(cam) == CAMERA_INFO_KEYS
    assert (cam["height"], cam["width"]) == obs["image"].shape[:2]
    spec = env.camera_spec()
    assert tuple(spec) == CAMERA_SPEC_KEYS and {k: spec[k] for k in CAMERA_INFO_KEYS} == cam
    vehicle = env.vehicle_spec()
    assert tuple(vehicle) == VEHICLE_SPEC_KEYS
    assert vehicle["wheelbase_m"] > 0 and 0 < vehicle["max_steer_deg"] < 90
    obs, _, _, _, info = env.step(info["expert_action"])
    assert set(INFO_KEYS) <= set(info) and info["sim_time_s"] == pytest.approx(env.dt)
    out = env.recenter()
    assert isinstance(out, tuple) and len(out) == 2
    obs, info = out
    assert env.observation_space.contains(obs) and set(INFO_KEYS) <= set(info)
    assert abs(info["lateral_error_m"]) < 0.05
    assert info_problems(info, env.action_space) == []
    frame = env.render()
    if render_mode is None:
        assert frame is None
    else:
        assert frame.dtype == np.uint8 and frame.shape == obs["image"].shape
    env.close()


def test_both_envs_share_spaces_and_dt():
    a, b = drive_env(None), carla_env_over_standin(None)
    assert a.dt == b.dt
    assert a.action_space == b.action_space
    assert a.observation_space["speed"] == b.observation_space["speed"]
    assert a.metadata["render_modes"] == b.metadata["render_modes"]
    b.close()


class _Broken(DriveEnv):
    """DriveEnv with one rule broken at a time (what the checker must catch)."""

    def __init__(self, breaks: str):
        super().__init__(route_length_m=100.0)
        self.breaks = breaks

    def recenter(self):
        out = super().recenter()
        return None if self.breaks == "recenter" else out

    def _info(self):
        info = super()._info()
        if self.breaks == "info":
            del info["progress_m"]
        return info

    def camera_info(self):
        info = super().camera_info()
        if self.breaks == "camera":
            del info["cy"]
        return info

    def camera_spec(self):
        spec = super().camera_spec()
        if self.breaks == "camera_spec":
            del spec["roll_deg"]
        if self.breaks == "camera_spec_fx":
            spec["fx"] += 1.0
        return spec

    def vehicle_spec(self):
        spec = super().vehicle_spec()
        if self.breaks == "vehicle_spec":
            spec["max_steer_deg"] = 120.0
        return spec

    def render(self):
        return np.zeros((2, 2, 3), np.uint8) if self.breaks == "render" else super().render()


@pytest.mark.parametrize(
    "breaks, message",
    [
        ("recenter", r"recenter\(\) returned None"),
        ("info", r"lacks 'progress_m'"),
        ("camera", r"camera_info\(\) lacks 'cy'"),
        ("render", r"render_mode None returned a frame"),
        ("camera_spec", r"camera_spec\(\) lacks 'roll_deg'"),
        ("camera_spec_fx", r"camera_spec\(\) and camera_info\(\) disagree on \['fx'\]"),
        ("vehicle_spec", r"max_steer_deg'\] = 120.0 is not within \(0, 90\)"),
    ],
)
def test_check_contract_catches_breaks(breaks, message):
    with pytest.raises(ContractError, match=message):
        check_contract(_Broken(breaks))


def test_info_problems_names_bad_values():
    env = DriveEnv(route_length_m=50.0)
    _, info = env.reset(seed=0)
    assert info_problems(info, env.action_space) == []
    bad = {**info, "off_road": 0, "route_completion": 1.5, "pose": [0, 0, 0]}
    bad["expert_action"] = np.zeros(3)
    text = "\n".join(info_problems(bad, env.action_space))
    for key in ("off_road", "route_completion", "pose", "expert_action"):
        assert key in text


def test_consumers_read_only_contract_keys():
    """Every info key the package reads as `info[...]` is in INFO_KEYS (or is a camera_info
    key: some consumers name that dict `info` too); `info.get(...)` may also read one of
    OPTIONAL_INFO_KEYS, which not every env gives."""
    # a variable named `info` (not `message_info`, rclpy's message info of a subscription)
    indexed = re.compile(r"""\binfo\[\s*["'](\w+)["']""")
    got = re.compile(r"""\binfo\.get\(\s*["'](\w+)["']""")
    texts = [path.read_text() for path in (REPO / "steering_agent").rglob("*.py")]
    strict = {key for text in texts for key in indexed.findall(text)}
    loose = {key for text in texts for key in got.findall(text)}
    assert strict and loose, "the patterns found no info reads at all"
    required = set(INFO_KEYS) | set(CAMERA_INFO_KEYS)
    assert strict <= required, strict - required
    assert loose <= required | set(OPTIONAL_INFO_KEYS), loose - required - set(OPTIONAL_INFO_KEYS)


class _Old(DriveEnv):
    """An env from before camera_spec()/vehicle_spec(): no longer a DrivingEnv."""

    def __getattribute__(self, name):
        if name in ("camera_spec", "vehicle_spec"):
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_check_contract_names_missing_spec_methods():
    with pytest.raises(ContractError, match=r"lacks \['camera_spec', 'vehicle_spec'\]"):
        check_contract(_Old(route_length_m=50.0))
