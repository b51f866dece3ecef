"""The one definition of the driving metrics (docs/interfaces.md), used by every consumer.

- autonomy (NVIDIA PilotNet): ``100 * (1 - interventions * 6 s / elapsed s)``, clamped
  at 0 (a policy rescued more often than every 6 s scores 0, with `autonomy_clamped`
  true; its interventions still tell such policies apart); an intervention is the car
  more than 1.0 m from the lane centre (or off the road); the evaluation then puts the
  car back on the centre line and drives on.
- lateral error: distance of the car's reference point from the lane centre (m); reported
  as the mean and the 95th percentile of its absolute value.
- route completion (CARLA leaderboard): % of the route driven.
- steering smoothness: mean absolute change of steering per second.

- the benchmark's scores (driving score, infractions, comfort, 95% confidence
  intervals): `steering_agent.evaluation.scores` and docs/benchmarks.md.

Episodes are accumulated step by step in an `EpisodeTrace` (rows of preallocated arrays
that double when full: no per-step allocation) and summarised by `summarize_episode`
(vectorised, once per episode); several episodes pool into one row with `aggregate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from steering_agent.evaluation import scores

INTERVENTION_THRESHOLD_M = 1.0
INTERVENTION_PENALTY_S = 6.0
LANE_WIDTH_M = 3.5  # when the env does not say (info lane_width_m)
HALF_TRACK_M = 0.8  # the wheels' half track: a wheel is over the line beyond this
SUMMARY_KEYS = (
    "autonomy_pct",
    "interventions",
    "mean_abs_lateral_m",
    "p95_abs_lateral_m",
    "route_completion_pct",
    "distance_km",
    "steer_smoothness",
)


def autonomy_pct(interventions: int, elapsed_s: float) -> float:
    """PilotNet autonomy: ``100 * (1 - interventions * 6 s / elapsed s)``, in 0..100.

    Clamped at 0: a policy that needs a rescue more often than every 6 s scores 0, not
    a negative percentage (`autonomy_clamped` says when that happened; compare such
    policies by their interventions).
    """
    return max(0.0, _autonomy_unclamped(interventions, elapsed_s))


def autonomy_clamped(interventions: int, elapsed_s: float) -> bool:
    """Whether `autonomy_pct` was clamped at 0 (the formula gives less than 0)."""
    return _autonomy_unclamped(interventions, elapsed_s) < 0.0


def _autonomy_unclamped(interventions: int, elapsed_s: float) -> float:
    if elapsed_s <= 0:
        raise ValueError(f"autonomy_pct: elapsed_s must be > 0, got {elapsed_s}")
    return 100.0 * (1.0 - interventions * INTERVENTION_PENALTY_S / elapsed_s)


def needs_intervention(lateral_error_m: float, off_road: bool = False) -> bool:
    """Whether the safety driver takes over: more than 1.0 m off the centre, or off road."""
    return bool(off_road) or abs(float(lateral_error_m)) > INTERVENTION_THRESHOLD_M


def abs_lateral_stats(lateral_error_m: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95th percentile (linear interpolation) of the absolute lateral error (m)."""
    a = np.abs(np.asarray(lateral_error_m, dtype=np.float64))
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(np.percentile(a, 95.0))


def steer_smoothness(steer: Sequence[float] | np.ndarray, dt_s: float) -> float:
    """Mean absolute change of steering per second: ``mean(|steer[t] - steer[t-1]|) / dt``."""
    if dt_s <= 0:
        raise ValueError(f"steer_smoothness: dt_s must be > 0, got {dt_s}")
    s = np.asarray(steer, dtype=np.float64)
    if s.size < 2:
        return 0.0
    return float(np.abs(np.diff(s)).mean() / dt_s)


def route_completion_pct(progress_m: float, route_length_m: float) -> float:
    """Share of the route driven, in % (capped at 100)."""
    if route_length_m <= 0:
        raise ValueError(f"route_completion_pct: route_length_m must be > 0, got {route_length_m}")
    return float(100.0 * min(max(progress_m, 0.0) / route_length_m, 1.0))


def lane_departure_from_lateral(lateral_m: float, lane_width_m: float = LANE_WIDTH_M) -> bool:
    """A wheel over an ego lane line, from the lateral error (for envs without
    info `lane_departure`): ``|lateral| + half track > lane width / 2``."""
    return abs(float(lateral_m)) + HALF_TRACK_M > 0.5 * float(lane_width_m)


_FLOATS = ("lateral_error_m", "steer", "expert_steer", "progress_m", "speed_mps", "yaw_rad")
_FLAGS = ("lane_departure", "collision", "collision_vehicle", "off_road")


