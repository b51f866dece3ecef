"""The classical lane follower (`steering_agent.policy.lane_follower`), closed loop on the
embedded simulator's held-out roads, at the training camera and at the CARLA bridge's."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import sim  # noqa: F401  (registers the env ids)
from sim.seeds import EVAL_SEED_START
from steering_agent.policy.lane_follower import LaneFollowerPolicy

CARLA_MOUNT = {"width": 800, "height": 600, "camera_x_m": 2.0, "camera_height_m": 2.0,
               "camera_pitch_deg": 0.0}  # fmt: skip
# Measured on these seeds (300 m): mean |lateral| 0.035-0.08 m at both cameras; the bound
# leaves about 2.5x margin.
MAX_MEAN_LATERAL_M = 0.2


def _drive(seed: int, **env_kw):
    env = gymnasium.make("SteeringAgent/Drive-v0", route_length_m=300, **env_kw)
    u = env.unwrapped
    pol = LaneFollowerPolicy(1, camera=u.camera_spec(), vehicle=u.vehicle_spec())
    obs, info = env.reset(seed=seed)
    lateral, off_road = [], False
    while True:
        cmd = pol.act(obs["image"][None], [info["sim_time_s"]], [info["speed_mps"]])[0]
        obs, _, term, trunc, info = env.step(cmd)
        lateral.append(abs(info["lateral_error_m"]))
        off_road |= bool(info["off_road"])
        if term or trunc:
            break
    env.close()
    return info["route_completion"], off_road, float(np.mean(lateral))


@pytest.mark.parametrize(
    "k, mount",
    [(0, "train"), (1, "train"), (2, "train"), (3, "train"), (1, "carla"), (3, "carla")],
)
def test_drives_held_out_routes_in_its_lane(k, mount):
    kw = CARLA_MOUNT if mount == "carla" else {}
    completion, off_road, mean_lat = _drive(EVAL_SEED_START + k, **kw)
    assert not off_road
    assert completion == pytest.approx(1.0)
    assert mean_lat < MAX_MEAN_LATERAL_M


def _road_frames(n=3):
    env = gymnasium.make("SteeringAgent/Drive-v0", route_length_m=100)
    obs, info = env.reset(seed=EVAL_SEED_START)
    frames = []
    for _ in range(n):
        frames.append(obs["image"])
        obs, _, _, _, info = env.step(info["expert_action"])
    env.close()
    return np.stack(frames)


def test_blank_frames_hold_the_last_curvature_and_reset_is_per_row():
    road = _road_frames(3)
    pol = LaneFollowerPolicy(2)
    for i in range(3):
        out = pol.act(np.stack([road[i], road[i]]), [0.05 * i] * 2, [8.0, 8.0])
    assert out.shape == (2, 3) and out.dtype == np.float32
    assert pol.found.any(axis=1).all()  # a line of the lane seen in each stream
    held = pol._lines[0].curvature
    pol._lines[0].curvature = held + 0.01  # as after a curve
    blank = np.zeros_like(road[:2])
    out = pol.act(blank, [0.15] * 2, [8.0, 8.0])
    assert not pol.found.any()
    assert out[0, 0] == pytest.approx(pol.vehicle.steer_for(held + 0.01), abs=1e-6)
    pol.reset([0])
    assert pol._lines[0].centre.any() == 0 and pol._lines[1].centre.any()  # row 0 forgot
    np.testing.assert_array_equal(pol.last_action[0], [0.0, 0.0, 1.0])
    # an inactive row keeps its command
    before = pol.last_action[1].copy()
    out = pol.act(np.stack([road[0], road[0]]), [0.2] * 2, [8.0, 8.0], active=[True, False])
    np.testing.assert_array_equal(out[1], before)


def test_a_camera_that_sees_no_road_is_refused():
    pol = LaneFollowerPolicy(1, camera={"fov_deg": 90.0, "pitch_deg": -30.0})
    with pytest.raises(ValueError, match="too little"):
        pol.act(np.zeros((1, 66, 200, 3), np.uint8), [0.0], [8.0])
