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
