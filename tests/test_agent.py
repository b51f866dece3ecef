"""The agent core in-process (no ROS): every per-frame rule and failure case."""

from __future__ import annotations

import numpy as np
import pytest

from steering_agent.agent import BRAKE, DRIVE, FULL_BRAKE, RESENT, DrivingAgent
from steering_agent.policy.control import Control

IMG = np.zeros((66, 200, 3), np.uint8)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class CountingPolicy:
    """Steers 0.1 more each step; raises or goes non-finite on request."""

    def __init__(self) -> None:
        self.steps = 0
        self.resets = 0
        self.raise_next: Exception | None = None
        self.last_output_finite = True
        self.nonfinite = False

    def step(self, image, stamp_s, speed_mps=None) -> Control:
        if self.raise_next is not None:
            raise self.raise_next
        self.steps += 1
        self.last_output_finite = not self.nonfinite
        if self.nonfinite:
            return FULL_BRAKE
        return Control(0.1 * self.steps, 0.5, 0.0)

    def reset(self) -> None:
        self.resets += 1


def _agent(**kw):
    clock, policy = FakeClock(), CountingPolicy()
    agent = DrivingAgent(policy, watchdog_timeout_s=0.5, max_failures=3, clock=clock, **kw)
    return agent, policy, clock


def _bad():
    raise ValueError("unsupported encoding 'yuv422'")


def test_each_frame_steps_once_and_a_resent_frame_gets_the_same_answer():
    agent, policy, _ = _agent()
    a = agent.on_frame((0, 1), 0.05, lambda: IMG, 5.0).command
    assert a.kind == DRIVE and a.key == (0, 1) and a.control.steer == pytest.approx(0.1)
    again = agent.on_frame((0, 1), 0.05, lambda: IMG, 5.0).command
    assert again.kind == RESENT and again.control == a.control and policy.steps == 1
    b = agent.on_frame((0, 2), 0.10, lambda: IMG, 5.0).command
    assert b.kind == DRIVE and policy.steps == 2


def test_undecodable_frames_brake_after_max_failures_and_never_resume_on_a_bad_frame():
    agent, policy, _ = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    results = [agent.on_frame((0, 2 + i), 0.1 + i, _bad) for i in range(5)]
    assert [r.command for r in results[:2]] == [None, None]  # skipped, logged
    assert all("yuv422" in r.error for r in results)
    assert results[2].command.kind == BRAKE and results[2].command.control == FULL_BRAKE
    assert "3 unusable frames" in results[2].event and policy.resets == 1
    assert all(r.command.kind == BRAKE for r in results[3:])  # still braking
    assert agent.on_tick().command.kind == BRAKE  # the watchdog keeps braking too
    good = agent.on_frame((0, 9), 1.0, lambda: IMG)
    assert good.command.kind == DRIVE and "driving again" in good.event
    assert agent.on_tick().command is None


@pytest.mark.parametrize(
    "error", [RuntimeError("backend"), KeyError("x"), TypeError("bad"), ZeroDivisionError()]
)
def test_any_policy_exception_is_a_failed_frame_not_a_crash(error):
    agent, policy, _ = _agent()
    policy.raise_next = error
    results = [agent.on_frame((0, i), 0.05 * i, lambda: IMG) for i in range(3)]
    assert results[0].command is None and type(error).__name__ in results[0].error
    assert results[2].command.kind == BRAKE


def test_nonfinite_network_output_is_a_failure_that_brakes():
    agent, policy, _ = _agent()
    policy.nonfinite = True
    results = [agent.on_frame((0, i), 0.05 * i, lambda: IMG) for i in range(3)]
    assert "not finite" in results[0].error and results[0].command is None
    assert results[2].command.kind == BRAKE


def test_no_policy_brakes_on_every_frame_saying_why():
    agent = DrivingAgent(None, 0.5, 1, clock=FakeClock(), policy_error="bad checkpoint X")
    r = agent.on_frame((0, 1), 0.05, lambda: IMG)
    assert r.command.kind == BRAKE and "bad checkpoint X" in r.error


