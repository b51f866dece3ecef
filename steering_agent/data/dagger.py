"""DAgger recording: a trained checkpoint drives, the expert labels every frame.

Imitation from expert drives alone only shows the network states the expert visits; the
network's own small errors then take it to states it never saw, and the errors compound
(Ross, Gordon and Bagnell 2011, "A Reduction of Imitation Learning and Structured
Prediction to No-Regret Online Learning"). With `steering-agent record --driver CKPT`,
the checkpoint's command is executed and the bag's label topic still carries the
expert's action for the same frame, so the data shows the states the network reaches
and what the expert would do there.

When the car gets more than `takeover_m` off its lane centre, the expert takes the wheel
until it is back within `release_m`: the recovery is recorded as driven (no teleport),
and an episode does not end in the ditch. `expert_share` in the index entry is the
fraction of steps the expert drove.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TAKEOVER_M = 0.7  # below the evaluation's 1.0 m intervention, so the data shows recoveries
RELEASE_M = 0.25


class PolicyDriver:
    """Executes a checkpoint's command, handing over to the expert far off centre.

    Args:
        checkpoint: a `.pt` written by `steering-agent train`.
        env: the env it drives (its `camera_spec()` and `vehicle_spec()` calibrate the
            policy, as `steering-agent eval` does).
        takeover_m / release_m: |lateral error| at which the expert takes over / hands
            back (release_m < takeover_m).
        device: torch device of the policy ("cpu" by default: recording runs beside
            the simulator on the CPU).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        env: Any,
        takeover_m: float = TAKEOVER_M,
        release_m: float = RELEASE_M,
        device: str = "cpu",
    ) -> None:
        from steering_agent.policy.policy import SteeringPolicy

        if not 0.0 < release_m < takeover_m:
            raise ValueError(
                f"release_m {release_m} must be positive and below takeover_m {takeover_m}"
            )
        path = Path(checkpoint)  # a missing or bad file: load_checkpoint's one-line error
        u = env.unwrapped
        camera = u.camera_spec() if hasattr(u, "camera_spec") else None
        vehicle = u.vehicle_spec() if hasattr(u, "vehicle_spec") else None
        self.name = path.name
        self.policy = SteeringPolicy.load(path, device=device, camera=camera, vehicle=vehicle)
        self.takeover_m, self.release_m = float(takeover_m), float(release_m)
        self.expert_driving = False
        self.steps = 0
        self.expert_steps = 0
        self.takeovers = 0

    def reset(self) -> None:
        """A new episode: the policy forgets its past; the counts start again."""
        self.policy.reset()
        self.expert_driving = False
        self.steps = self.expert_steps = self.takeovers = 0

    def command(self, obs: dict, info: dict, expert: np.ndarray, stamp_s: float) -> np.ndarray:
        """The action to execute for this frame: [steer, throttle, brake]."""
        speed = float(np.ravel(obs["speed"])[0])
        limit = info.get("speed_limit_mps")
        if limit is not None:  # the road's speed, as `steering-agent eval` drives it
            self.policy.speed_controller.target_speed_mps = float(limit)
        # the policy sees every frame, also while the expert drives, so its state is the
        # state of a network watching this drive
        ctl = self.policy.step(obs["image"], stamp_s, speed)
        lateral = abs(float(info.get("lateral_error_m", 0.0)))
        if self.expert_driving and lateral < self.release_m:
            self.expert_driving = False
        elif not self.expert_driving and lateral > self.takeover_m:
            self.expert_driving = True
            self.takeovers += 1
        self.steps += 1
        if self.expert_driving:
            self.expert_steps += 1
            return np.asarray(expert, np.float32).copy()
        return np.array([ctl.steer, ctl.throttle, ctl.brake], np.float32)

    def summary(self) -> dict:
        """What goes into the episode's index entry."""
        share = self.expert_steps / self.steps if self.steps else 0.0
        return {"driver": self.name, "expert_share": round(share, 4), "takeovers": self.takeovers}