class EpisodeTrace:
    """What one closed-loop episode did, step by step (the raw material of the metrics).

    Each `add` writes one row of two preallocated arrays (floats and flags), doubled when
    full; the columns read back as arrays of the steps so far (`lateral_error_m`,
    `steer`, `expert_steer`, `progress_m`, `speed_mps`, `yaw_rad`, `lane_departure`,
    `collision`, `collision_vehicle`, `off_road`).
    """

    def __init__(self, seed: int, route_length_m: float, dt_s: float, capacity: int = 1024):
        self.seed, self.route_length_m, self.dt_s = seed, route_length_m, dt_s
        self._f = np.empty((max(capacity, 16), len(_FLOATS)), np.float64)
        self._b = np.zeros((max(capacity, 16), len(_FLAGS)), bool)
        self._n = 0
        self.intervention_steps: list[int] = []

    def add(
        self,
        lateral_m: float,
        steer: float,
        expert_steer: float,
        progress_m: float,
        speed_mps: float = float("nan"),
        yaw_rad: float = float("nan"),
        lane_departure: bool | None = None,
        collision: bool = False,
        collision_vehicle: bool = False,
        off_road: bool = False,
    ) -> None:
        """Records one step: the state after the step and the steering that was executed
        (`lane_departure` None: from the lateral error, `lane_departure_from_lateral`)."""
        n = self._n
        if n == self._f.shape[0]:
            self._f = np.concatenate([self._f, np.empty_like(self._f)])
            self._b = np.concatenate([self._b, np.zeros_like(self._b)])
        if lane_departure is None:
            lane_departure = abs(lateral_m) + HALF_TRACK_M > 0.5 * LANE_WIDTH_M
        self._f[n] = (lateral_m, steer, expert_steer, progress_m, speed_mps, yaw_rad)
        self._b[n] = (lane_departure, collision, collision_vehicle, off_road)
        self._n = n + 1

    def mark_intervention(self) -> None:
        """Counts an intervention at the last recorded step."""
        self.intervention_steps.append(self._n - 1)

    def _col(self, j: int) -> np.ndarray:
        return self._f[: self._n, j]

    lateral_error_m = property(lambda self: self._col(0))
    steer = property(lambda self: self._col(1))
    expert_steer = property(lambda self: self._col(2))
    progress_m = property(lambda self: self._col(3))
    speed_mps = property(lambda self: self._col(4))
    yaw_rad = property(lambda self: self._col(5))
    lane_departure = property(lambda self: self._b[: self._n, 0])
    collision = property(lambda self: self._b[: self._n, 1])
    collision_vehicle = property(lambda self: self._b[: self._n, 2])
    off_road = property(lambda self: self._b[: self._n, 3])

    @property
    def steps(self) -> int:
        return self._n

    @property
    def elapsed_s(self) -> float:
        return self.steps * self.dt_s


@dataclass(frozen=True)
class EpisodeMetrics:
    """The metrics of one episode (keys of `SUMMARY_KEYS`, plus seed, steps, time,
    whether autonomy was clamped at 0, and the scores of `episode_scores`)."""

    seed: int
    steps: int
    elapsed_s: float
    autonomy_pct: float
    interventions: int
    mean_abs_lateral_m: float
    p95_abs_lateral_m: float
    route_completion_pct: float
    distance_km: float
    steer_smoothness: float
    autonomy_clamped: bool = False
    scores: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        return {**d, **d.pop("scores")}


def episode_scores(trace: EpisodeTrace) -> dict:
    """The benchmark scores of one episode (`scores` module doc; docs/benchmarks.md)."""
    distance_km = max(float(trace.progress_m[-1]), 0.0) / 1000.0
    collide = trace.collision
    hits = np.flatnonzero(collide & ~np.concatenate([[False], collide[:-1]]))
    by_vehicle = int(np.count_nonzero(trace.collision_vehicle[hits]))
    lane = scores.rising_edges(trace.lane_departure)
    counts = {
        "collision_vehicle": by_vehicle,
        "collision_static": int(hits.size) - by_vehicle,
        "intervention": len(trace.intervention_steps),
        "lane_departure": lane,
    }
    on_road = scores.on_road_completion_pct(trace.progress_m, trace.off_road, trace.route_length_m)
    c = scores.comfort(trace.yaw_rad, trace.speed_mps, trace.dt_s, trace.intervention_steps)
    return {
        "driving_score": scores.driving_score(on_road, counts),
        "route_completion_on_road_pct": on_road,
        "lane_departures": lane,
        "lane_departures_per_km": scores.per_km(lane, distance_km),
        "off_road": scores.rising_edges(trace.off_road),
        "off_road_steps": int(np.count_nonzero(trace.off_road)),
        "collisions": int(hits.size),
        "collisions_vehicle": by_vehicle,
        "interventions_per_km": scores.per_km(len(trace.intervention_steps), distance_km),
        "lat_accel_exceed_per_km": scores.per_km(c["lat_accel_exceed"], distance_km),
        "lat_jerk_exceed_per_km": scores.per_km(c["lat_jerk_exceed"], distance_km),
        **c,
    }


