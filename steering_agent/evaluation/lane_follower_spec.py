"""The `lane-follower` policy spec: the classical OpenCV lane follower
(`steering_agent.policy.lane_follower.LaneFollowerPolicy`) as an evaluation batch policy.

The class is imported when the spec is used. It takes the batched interface of the
checkpoint policy: either `act(images, stamps, speeds, expert, active)` or
`step(images, stamps, speeds, active=...)`, with `reset(indices)`; its constructor gets
those of `batch_size`, `camera` and `vehicle` it accepts.
"""

from __future__ import annotations

import inspect

import numpy as np


class _StepAdapter:
    """A policy with `step(images, stamps, speeds, active=)` as a batch policy."""

    name = "lane-follower"

    def __init__(self, policy) -> None:
        self._policy = policy

    def reset(self, indices=None) -> None:
        self._policy.reset(indices)

    def set_target_speed(self, row: int, mps) -> None:
        setter = getattr(self._policy, "set_target_speed", None)
        if setter is not None:
            setter(row, mps)

    def act(self, images, stamps, speeds, expert, active) -> np.ndarray:
        return np.asarray(self._policy.step(images, stamps, speeds, active=active), np.float32)


def lane_follower(batch_size: int, camera: dict | None = None, vehicle: dict | None = None):
    """The lane follower for `batch_size` streams, told the camera and car when it can."""
    try:
        from steering_agent.policy.lane_follower import LaneFollowerPolicy
    except ImportError as e:
        raise RuntimeError(
            f"--policy lane-follower: steering_agent.policy.lane_follower is not available ({e})"
        ) from None
    offered = {"batch_size": batch_size, "num_envs": batch_size, "camera": camera,
               "vehicle": vehicle}  # fmt: skip
    params = inspect.signature(LaneFollowerPolicy).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kw = {k: v for k, v in offered.items() if takes_all or k in params}
    policy = LaneFollowerPolicy(**kw)
    if not hasattr(policy, "act"):
        return _StepAdapter(policy)
    if not hasattr(policy, "set_target_speed") and hasattr(policy, "speed_controller"):
        return _Targeted(policy, batch_size)
    return policy


class _Targeted:
    """A batch policy with a `speed_controller`, its target settable per stream."""

    def __init__(self, policy, batch_size: int) -> None:
        from steering_agent.evaluation.policies import RowTargets

        self._policy = policy
        self.name = getattr(policy, "name", "lane-follower")
        self._speed = RowTargets(policy.speed_controller, batch_size)
        policy.speed_controller = self._speed

    def reset(self, indices=None) -> None:
        self._policy.reset(indices)

    def set_target_speed(self, row: int, mps) -> None:
        self._speed.targets[row] = self._speed.default_mps if mps is None else float(mps)

    def act(self, images, stamps, speeds, expert, active) -> np.ndarray:
        return self._policy.act(images, stamps, speeds, expert, active)
