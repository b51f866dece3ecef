"""The policies `steering-agent eval` drives (specs: `make_policy`): the expert, trained
checkpoints (each stream's speed target settable per episode), the lane follower and the
hold rule around any of them (`steering_agent.evaluation.vec_eval` module doc)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from steering_agent.policy.control import SpeedController

if TYPE_CHECKING:
    from steering_agent.evaluation.vec_eval import EvalConfig


class BatchPolicy(Protocol):
    """What `run_episodes` drives: one command per slot, state kept per slot."""

    name: str

    def reset(self, indices: Sequence[int] | None = None) -> None: ...

    def act(
        self,
        images: np.ndarray,
        stamps: np.ndarray,
        speeds: np.ndarray,
        expert: np.ndarray,
        active: np.ndarray,
    ) -> np.ndarray: ...


class ExpertPolicy:
    """The simulator's expert driver (`info["expert_action"]`): the reference row."""

    name = "expert"

    def reset(self, indices: Sequence[int] | None = None) -> None:
        pass

    def act(self, images, stamps, speeds, expert, active) -> np.ndarray:
        return expert


class RowTargets(SpeedController):
    """A `SpeedController` whose target is per stream (`targets`, m/s): the policy's
    controller, taken over in place (state and gains kept)."""

    def __init__(self, base: SpeedController, batch: int) -> None:
        self.__dict__.update(base.__dict__)
        self.default_mps = float(base.target_speed_mps)
        self.targets = np.full(batch, self.default_mps)

    def update(self, steer, speed, dt, rows=slice(None)):
        self.target_speed_mps = self.targets[rows]
        try:
            return super().update(steer, speed, dt, rows)
        finally:
            self.target_speed_mps = self.default_mps


class CheckpointPolicy:
    """A trained checkpoint run through `BatchedSteeringPolicy` (the shared runtime)."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int,
        device: str = "auto",
        camera: dict | None = None,
        vehicle: dict | None = None,
    ) -> None:
        from steering_agent.policy.policy import BatchedSteeringPolicy

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"policy checkpoint {path} does not exist: pass a .pt file written by "
                "`steering-agent train` or `--policy expert`"
            )
        self.name = path.stem
        self.path = path
        self._policy = BatchedSteeringPolicy.load(
            path, batch_size=batch_size, device=device, camera=camera, vehicle=vehicle
        )
        self._speed = RowTargets(self._policy.speed_controller, batch_size)
        self._policy.speed_controller = self._speed

    def set_target_speed(self, row: int, mps: float | None) -> None:
        """The speed target of stream `row` (None: the checkpoint's)."""
        self._speed.targets[row] = self._speed.default_mps if mps is None else float(mps)

    def reset(self, indices: Sequence[int] | None = None) -> None:
        self._policy.reset(indices)

    def act(self, images, stamps, speeds, expert, active) -> np.ndarray:
        return self._policy.step(images, stamps, speeds, active=active)


HOLD_PREFIX = "hold:"
LANE_FOLLOWER = "lane-follower"


def checkpoint_of(spec: str) -> str | None:
    """The checkpoint path a policy spec loads, or None (expert, lane follower)."""
    while spec.startswith(HOLD_PREFIX):
        spec = spec[len(HOLD_PREFIX) :]
    return None if spec in ("expert", LANE_FOLLOWER) else spec


def make_policy(
    spec: str, batch_size: int, device: str = "auto", cfg: EvalConfig | None = None
) -> BatchPolicy:
    """A policy spec (module doc) -> a batch policy (told the camera and car of `cfg`'s
    env)."""
    if spec.startswith(HOLD_PREFIX):
        from steering_agent.policy.hold import HoldOnUnusable

        inner = make_policy(spec[len(HOLD_PREFIX) :], batch_size, device, cfg)
        return HoldOnUnusable(inner, batch_size)
    if spec == "expert":
        return ExpertPolicy()
    camera, vehicle = (None, None) if cfg is None else cfg.camera_and_vehicle()
    if spec == LANE_FOLLOWER:
        from steering_agent.evaluation.lane_follower_spec import lane_follower

        return lane_follower(batch_size, camera, vehicle)
    return CheckpointPolicy(spec, batch_size, device, camera, vehicle)