def summarize_episode(trace: EpisodeTrace) -> EpisodeMetrics:
    """The metrics of one recorded episode."""
    if trace.steps == 0:
        raise ValueError(f"episode with seed {trace.seed} has no steps: nothing to summarise")
    mean_lat, p95_lat = abs_lateral_stats(trace.lateral_error_m)
    distance_m = max(trace.progress_m[-1], 0.0)
    return EpisodeMetrics(
        seed=int(trace.seed),
        steps=trace.steps,
        elapsed_s=trace.elapsed_s,
        autonomy_pct=autonomy_pct(len(trace.intervention_steps), trace.elapsed_s),
        interventions=len(trace.intervention_steps),
        mean_abs_lateral_m=mean_lat,
        p95_abs_lateral_m=p95_lat,
        route_completion_pct=route_completion_pct(distance_m, trace.route_length_m),
        distance_km=float(distance_m / 1000.0),
        steer_smoothness=steer_smoothness(trace.steer, trace.dt_s),
        autonomy_clamped=autonomy_clamped(len(trace.intervention_steps), trace.elapsed_s),
        scores=episode_scores(trace),
    )


# the figures with a 95% confidence interval over episodes (`<key>_ci95`)
CI_KEYS = (
    "driving_score", "route_completion_pct", "lane_departures_per_km", "collisions",
    "autonomy_pct", "mean_abs_lateral_m", "p95_abs_lateral_m", "lat_accel_exceed_per_km",
    "lat_jerk_exceed_per_km", "interventions", "off_road",
)  # fmt: skip


def aggregate(traces: Sequence[EpisodeTrace]) -> dict:
    """One row over several episodes.

    Autonomy uses total interventions over total time (as PilotNet reports a whole test
    drive), clamped at 0 (`autonomy_clamped` true when it was); lateral statistics pool
    all steps; rates per km are totals over the total distance; counts are totals;
    driving score and route completion are means over episodes (the Leaderboard's);
    smoothness pools the steering changes of all episodes; comfort maxima are the
    largest of any episode. Every `CI_KEYS` figure has a `<key>_ci95`: the Student t
    half-width of the mean of its per-episode values (`scores.ci95`).
    """
    if not traces:
        raise ValueError("aggregate: no episodes to aggregate")
    eps = [summarize_episode(t).as_dict() for t in traces]
    lateral = np.concatenate([np.asarray(t.lateral_error_m, dtype=np.float64) for t in traces])
    mean_lat, p95_lat = abs_lateral_stats(lateral)
    elapsed = sum(t.elapsed_s for t in traces)
    interventions = sum(len(t.intervention_steps) for t in traces)
    changes = [np.abs(np.diff(np.asarray(t.steer, dtype=np.float64))) for t in traces]
    n_changes = sum(c.size for c in changes)
    dt = traces[0].dt_s
    smooth = float(sum(c.sum() for c in changes) / (n_changes * dt)) if n_changes else 0.0
    km = float(sum(max(t.progress_m[-1], 0.0) for t in traces) / 1000.0)

    def total(key: str) -> int:
        return int(sum(e[key] for e in eps))

    def mean(key: str) -> float:
        return float(np.mean([e[key] for e in eps]))

    def biggest(key: str) -> float:
        return float(max(e[key] for e in eps))

    row = {
        "driving_score": mean("driving_score"),
        "route_completion_pct": mean("route_completion_pct"),
        "route_completion_on_road_pct": mean("route_completion_on_road_pct"),
        "autonomy_pct": autonomy_pct(interventions, elapsed),
        "autonomy_clamped": autonomy_clamped(interventions, elapsed),
        "interventions": int(interventions),
        "interventions_per_km": scores.per_km(interventions, km),
        "mean_abs_lateral_m": mean_lat,
        "p95_abs_lateral_m": p95_lat,
        "lane_departures": total("lane_departures"),
        "lane_departures_per_km": scores.per_km(total("lane_departures"), km),
        "off_road": total("off_road"),
        "off_road_steps": total("off_road_steps"),
        "collisions": total("collisions"),
        "collisions_vehicle": total("collisions_vehicle"),
        "collisions_per_km": scores.per_km(total("collisions"), km),
        "lat_accel_exceed": total("lat_accel_exceed"),
        "lat_jerk_exceed": total("lat_jerk_exceed"),
        "lat_accel_exceed_per_km": scores.per_km(total("lat_accel_exceed"), km),
        "lat_jerk_exceed_per_km": scores.per_km(total("lat_jerk_exceed"), km),
        "lat_accel_max_abs": biggest("lat_accel_max_abs"),
        "lat_jerk_max_abs": biggest("lat_jerk_max_abs"),
        "yaw_rate_mean_abs": mean("yaw_rate_mean_abs"),
        "yaw_rate_max_abs": biggest("yaw_rate_max_abs"),
        "distance_km": km,
        "steer_smoothness": smooth,
        "episodes_count": len(traces),
        "elapsed_s": float(elapsed),
    }
    for key in CI_KEYS:
        row[key + "_ci95"] = scores.ci95([e[key] for e in eps])
    return row


def penalty_table() -> dict:
    """The driving score's coefficients and rules, as written into every results JSON."""
    return {
        "coefficients": dict(scores.PENALTIES),
        "off_road": scores.OFF_ROAD_RULE,
        "lat_accel_limit_mps2": scores.LAT_ACCEL_LIMIT,
        "lat_jerk_limit_mps3": scores.LAT_JERK_LIMIT,
        "smooth_steps": scores.SMOOTH_STEPS,
        "lane_width_default_m": LANE_WIDTH_M,
        "half_track_m": HALF_TRACK_M,
    }