def test_watchdog_on_the_last_good_command_not_on_arrivals():
    agent, policy, clock = _agent()
    assert agent.on_tick().command is None  # nothing seen yet: not armed
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    clock.t += 0.4
    assert agent.on_tick().command is None
    agent.on_frame((0, 2), 0.10, _bad)  # a frame arrives but gives no command
    clock.t += 0.11  # 0.51 s after the last good command
    tick = agent.on_tick()
    assert tick.command.kind == BRAKE and "no driving command" in tick.event
    assert policy.resets == 1 and agent.stats.counts["watchdog_events"] == 1
    clock.t += 5.0
    assert agent.on_tick().command.kind == BRAKE and tick.event  # brakes on every tick
    assert agent.on_tick().event is None  # logged once
    assert agent.on_frame((0, 3), 0.15, _bad).command.kind == BRAKE  # a bad frame: brake on
    assert agent.on_frame((0, 4), 0.20, lambda: IMG).command.kind == DRIVE


def test_watchdog_armed_by_the_first_frame_when_none_was_ever_good():
    agent = DrivingAgent(CountingPolicy(), 0.5, 1000, clock=(clock := FakeClock()))
    agent.on_frame((0, 1), 0.05, _bad)
    clock.t += 0.6
    assert agent.on_tick().command.kind == BRAKE


def test_reset_forgets_the_state_and_the_resent_answer():
    agent, policy, _ = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    agent.reset()
    assert policy.resets == 1
    assert agent.on_frame((0, 1), 0.05, lambda: IMG).command.kind == DRIVE  # stepped again


def test_stats_count_and_time_frames():
    agent, _, _ = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    agent.stats.add(agent.last_decode_s, agent.last_policy_s, 1e-4)
    agent.on_frame((0, 2), 0.1, _bad)
    s = agent.stats.summary()
    assert s["frames"] == 1 and s["skipped_frames"] == 1
    assert set(s["total_ms"]) == {"median", "p90", "p99", "max"}


