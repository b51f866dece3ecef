"""The agent's health for `/diagnostics`, computed in plain Python (no ROS): the node
publishes `HealthMonitor.report()` once a second as a diagnostic_msgs/DiagnosticStatus
(steering_agent.ros.agent_node)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steering_agent.agent import DrivingAgent

OK, WARN, ERROR = 0, 1, 2  # the levels of diagnostic_msgs/DiagnosticStatus
DROP_WARN_PCT = 20.0  # a period with more frames dropped than this is a warning
NOT_AVAILABLE = "n/a"


@dataclass(frozen=True)
class Health:
    """One status: `level` (OK, WARN, ERROR), a one-line `message`, and (key, value)
    strings in a fixed order (the DiagnosticStatus's KeyValues)."""

    level: int
    message: str
    values: tuple[tuple[str, str], ...]

    def value(self, key: str) -> str:
        return dict(self.values)[key]


class HealthMonitor:
    """The agent's health over each report period (the node reports once a second).

    The frame path calls `frame_received` (a counter, and the gap in the publisher's
    sequence numbers where the middleware gives them); `report` computes, for the
    period since the last report: the frame rate (frames that reached the node per
    second), the frame drop (frames the agent skipped as unusable plus frames
    superseded: published but replaced by a newer one in the depth-1 queue, or lost on
    the way, before the node took them; of all frames published), and the policy's
    step time p50/p99 (the network and its preprocessing; every step, also under
    manual override).

    Level: ERROR without a policy; WARN while the node is not active (a managed node
    configured but inactive: `state()` is the node's lifecycle state), while braking
    (watchdog or failures), before the first frame, or when more than `drop_warn_pct` %
    of the period's frames were dropped; OK otherwise (also under manual override,
    which the message says).
    """

    KEYS = (
        "frame rate (Hz)",
        "frame drop (%)",
        "frames received",
        "frames superseded",
        "frames skipped",
        "model time p50 (ms)",
        "model time p99 (ms)",
        "watchdog",
        "watchdog timeout (s)",
        "manual override",
        "target speed (m/s)",
        "calibration",
        "node state",
    )

    def __init__(
        self,
        agent: DrivingAgent,
        clock: Callable[[], float] = time.monotonic,
        drop_warn_pct: float = DROP_WARN_PCT,
        state: Callable[[], str] = lambda: "active",
    ) -> None:
        self.agent = agent
        self.state = state  # the node's lifecycle state: active, inactive, ...
        self.clock = clock
        self.drop_warn_pct = float(drop_warn_pct)
        self.received = 0  # frames that reached the node, since the start
        self.superseded = 0  # frames published that never reached it (sequence gaps)
        self.sequence_known = False  # the middleware gives publication sequence numbers
        self._last_seq: dict = {}  # publisher -> its last sequence number seen
        self._mark = self._counters()

    def _counters(self) -> tuple:
        s = self.agent.stats
        return (self.clock(), self.received, self.superseded,
                s.counts["skipped_frames"], s.stepped)  # fmt: skip

    def frame_received(self, sequence: int | None = None, publisher=None) -> None:
        """One frame reached the node; `sequence` is its publication sequence number
        (None: not known) from the publisher `publisher` (any hashable; None: one)."""
        self.received += 1
        if sequence is None:
            return
        self.sequence_known = True
        seen = self._last_seq
        last = seen.get(publisher)
        if last is None and len(seen) >= 64:  # publishers come and go: keep it small
            seen.clear()
        seen[publisher] = sequence
        if last is not None and sequence > last + 1:  # lower: the publisher restarted
            self.superseded += sequence - last - 1

    def report(self) -> Health:
        """The status over the period since the last report, which starts a new one."""
        now = self._counters()
        t0, received0, superseded0, skipped0, stepped0 = self._mark
        self._mark = now
        t, received, superseded, skipped, _ = now
        received, superseded = received - received0, superseded - superseded0
        skipped = skipped - skipped0
        published = received + superseded
        drop_pct = 100.0 * (superseded + skipped) / published if published else 0.0
        elapsed = t - t0
        rate = received / elapsed if elapsed > 0 else 0.0
        times_ms = np.asarray(self.agent.stats.recent_steps_s(stepped0)) * 1e3
        p50 = p99 = NOT_AVAILABLE
        if times_ms.size:
            q50, q99 = np.percentile(times_ms, [50, 99])
            p50, p99 = f"{q50:.2f}", f"{q99:.2f}"
        level, message = self._level(drop_pct, published)
        a = self.agent
        policy = a.policy
        calib = getattr(policy, "calibration", None)
        controller = getattr(policy, "speed_controller", None)
        speed = getattr(controller, "target_speed_mps", None)
        values = (
            f"{rate:.1f}",
            f"{drop_pct:.1f}",
            str(self.received),
            str(self.superseded) if self.sequence_known else "unknown (no sequence numbers)",
            str(a.stats.counts["skipped_frames"]),
            p50,
            p99,
            self._watchdog_state(),
            f"{a.watchdog_timeout_s:g}",
            "active (publishing nothing)" if a.overridden else "inactive",
            NOT_AVAILABLE if speed is None else f"{speed:g}",
            "none (no policy)"
            if policy is None
            else (calib.describe() if calib is not None else "canonical"),
            self.state(),
        )
        return Health(level, message, tuple(zip(self.KEYS, values, strict=True)))

    def _watchdog_state(self) -> str:
        a = self.agent
        if a.braking:
            return f"braking: {a.braking}"
        if a.overridden:
            return "paused (manual override)"
        if self.received == 0:
            return "not armed (no frames yet)"
        return "driving"

    def _level(self, drop_pct: float, published: int) -> tuple[int, str]:
        a = self.agent
        state = self.state()
        if a.policy is None:
            level, message = ERROR, f"no policy: {a.policy_error}"
        elif state != "active":
            level, message = WARN, f"{state} (lifecycle): publishing nothing"
        elif a.braking == "watchdog":
            level, message = WARN, f"braking: no driving command for {a.watchdog_timeout_s:g} s"
        elif a.braking:
            level, message = WARN, f"braking: {a.failures_in_a_row} unusable frames in a row"
        elif self.received == 0:
            level, message = WARN, "no frames yet"
        elif published and drop_pct > self.drop_warn_pct:
            level, message = WARN, f"{drop_pct:.0f}% of frames dropped"
        else:
            level, message = OK, "driving"
        if a.overridden:
            override = "manual override: publishing nothing"
            message = override if message == "driving" else f"{message}; {override}"
        return level, message
