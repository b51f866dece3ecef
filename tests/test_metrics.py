"""The metric definitions on hand-made trajectories with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from steering_agent.evaluation import metrics

DT = 0.05


def _trace(lateral, steer=None, progress=None, route_length_m=100.0, seed=1_000_000):
    n = len(lateral)
    steer = np.zeros(n) if steer is None else steer
    progress = np.linspace(0.0, route_length_m, n) if progress is None else progress
    t = metrics.EpisodeTrace(seed=seed, route_length_m=route_length_m, dt_s=DT)
    for lat, s, p in zip(lateral, steer, progress, strict=True):
        t.add(lat, s, 0.0, p)
        if metrics.needs_intervention(lat):
            t.mark_intervention()
    return t


def test_autonomy_pilotnet_example():
    assert metrics.autonomy_pct(2, 100.0) == pytest.approx(88.0)
    assert metrics.autonomy_pct(0, 10.0) == pytest.approx(100.0)
    assert metrics.autonomy_pct(5, 10.0) == 0.0  # clamped at 0, and it says so:
    assert metrics.autonomy_clamped(5, 10.0) and not metrics.autonomy_clamped(2, 100.0)
    with pytest.raises(ValueError, match="elapsed_s"):
        metrics.autonomy_pct(1, 0.0)


def test_intervention_threshold_is_one_metre_either_side_or_off_road():
    assert not metrics.needs_intervention(1.0)
    assert metrics.needs_intervention(1.01)
    assert metrics.needs_intervention(-1.5)
    assert metrics.needs_intervention(0.0, off_road=True)


def test_constant_offset_gives_known_lateral_error_and_full_autonomy():
    trace = _trace(np.full(2000, 0.3))  # 100 s at 0.3 m left of centre
    m = metrics.summarize_episode(trace)
    assert m.elapsed_s == pytest.approx(100.0)
    assert m.mean_abs_lateral_m == pytest.approx(0.3)
    assert m.p95_abs_lateral_m == pytest.approx(0.3)
    assert m.interventions == 0
    assert m.autonomy_pct == pytest.approx(100.0)
    assert m.route_completion_pct == pytest.approx(100.0)
    assert m.distance_km == pytest.approx(0.1)


def test_two_excursions_in_100_s_give_88_percent():
    lateral = np.full(2000, -0.2)
    lateral[[500, 1500]] = -1.2  # two steps beyond 1 m: two interventions
    m = metrics.summarize_episode(_trace(lateral))
    assert m.interventions == 2
    assert m.autonomy_pct == pytest.approx(88.0)
    assert m.mean_abs_lateral_m == pytest.approx((1998 * 0.2 + 2 * 1.2) / 2000)


def test_p95_of_a_ramp():
    lateral = np.arange(101) / 100.0  # 0.00 .. 1.00, p95 is exactly 0.95
    mean, p95 = metrics.abs_lateral_stats(-lateral)
    assert p95 == pytest.approx(0.95)
    assert mean == pytest.approx(0.5)


def test_smoothness_of_a_known_steering_signal():
    # A square wave alternating +-0.1 every step changes by 0.2 per 0.05 s: 4.0 per second.
    steer = np.where(np.arange(101) % 2 == 0, 0.1, -0.1)
    assert metrics.steer_smoothness(steer, DT) == pytest.approx(4.0)
    # A ramp of 0.01 per step: 0.2 per second; a constant: 0.
    assert metrics.steer_smoothness(np.arange(50) * 0.01, DT) == pytest.approx(0.2)
    assert metrics.steer_smoothness(np.full(10, 0.3), DT) == 0.0


def test_route_completion_is_capped_and_partial():
    assert metrics.route_completion_pct(50.0, 200.0) == pytest.approx(25.0)
    assert metrics.route_completion_pct(250.0, 200.0) == pytest.approx(100.0)
    m = metrics.summarize_episode(_trace(np.zeros(20), progress=np.linspace(0, 40, 20)))
    assert m.route_completion_pct == pytest.approx(40.0)


def test_aggregate_pools_time_and_interventions():
    a = np.zeros(2000)
    a[100] = 2.0  # one intervention in 100 s
    b = np.zeros(2000)
    b[[100, 200, 300]] = 2.0  # three in 100 s
    row = metrics.aggregate([_trace(a), _trace(b, route_length_m=200.0)])
    assert set(metrics.SUMMARY_KEYS) <= set(row)
    assert row["interventions"] == 4
    assert row["autonomy_pct"] == pytest.approx(100 * (1 - 4 * 6 / 200))
    assert row["autonomy_clamped"] is False
    assert row["distance_km"] == pytest.approx(0.3)
    assert row["route_completion_pct"] == pytest.approx(100.0)
    assert row["mean_abs_lateral_m"] == pytest.approx(8.0 / 4000)


def test_empty_inputs_are_refused_with_a_message():
    with pytest.raises(ValueError, match="no episodes"):
        metrics.aggregate([])
    with pytest.raises(ValueError, match="no steps"):
        metrics.summarize_episode(metrics.EpisodeTrace(seed=1, route_length_m=10.0, dt_s=DT))
