"""The expert driver stays in its lane; its noise leaves the label clean."""

from __future__ import annotations

import numpy as np
import pytest

from sim.env import DriveEnv
from sim.expert import ExpertDriver
from sim.road import LaneRoad
from sim.seeds import eval_seeds
from sim.vehicle import BicycleModel, VehicleState


def _drive(seed: int, length_m: float) -> tuple[float, float, float]:
    """Drive the route with the vehicle model only (no rendering): mean/max |lateral|, speed."""
    road = LaneRoad.generate(seed, length_m)
    car = BicycleModel(state=VehicleState(*road.pose_at(0.0), speed=10.0))
    expert = ExpertDriver(road)
    s, errors, speeds = 0.0, [], []
    while s < length_m and len(errors) < 10 * length_m:
        car.step(*expert.act(car.state))
        s, lateral, _ = road.locate(car.state.x, car.state.y, s)
        errors.append(abs(lateral))
        speeds.append(car.state.speed)
    assert s >= length_m
    return float(np.mean(errors)), float(np.max(errors)), float(np.mean(speeds))


def test_expert_keeps_lane_on_a_1km_eval_road():
    mean_err, max_err, speed = _drive(eval_seeds(1)[0], 1000.0)
    assert mean_err < 0.05 and max_err < 0.5
    assert 7.0 < speed <= 10.5


@pytest.mark.parametrize("seed", eval_seeds(3, start=1))
def test_expert_keeps_lane_on_eval_roads(seed):
    mean_err, max_err, _ = _drive(seed, 300.0)
    assert mean_err < 0.05 and max_err < 0.5


def test_expert_in_env_finishes_route_and_recovers_from_noise():
    env = DriveEnv(route_length_m=150.0)
    _, info = env.reset(seed=eval_seeds(1)[0])
    noisy = ExpertDriver(env.road, noise_sigma=0.05, noise_seed=1)
    errors, diffs = [], []
    for _ in range(1000):
        clean = info["expert_action"]
        action = noisy.perturb(clean)
        diffs.append(abs(float(action[0] - clean[0])))
        _, _, term, trunc, info = env.step(action)
        errors.append(abs(info["lateral_error_m"]))
        if term or trunc:
            break
    assert term and not info["off_road"]
    assert max(diffs) > 0.05  # noise was applied to the executed action
    assert max(errors) > 0.1 and max(errors) < 1.0  # it drifted, and the expert pulled back