@pytest.mark.parametrize("kw", [{"watchdog_timeout_s": 0}, {"max_failures": 0}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        DrivingAgent(CountingPolicy(), **{"watchdog_timeout_s": 0.5, "max_failures": 3, **kw})


def test_with_the_real_policy_nan_weights_brake(tmp_path):
    import torch

    from steering_agent.policy.model import ModelConfig, SteeringNet
    from steering_agent.policy.policy import SteeringPolicy
    from steering_agent.policy.preprocess import PreprocessConfig

    net = SteeringNet(ModelConfig(arch="cnn_lstm")).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(float("nan"))
    policy = SteeringPolicy(net, PreprocessConfig(), device="cpu", backend="torch")
    agent = DrivingAgent(policy, 0.5, 2, clock=FakeClock())
    results = [agent.on_frame((0, i), 0.05 * i, lambda: IMG, 5.0) for i in range(2)]
    assert results[0].command is None and results[1].command.kind == BRAKE


# -- manual override -----------------------------------------------------------------------


def test_override_publishes_nothing_but_keeps_stepping_and_release_resumes():
    agent, policy, clock = _agent()
    assert agent.on_frame((0, 1), 0.05, lambda: IMG).command.kind == DRIVE
    assert "publishing nothing" in agent.set_override(True)
    assert agent.set_override(True) is None  # no change, no log line
    results = [agent.on_frame((0, 2 + i), 0.1 + 0.05 * i, lambda: IMG) for i in range(3)]
    assert [r.command for r in results] == [None, None, None]
    assert policy.steps == 4  # every frame stepped: the state follows the road
    assert agent.on_frame((0, 4), 0.2, lambda: IMG).command is None  # re-sent: nothing
    clock.t += 10.0  # far past the watchdog timeout: still no brake
    assert agent.on_tick().command is None and agent.braking is None
    assert "released" in agent.set_override(False)
    resumed = agent.on_frame((0, 5), 0.25, lambda: IMG).command
    assert resumed.kind == DRIVE
    assert resumed.control.steer == pytest.approx(0.5)  # the state carried on, no reset
    assert policy.resets == 0


def test_override_holds_back_failure_brakes_and_the_count_carries_on():
    agent, _, _ = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    agent.set_override(True)
    results = [agent.on_frame((0, 2 + i), 0.1 + i, _bad) for i in range(4)]
    assert all(r.command is None and "yuv422" in r.error for r in results)
    assert agent.braking is None and agent.stats.counts["failure_brakes"] == 0
    agent.set_override(False)
    # 4 unusable frames in a row already: the next one brakes at once
    assert agent.on_frame((0, 9), 5.0, _bad).command.kind == BRAKE


def test_release_re_arms_the_watchdog_from_the_release():
    agent, _, clock = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    agent.set_override(True)
    clock.t += 5.0  # no frames while the human drives
    assert agent.on_tick().command is None
    agent.set_override(False)
    clock.t += 0.4
    assert agent.on_tick().command is None  # 0.4 s after the release: not yet
    clock.t += 0.2
    tick = agent.on_tick()
    assert tick.command.kind == BRAKE and "no driving command" in tick.event


def test_release_arms_the_watchdog_also_before_any_frame():
    agent, _, clock = _agent()
    agent.set_override(True)
    agent.set_override(False)
    clock.t += 0.6
    assert agent.on_tick().command.kind == BRAKE


def test_override_while_braking_holds_the_brakes_back_and_a_good_frame_ends_braking():
    agent, _, clock = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    clock.t += 1.0
    assert agent.on_tick().command.kind == BRAKE
    agent.set_override(True)
    assert agent.on_tick().command is None  # the human drives: no brakes published
    r = agent.on_frame((0, 2), 1.1, lambda: IMG)
    assert r.command is None and "driving again" in r.event and agent.braking is None
    agent.set_override(False)
    assert agent.on_tick().command is None


def test_watchdog_timeout_changes_while_running():
    agent, _, clock = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    agent.set_watchdog_timeout(2.0)
    clock.t += 1.0
    assert agent.on_tick().command is None
    clock.t += 1.1
    assert agent.on_tick().command.kind == BRAKE
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="watchdog_timeout_s"):
            agent.set_watchdog_timeout(bad)
    assert agent.watchdog_timeout_s == 2.0


# -- the health report (/diagnostics content) -------------------------------------------------


class _Calibration:
    def describe(self) -> str:
        return "camera 800x600 -> canonical 200x66"


def _monitor():
    from steering_agent.ros.diagnostics import HealthMonitor

    agent, policy, clock = _agent()
    return HealthMonitor(agent, clock=clock), agent, policy, clock


def test_health_before_frames_warns_and_lists_every_key():
    from steering_agent.ros.diagnostics import WARN, HealthMonitor

    health, _, _, clock = _monitor()
    clock.t += 1.0
    h = health.report()
    assert h.level == WARN and h.message == "no frames yet"
    assert [k for k, _ in h.values] == list(HealthMonitor.KEYS)
    assert h.value("frame rate (Hz)") == "0.0" and h.value("model time p50 (ms)") == "n/a"
    assert h.value("watchdog") == "not armed (no frames yet)"
    assert h.value("manual override") == "inactive"
    assert h.value("calibration") == "canonical"
    assert h.value("frames superseded").startswith("unknown")


def test_health_counts_rate_drop_and_model_time_over_the_period():
    from steering_agent.ros.diagnostics import OK, WARN

    health, agent, policy, clock = _monitor()
    policy.calibration = _Calibration()
    for i in range(10):  # 10 frames in 1 s, sequence numbers 1..10
        health.frame_received(i + 1)
        agent.on_frame((0, i), 0.1 * i, lambda: IMG)
    clock.t += 1.0
    h = health.report()
    assert h.level == OK and h.message == "driving"
    assert h.value("frame rate (Hz)") == "10.0" and h.value("frame drop (%)") == "0.0"
    assert float(h.value("model time p99 (ms)")) >= float(h.value("model time p50 (ms)")) >= 0
    assert h.value("calibration") == "camera 800x600 -> canonical 200x66"
    assert h.value("watchdog") == "driving" and h.value("frames superseded") == "0"
    # next period: sequence numbers 12, 14, ..., 20 (5 received, 5 superseded), one bad
    for k, seq in enumerate(range(12, 21, 2)):
        health.frame_received(seq)
        agent.on_frame((1, k), 2.0 + 0.1 * k, _bad if k == 0 else (lambda: IMG))
    clock.t += 0.5
    h = health.report()
    assert h.value("frame rate (Hz)") == "10.0"
    assert h.value("frame drop (%)") == "60.0"  # (5 superseded + 1 skipped) / 10 published
    assert h.level == WARN and "60% of frames dropped" in h.message
    assert h.value("frames superseded") == "5" and h.value("frames skipped") == "1"
    clock.t += 1.0
    h = health.report()  # an empty period: no frames, nothing dropped
    assert h.value("frame rate (Hz)") == "0.0" and h.value("model time p50 (ms)") == "n/a"


def test_health_sequence_numbers_per_publisher_and_a_restart_is_no_drop():
    health, _, _, _ = _monitor()
    for seq, pub in [(100, "a"), (5, "b"), (101, "a"), (6, "b"), (1, "a"), (2, "a")]:
        health.frame_received(seq, pub)
    assert health.superseded == 0 and health.received == 6


def test_health_warns_while_braking_and_under_override_says_so():
    from steering_agent.ros.diagnostics import OK, WARN

    health, agent, _, clock = _monitor()
    health.frame_received()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    clock.t += 1.0
    agent.on_tick()  # watchdog: braking
    h = health.report()
    assert h.level == WARN and h.message == "braking: no driving command for 0.5 s"
    assert h.value("watchdog") == "braking: watchdog"
    for i in range(3):
        health.frame_received()
        agent.on_frame((0, 2 + i), 1.0 + i, _bad)
    agent.on_frame((0, 9), 5.0, lambda: IMG)  # driving again
    for i in range(3):
        agent.on_frame((0, 10 + i), 6.0 + i, _bad)
    h = health.report()
    assert h.level == WARN and "3 unusable frames in a row" in h.message
    assert h.value("watchdog") == "braking: failures"
    agent.on_frame((0, 20), 9.0, lambda: IMG)
    agent.set_override(True)
    h = health.report()
    assert h.level == OK and h.message == "manual override: publishing nothing"
    assert h.value("manual override") == "active (publishing nothing)"
    assert h.value("watchdog") == "paused (manual override)"


def test_health_without_a_policy_is_an_error():
    from steering_agent.ros.diagnostics import ERROR, HealthMonitor

    agent = DrivingAgent(None, 0.5, 1, clock=FakeClock(), policy_error="bad checkpoint X")
    h = HealthMonitor(agent, clock=agent.clock).report()
    assert h.level == ERROR and "bad checkpoint X" in h.message
    assert h.value("calibration") == "none (no policy)"
    assert h.value("target speed (m/s)") == "n/a"


def test_restart_ends_braking_forgets_the_answer_and_disarms_the_watchdog():
    agent, policy, clock = _agent()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    clock.t += 1.0
    assert agent.on_tick().command.kind == BRAKE and agent.braking == "watchdog"
    resets = policy.resets
    agent.restart()  # a lifecycle activate
    assert agent.braking is None and policy.resets == resets + 1
    clock.t += 10.0
    assert agent.on_tick().command is None  # not armed until a frame comes
    again = agent.on_frame((0, 1), 0.05, lambda: IMG).command
    assert again.kind == DRIVE  # the same stamp is no re-sent frame after a restart
    clock.t += 0.6
    assert agent.on_tick().command.kind == BRAKE  # armed by that frame


def test_health_of_an_inactive_node_warns_and_says_its_state():
    from steering_agent.ros.diagnostics import OK, WARN, HealthMonitor

    agent, _, clock = _agent()
    state = ["inactive"]
    health = HealthMonitor(agent, clock=clock, state=lambda: state[0])
    health.frame_received()
    agent.on_frame((0, 1), 0.05, lambda: IMG)
    h = health.report()
    assert h.level == WARN and h.message.startswith("inactive (lifecycle)")
    assert h.value("node state") == "inactive"
    state[0] = "active"
    health.frame_received()
    agent.on_frame((0, 2), 0.10, lambda: IMG)
    h = health.report()
    assert h.level == OK and h.value("node state") == "active"
