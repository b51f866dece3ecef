"""The README's loop for the gym user, as written there, with the shipped checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_gym_loop_runs_with_the_shipped_checkpoint(monkeypatch):
    import gymnasium

    import sim  # noqa: F401  (importing sim registers SteeringAgent/Drive-v0)
    from steering_agent.policy.policy import SteeringPolicy

    monkeypatch.chdir(REPO)  # the README's relative path
    env = gymnasium.make("SteeringAgent/Drive-v0", width=200, height=66, route_length_m=1000)
    policy = SteeringPolicy.load("checkpoints/cnn_lstm.pt")
    obs, info = env.reset(seed=1_000_000)
    policy.reset()
    assert obs["speed"].shape == (1,) and obs["speed"].dtype == np.float32
    done, steps = False, 0
    while not done and steps < 20:  # the README's loop, for 20 steps of the 1 km route
        t = info["sim_time_s"]
        c = policy.step(obs["image"], t, obs["speed"])  # -> Control(steer, throttle, brake)
        obs, reward, terminated, truncated, info = env.step([c.steer, c.throttle, c.brake])
        done = terminated or truncated
        steps += 1
        assert np.isfinite(reward)
        assert all(math.isfinite(v) for v in (c.steer, c.throttle, c.brake))
        assert -1.0 <= c.steer <= 1.0 and 0.0 <= c.throttle <= 1.0 and 0.0 <= c.brake <= 1.0
    env.close()
    assert steps == 20 and not done
    assert info["progress_m"] > 0 and abs(info["lateral_error_m"]) < 1.0
