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


def _driven(yaw, speed, n_lateral=None, **flags):
    t = metrics.EpisodeTrace(seed=1_000_000, route_length_m=100.0, dt_s=DT)
    n = len(yaw)
    for k in range(n):
        f = {key: bool(v[k]) for key, v in flags.items()}
        t.add(0.0, 0.0, 0.0, 100.0 * (k + 1) / n, speed[k], yaw[k], **f)
    return t


def test_a_known_lateral_acceleration_profile_gives_its_exceedance_count():
    from steering_agent.evaluation import scores

    # 10 m/s; yaw rate 0.2 rad/s (a_y 2 m/s^2) with three 1 s stretches at 0.4 (4 m/s^2)
    n = 400
    rate = np.full(n, 0.2)
    for start in (50, 150, 300):
        rate[start : start + 20] = 0.4
    yaw = np.cumsum(rate) * DT
    c = scores.comfort(yaw, np.full(n, 10.0), DT)
    assert c["lat_accel_exceed"] == 3
    assert c["lat_accel_max_abs"] == pytest.approx(4.0, rel=1e-6)
    assert c["yaw_rate_max_abs"] == pytest.approx(0.4, rel=1e-6)
    # a step of 2 m/s^2 in 0.05 s, smoothed over 5 steps: 2 / 0.25 = 8 m/s^3 > 5, twice each
    assert c["lat_jerk_exceed"] == 6
    # yaw wraps at pi without a spike; a re-centring (teleport) is not driven
    wrapped = np.remainder(yaw + np.pi, 2 * np.pi) - np.pi
    assert scores.comfort(wrapped, np.full(n, 10.0), DT)["lat_accel_exceed"] == 3
    jumped = np.full(n, 0.0)
    jumped[200:] = 1.0
    assert scores.comfort(jumped, np.full(n, 10.0), DT, teleports=[199])["lat_accel_max_abs"] == 0


def test_collisions_and_departures_are_rising_edges_with_their_penalties():
    from steering_agent.evaluation import scores

    n = 200
    coll = np.zeros(n, bool)
    coll[50:55] = True  # one collision with a vehicle, five steps long
    veh = coll.copy()
    coll[120:122] = True  # one with a static object
    lane = np.zeros(n, bool)
    lane[[10, 11, 12, 90]] = True  # two departures
    t = _driven(np.zeros(n), np.full(n, 10.0), collision=coll, collision_vehicle=veh,
                lane_departure=lane)  # fmt: skip
    m = metrics.summarize_episode(t).as_dict()
    assert m["collisions"] == 2 and m["collisions_vehicle"] == 1 and m["lane_departures"] == 2
    p = scores.PENALTIES
    expected = 100.0 * p["collision_vehicle"] * p["collision_static"] * p["lane_departure"] ** 2
    assert m["driving_score"] == pytest.approx(expected)
    assert m["lane_departures_per_km"] == pytest.approx(2 / 0.1)


def test_off_road_progress_does_not_count_towards_completion():
    n = 100
    off = np.zeros(n, bool)
    off[:25] = True
    t = _driven(np.zeros(n), np.full(n, 10.0), off_road=off)
    m = metrics.summarize_episode(t).as_dict()
    assert m["off_road"] == 1 and m["route_completion_on_road_pct"] == pytest.approx(75.0)
    assert m["driving_score"] == pytest.approx(75.0)


def test_ci95_of_known_values():
    from steering_agent.evaluation import scores

    # mean 3, s = sqrt(2.5), n = 5: t(0.975, 4) = 2.776
    assert scores.ci95([1, 2, 3, 4, 5]) == pytest.approx(2.776 * np.sqrt(2.5) / np.sqrt(5))
    assert scores.ci95([7.0]) is None and scores.ci95([2.0, 2.0]) == 0.0
    assert scores.t975(1000) == pytest.approx(1.962, abs=1e-3)
    row = metrics.aggregate([_trace(np.full(100, x)) for x in (0.1, 0.2, 0.3)])
    assert row["mean_abs_lateral_m_ci95"] == pytest.approx(4.303 * 0.1 / np.sqrt(3))
    for key in metrics.CI_KEYS:
        assert key in row and key + "_ci95" in row
