"""The one episode runner: interventions, re-centring, episode ends and the metrics trace.

Every consumer drives episodes through `EpisodeRun` (no ROS here): the vectorised gym
evaluation (`vec_eval`), `steering-agent drive` and the simulator bridge node
(`steering_agent.ros.sim_bridge`), so a DDS drive and a gym drive of the same seed are
judged the same way:

- after each step the trace records the lateral error, the executed steering, the
  expert's steering, the progress, speed and heading (comfort), and the infraction flags:
  info `lane_departure` (else from the lateral error and info `lane_width_m`, 3.5 m by
  default), `collision` (with info `collision_kind` "vehicle" or else a static object)
  and `off_road`; every key but the lateral error and progress is read with a default,
  so envs without them are judged too;
- an intervention (`metrics.needs_intervention`: more than 1.0 m off the lane centre or
  off the road, or the env ending the episode before the route's end) is counted, and
  the car is put back on the centre line (`env.unwrapped.recenter()`, which returns the
  observation and info of the new pose) and drives on; with `recenter=False` the
  episode ends there instead;
- the episode ends when the route is complete (`route_complete`), the env truncates it
  (`truncated`), after `max_steps` (`max_steps`), when the car gains under 1 m in
  `stuck_s` (`stuck`) or at the time limit (`time_limit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steering_agent.evaluation import metrics

RUNNING = "running"


@dataclass(frozen=True)
class EpisodeRules:
    """How an episode is judged and when it ends (module doc)."""

    route_length_m: float = 1000.0
    recenter: bool = True
    max_episode_s: float | None = None  # default: the route at an average 2 m/s, >= 60 s
    stuck_s: float = 30.0
    max_steps: int = 0  # 0: no step limit

    def time_limit_s(self) -> float:
        return self.max_episode_s or max(self.route_length_m / 2.0, 60.0)


class EpisodeRun:
    """One episode of one env from `reset(seed)` to its end.

    Attributes:
        obs, info: what the policy sees next (after any re-centring).
        trace: the `metrics.EpisodeTrace` so far.
        reason: `running` until the episode ends, then why it ended.
    """

    def __init__(self, env, seed: int, rules: EpisodeRules) -> None:
        self.env, self.seed, self.rules = env, int(seed), rules
        self.obs, self.info = env.reset(seed=self.seed)
        dt = float(env.unwrapped.dt)
        self.trace = metrics.EpisodeTrace(self.seed, rules.route_length_m, dt)
        self.reason = RUNNING
        self.off_road_steps = 0
        self.max_abs_lateral_m = 0.0
        self._best_progress = float(self.info["progress_m"])
        self._best_progress_t = 0.0

    @property
    def done(self) -> bool:
        return self.reason != RUNNING

    @property
    def interventions(self) -> int:
        return len(self.trace.intervention_steps)

    def step(self, action) -> bool:
        """Execute `action` ([steer, throttle, brake]); True when the episode is over."""
        if self.done:
            raise RuntimeError(f"episode of seed {self.seed} is over ({self.reason})")
        cmd = np.asarray(action, dtype=np.float32)
        self.obs, _, terminated, truncated, info = self.env.step(cmd)
        self.info = info
        lateral = float(info["lateral_error_m"])
        progress = float(info["progress_m"])
        expert = info.get("expert_action")
        expert_steer = float(expert[0]) if expert is not None else float("nan")
        off_road = bool(info.get("off_road", False))
        pose = info.get("pose")
        departure = info.get("lane_departure")
        if departure is None:
            departure = metrics.lane_departure_from_lateral(
                lateral, info.get("lane_width_m", metrics.LANE_WIDTH_M)
            )
        collision = bool(info.get("collision", False))
        self.trace.add(
            lateral, float(cmd[0]), expert_steer, progress,
            float(info.get("speed_mps", float("nan"))),
            float(pose[2]) if pose is not None else float("nan"),
            bool(departure), collision,
            collision and info.get("collision_kind", "static") == "vehicle", off_road,
        )  # fmt: skip
        self.max_abs_lateral_m = max(self.max_abs_lateral_m, abs(lateral))
        self.off_road_steps += off_road
        complete = float(info["route_completion"]) >= 1.0
        if metrics.needs_intervention(lateral, off_road) or (terminated and not complete):
            self.trace.mark_intervention()
            if self.rules.recenter and not truncated:
                self.obs, self.info = self.env.unwrapped.recenter()
            elif terminated:
                self.reason = "off_road" if off_road else "terminated"
                return True
        self.reason = self._end_reason(complete, truncated, progress)
        return self.done

    def _end_reason(self, complete: bool, truncated: bool, progress: float) -> str:
        trace, rules = self.trace, self.rules
        if complete:
            return "route_complete"
        if truncated:
            return "truncated"
        if rules.max_steps and trace.steps >= rules.max_steps:
            return "max_steps"
        if progress > self._best_progress + 1.0:
            self._best_progress, self._best_progress_t = progress, trace.elapsed_s
        if trace.elapsed_s - self._best_progress_t > rules.stuck_s:
            return "stuck"
        if trace.elapsed_s >= rules.time_limit_s():
            return "time_limit"
        return RUNNING

    def summary(self) -> metrics.EpisodeMetrics:
        return metrics.summarize_episode(self.trace)
