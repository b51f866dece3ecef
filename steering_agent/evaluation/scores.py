"""The benchmark's scores (docs/benchmarks.md): the driving score, infractions, comfort and
the 95% confidence intervals over episodes. One definition, used by every consumer
through `metrics.summarize_episode` and `metrics.aggregate`.

- driving score (CARLA Leaderboard form): ``route completion % x product over
  infractions of penalty ** count``; the coefficients are `PENALTIES` (written into every
  JSON under `penalties`). Route completion here counts only the progress made on the
  road (the Leaderboard does not count off-road driving towards completion).
- events are rising edges of a per-step flag (a departure that lasts ten steps is one
  departure): lane departures (a wheel over an ego lane line), off-road, collisions,
  interventions (counted by the episode runner).
- comfort: yaw rate from the driven heading, ``yaw[t] - yaw[t-1]`` over dt, smoothed with a
  centred moving average of `SMOOTH_STEPS` steps (0.25 s); lateral acceleration
  ``a_y = v * yaw_rate`` (the driven path's curvature times v squared); lateral jerk its
  derivative, smoothed the same way. Exceedances of ISO 11270's 3 m/s^2 and 5 m/s^3 are
  rising edges of ``|a_y| > 3`` and ``|jerk| > 5``, per km. A re-centring teleports the
  car: the heading change across it is not driven and is replaced by the last driven one.
- CI95: the half-width of the two-sided 95% Student t interval of the mean over
  episodes, ``t(0.975, n-1) * s / sqrt(n)`` (s: sample standard deviation); None for
  fewer than two episodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Leaderboard 2.0 coefficients where the Leaderboard has the infraction; ours otherwise
# (docs/benchmarks.md justifies each).
PENALTIES = {
    "collision_pedestrian": 0.50,  # Leaderboard 2.0 (no pedestrians here: unused)
    "collision_vehicle": 0.60,  # Leaderboard 2.0
    "collision_static": 0.65,  # Leaderboard 2.0 "layout" (static objects)
    "intervention": 0.70,  # as the Leaderboard's scenario timeout / min speed (0.70)
    "lane_departure": 0.90,  # milder than the mildest Leaderboard infraction (stop, 0.80)
}
OFF_ROAD_RULE = "progress made while off the road does not count towards route completion"
LAT_ACCEL_LIMIT = 3.0  # m/s^2, ISO 11270 (LKAS)
LAT_JERK_LIMIT = 5.0  # m/s^3, ISO 11270
SMOOTH_STEPS = 5  # centred moving average (0.25 s at 20 Hz)
MIN_KM = 1e-3  # rates per km divide by at least 1 m


def rising_edges(flags: np.ndarray) -> int:
    """Number of False -> True transitions (a flag true at the first step counts)."""
    f = np.asarray(flags, dtype=bool)
    if f.size == 0:
        return 0
    return int(f[0]) + int(np.count_nonzero(f[1:] & ~f[:-1]))


def driving_score(completion_pct: float, counts: dict[str, int]) -> float:
    """Route completion (%) times the product of ``PENALTIES[k] ** counts[k]``."""
    p = 1.0
    for key, n in counts.items():
        p *= PENALTIES[key] ** int(n)
    return float(completion_pct * p)


def on_road_completion_pct(
    progress_m: np.ndarray, off_road: np.ndarray, route_length_m: float
) -> float:
    """Route completion (%, capped at 100) counting only progress made on the road."""
    prog = np.asarray(progress_m, dtype=np.float64)
    if prog.size == 0:
        return 0.0
    gained = np.diff(prog, prepend=0.0)
    gained[np.asarray(off_road, dtype=bool)] = 0.0
    driven = max(float(gained.sum()), 0.0)
    return float(100.0 * min(driven / route_length_m, 1.0))


def _smooth(x: np.ndarray, steps: int = SMOOTH_STEPS) -> np.ndarray:
    if x.size < steps or steps < 2:
        return x
    kernel = np.full(steps, 1.0 / steps)
    pad = steps // 2
    padded = np.pad(x, (pad, steps - 1 - pad), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def comfort(
    yaw_rad: np.ndarray, speed_mps: np.ndarray, dt_s: float, teleports: Sequence[int] = ()
) -> dict:
    """Yaw rate, lateral acceleration and jerk of a driven heading trace (module doc).

    Args:
        yaw_rad: heading after each step; speed_mps: speed after each step.
        teleports: steps after which the car was moved (re-centred): the heading change
            from such a step to the next is not driven.
    Returns:
        {"yaw_rate_mean_abs", "yaw_rate_max_abs" (rad/s), "lat_accel_max_abs" (m/s^2),
        "lat_jerk_max_abs" (m/s^3), "lat_accel_exceed", "lat_jerk_exceed" (counts)}.
    """
    yaw = np.asarray(yaw_rad, dtype=np.float64)
    out = dict.fromkeys(("yaw_rate_mean_abs", "yaw_rate_max_abs", "lat_accel_max_abs",
                         "lat_jerk_max_abs"), 0.0)  # fmt: skip
    out.update(lat_accel_exceed=0, lat_jerk_exceed=0)
    if yaw.size < 3 or not np.all(np.isfinite(yaw)):
        return out
    d = np.remainder(np.diff(yaw) + math.pi, 2.0 * math.pi) - math.pi
    valid = np.ones(d.size, dtype=bool)
    tel = np.asarray([t for t in teleports if 0 <= t < d.size], dtype=np.int64)
    valid[tel] = False
    if not valid.any():
        return out
    # forward-fill the teleports with the last driven change (the first: the next one)
    idx = np.where(valid, np.arange(d.size), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.argmax(valid))
    idx[:first] = first
    rate = _smooth(d[idx] / dt_s)
    speed = np.asarray(speed_mps, dtype=np.float64)[1:]
    a_y = speed * rate
    jerk = _smooth(np.diff(a_y) / dt_s)
    out.update(
        yaw_rate_mean_abs=float(np.abs(rate).mean()),
        yaw_rate_max_abs=float(np.abs(rate).max()),
        lat_accel_max_abs=float(np.abs(a_y).max()),
        lat_jerk_max_abs=float(np.abs(jerk).max()) if jerk.size else 0.0,
        lat_accel_exceed=rising_edges(np.abs(a_y) > LAT_ACCEL_LIMIT),
        lat_jerk_exceed=rising_edges(np.abs(jerk) > LAT_JERK_LIMIT),
    )
    return out


# two-sided 95% Student t quantiles t(0.975, df) for df 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
         2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
         2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: int) -> float:
    """t(0.975, df): a table to 30, then the Cornish-Fisher expansion about z = 1.96."""
    if df < 1:
        raise ValueError(f"t975: df must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def ci95(values: Sequence[float] | np.ndarray) -> float | None:
    """Half-width of the 95% Student t interval of the mean; None for n < 2."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    return float(t975(v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def per_km(count: float, distance_km: float) -> float:
    return float(count) / max(float(distance_km), MIN_KM)
