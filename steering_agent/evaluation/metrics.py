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

Episodes are accumulated step by step in an `EpisodeTrace` (preallocated growth, no
per-step allocation beyond list appends) and summarised by `summarize_episode`; several
episodes pool into one row with `aggregate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

INTERVENTION_THRESHOLD_M = 1.0
INTERVENTION_PENALTY_S = 6.0
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


@dataclass
class EpisodeTrace:
    """What one closed-loop episode did, step by step (the raw material of the metrics)."""

    seed: int
    route_length_m: float
    dt_s: float
    lateral_error_m: list[float] = field(default_factory=list)
    steer: list[float] = field(default_factory=list)
    expert_steer: list[float] = field(default_factory=list)
    progress_m: list[float] = field(default_factory=list)
    intervention_steps: list[int] = field(default_factory=list)

    def add(self, lateral_m: float, steer: float, expert_steer: float, progress_m: float) -> None:
        """Records one step: the state after the step and the steering that was executed."""
        self.lateral_error_m.append(float(lateral_m))
        self.steer.append(float(steer))
        self.expert_steer.append(float(expert_steer))
        self.progress_m.append(float(progress_m))

    def mark_intervention(self) -> None:
        """Counts an intervention at the last recorded step."""
        self.intervention_steps.append(len(self.steer) - 1)

    @property
    def steps(self) -> int:
        return len(self.steer)

    @property
    def elapsed_s(self) -> float:
        return self.steps * self.dt_s


@dataclass(frozen=True)
class EpisodeMetrics:
    """The metrics of one episode (keys of `SUMMARY_KEYS`, plus seed, steps, time and
    whether autonomy was clamped at 0)."""

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

    def as_dict(self) -> dict:
        return asdict(self)


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
        distance_km=distance_m / 1000.0,
        steer_smoothness=steer_smoothness(trace.steer, trace.dt_s),
        autonomy_clamped=autonomy_clamped(len(trace.intervention_steps), trace.elapsed_s),
    )


def aggregate(traces: Sequence[EpisodeTrace]) -> dict:
    """One row over several episodes: every step and intervention pooled.

    Autonomy uses total interventions over total time (as PilotNet reports a whole test
    drive), clamped at 0 (`autonomy_clamped` true when it was); lateral statistics pool
    all steps; route completion is the mean over episodes; distance is the sum;
    smoothness pools the steering changes of all episodes.
    """
    if not traces:
        raise ValueError("aggregate: no episodes to aggregate")
    lateral = np.concatenate([np.asarray(t.lateral_error_m, dtype=np.float64) for t in traces])
    mean_lat, p95_lat = abs_lateral_stats(lateral)
    elapsed = sum(t.elapsed_s for t in traces)
    interventions = sum(len(t.intervention_steps) for t in traces)
    changes = [np.abs(np.diff(np.asarray(t.steer, dtype=np.float64))) for t in traces]
    n_changes = sum(c.size for c in changes)
    dt = traces[0].dt_s
    smooth = float(sum(c.sum() for c in changes) / (n_changes * dt)) if n_changes else 0.0
    completion = [route_completion_pct(t.progress_m[-1], t.route_length_m) for t in traces]
    return {
        "autonomy_pct": autonomy_pct(interventions, elapsed),
        "autonomy_clamped": autonomy_clamped(interventions, elapsed),
        "interventions": int(interventions),
        "mean_abs_lateral_m": mean_lat,
        "p95_abs_lateral_m": p95_lat,
        "route_completion_pct": float(np.mean(completion)),
        "distance_km": float(sum(max(t.progress_m[-1], 0.0) for t in traces) / 1000.0),
        "steer_smoothness": smooth,
        "episodes_count": len(traces),
        "elapsed_s": float(elapsed),
    }
