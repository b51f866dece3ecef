"""The agent core: the per-frame rules of the driving agent, without ROS.

`DrivingAgent` takes (frame, stamp, speed) and says what to publish; the ROS node only
converts messages and calls it, so every rule below is tested in-process:

- a frame is decoded and stepped through the policy (CNN per frame, LSTM across frames);
  its answer is a `drive` command stamped with the frame's stamp;
- a re-sent frame (the same stamp again, as a synchronous simulator re-sends one) gets
  the same answer again without stepping the LSTM twice;
- a frame that cannot be used (undecodable, refused, the policy raising, a non-finite
  network output) gives no driving command; after `max_failures` such frames in a row the
  agent brakes at once;
- the watchdog runs on wall time: when no driving command has been given for
  `watchdog_timeout_s` (counted from the first frame until there is one) the agent
  brakes fully, resets the recurrent state, and keeps braking on every tick until a
  frame again gives a driving command. Only a good command ends the braking.
- manual override (`set_override(True)`, a safety driver or a teleoperator has the car):
  the agent says nothing to publish, neither driving commands nor brakes, but keeps
  stepping the network on every frame. Its recurrent state then follows the road the car
  is really on, so on release (`set_override(False)`) it drives from a state that saw
  the road, not from a cold start or from a state frozen where the human took over; the
  watchdog is re-armed at the release (counted from it, as from a first frame).

`HealthMonitor` turns the agent's counters into the status the node publishes on
/diagnostics once a second; the frame path only increments counters, the report
computes the rates and percentiles.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from steering_agent.common.stats import percentiles_ms
from steering_agent.policy.control import SAFE_ACTION, Control

DRIVE, RESENT, BRAKE = "drive", "resent", "brake"
RECENT_STEPS = 4096  # policy step times kept for the health report (minutes at 20 Hz)
FULL_BRAKE = Control(float(SAFE_ACTION[0]), float(SAFE_ACTION[1]), float(SAFE_ACTION[2]))


class NonFiniteOutput(RuntimeError):
    """The network answered a frame with NaN or infinity."""


@dataclass(frozen=True)
class Command:
    """What to publish. kind: `drive` (the policy's answer to the frame `key`), `resent`
    (that answer again for a re-sent frame) or `brake` (full brake: failures or watchdog)."""

    control: Control
    kind: str
    key: Any = None


@dataclass(frozen=True)
class FrameResult:
    """The outcome of one frame: the command to publish (None: publish nothing), why the
    frame was not used (`error`), and a change of state worth one log line (`event`)."""

    command: Command | None
    error: str | None = None
    event: str | None = None


class FrameStats:
    """Per-frame time split into decode, policy and publish, and the agent's counters."""

    def __init__(self) -> None:
        self._rows: list[tuple[float, float, float]] = []
        self.counts = {"skipped_frames": 0, "resent_frames": 0, "watchdog_events": 0,
                       "failure_brakes": 0, "resets": 0}  # fmt: skip
        # Every policy step (also under manual override, when nothing is published) and
        # the time of the latest ones, for the health report.
        self.stepped = 0
        self.recent_policy_s: deque[float] = deque(maxlen=RECENT_STEPS)

    def add_step(self, policy_s: float) -> None:
        self.stepped += 1
        self.recent_policy_s.append(policy_s)

    def recent_steps_s(self, since: int) -> list[float]:
        """The policy step times of the steps after the first `since` ones (as many of
        them as are kept)."""
        n = min(self.stepped - since, len(self.recent_policy_s))
        if n <= 0:
            return []
        return list(self.recent_policy_s)[-n:]

    def add(self, decode_s: float, policy_s: float, publish_s: float) -> None:
        self._rows.append((decode_s, policy_s, publish_s))

    def summary(self) -> dict:
        """Counts and median/p90/p99/max in ms (total = decode + policy + publish)."""
        out = {"frames": len(self._rows), **self.counts}
        if self._rows:
            parts = np.asarray(self._rows)
            for i, name in enumerate(("decode", "policy", "publish")):
                out[f"{name}_ms"] = percentiles_ms(parts[:, i])
            out["total_ms"] = percentiles_ms(parts.sum(axis=1))
        return out


class DrivingAgent:
    """The per-frame rules (module doc) around a policy with `step(image, stamp_s,
    speed_mps) -> Control` and `reset()`.

    Args:
        policy: the policy, or None when it could not be built (`policy_error` says why):
            then every frame fails and the agent brakes.
        watchdog_timeout_s: brake when no driving command for this long (wall time).
        max_failures: brake at once after this many unusable frames in a row.
        clock: monotonic seconds (tests pass a fake one).

    `set_override(True)` holds every command back while the network keeps stepping
    (module doc); `set_watchdog_timeout` changes the timeout while running.
    """

    def __init__(
        self,
        policy,
        watchdog_timeout_s: float = 0.5,
        max_failures: int = 3,
        clock: Callable[[], float] = time.monotonic,
        policy_error: str = "",
    ) -> None:
        _check_timeout(watchdog_timeout_s)
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        self.policy = policy
        self.policy_error = policy_error or "no policy loaded"
        self.watchdog_timeout_s = float(watchdog_timeout_s)
        self.max_failures = int(max_failures)
        self.clock = clock
        self.stats = FrameStats()
        self.braking: str | None = None  # why the agent brakes: "watchdog" or "failures"
        self.failures_in_a_row = 0
        self.last_decode_s = self.last_policy_s = 0.0
        self._first_frame_t: float | None = None
        self._last_good_t: float | None = None
        self._last: Command | None = None  # the last driving command (for re-sent frames)
        self.overridden = False  # a human has the car: publish nothing, keep stepping
        self._released_t: float | None = None  # the last release of the override

    def set_override(self, active: bool) -> str | None:
        """Manual override on (True) or off (False); a log line when it changes.

        While on, `on_frame` still steps the policy (the LSTM state stays fresh: on release
        the agent drives from a state that saw the road, no cold start) but returns no
        command, and `on_tick` returns none (no watchdog brakes either). The release
        re-arms the watchdog: it counts `watchdog_timeout_s` from the release."""
        active = bool(active)
        if active == self.overridden:
            return None
        self.overridden = active
        if active:
            return "manual override: publishing nothing (the network keeps stepping)"
        self._released_t = self.clock()
        return "manual override released: driving again (watchdog re-armed)"

    def set_watchdog_timeout(self, seconds: float) -> None:
        """A new watchdog timeout (s), from the next tick."""
        _check_timeout(seconds)
        self.watchdog_timeout_s = float(seconds)

    def restart(self) -> None:
        """Start afresh, as a new agent with the same policy and settings (a lifecycle
        activate): the recurrent state and the last answer forgotten, not braking, the
        watchdog unarmed until the next frame; the override and the counters are kept."""
        if self.policy is not None:
            self.policy.reset()
        self._last = None
        self.braking = None
        self.failures_in_a_row = 0
        self._first_frame_t = self._last_good_t = self._released_t = None

    def reset(self) -> None:
        """Forget the recurrent state (an episode restarts; the reset service)."""
        if self.policy is not None:
            self.policy.reset()
        self._last = None
        self.stats.counts["resets"] += 1

    def on_frame(
        self, key: Any, stamp_s: float, decode: Callable[[], np.ndarray], speed_mps=None
    ) -> FrameResult:
        """One camera frame: `key` identifies it (the header stamp), `decode()` gives the
        uint8 RGB image (and may raise), `speed_mps` is the latest speed or None."""
        now = self.clock()
        if self._first_frame_t is None:
            self._first_frame_t = now
        last = self._last
        if key is not None and last is not None and key == last.key:
            self.stats.counts["resent_frames"] += 1
            if self.overridden:
                return FrameResult(None)
            return FrameResult(Command(last.control, RESENT, key))
        t0 = time.perf_counter()
        try:
            if self.policy is None:
                raise RuntimeError(self.policy_error)
            image = decode()
            t1 = time.perf_counter()
            control = self.policy.step(image, stamp_s, speed_mps)
            if not getattr(self.policy, "last_output_finite", True):
                raise NonFiniteOutput(
                    "the network's output is not finite (NaN or inf in the weights or input)"
                )
        except Exception as e:  # never let one frame stop the car: brake instead
            return self._failed(key, f"frame skipped: {type(e).__name__}: {e}")
        t2 = time.perf_counter()
        self.last_decode_s, self.last_policy_s = t1 - t0, t2 - t1
        self.stats.add_step(t2 - t1)
        self.failures_in_a_row = 0
        self._last_good_t = now
        event = None
        if self.braking:
            event = f"driving again after braking ({self.braking})"
            self.braking = None
        self._last = Command(control, DRIVE, key)
        if self.overridden:  # stepped, state kept fresh; the human drives
            return FrameResult(None, event=event)
        return FrameResult(self._last, event=event)

    def _failed(self, key: Any, text: str) -> FrameResult:
        self.stats.counts["skipped_frames"] += 1
        self.failures_in_a_row += 1
        if self.overridden:  # no brake while a human drives; the count carries on
            return FrameResult(None, error=text)
        if self.failures_in_a_row < self.max_failures and not self.braking:
            return FrameResult(None, error=text)
        event = None
        if self.braking is None:
            self.stats.counts["failure_brakes"] += 1
            event = self._start_braking(
                "failures", f"{self.failures_in_a_row} unusable frames in a row: braking"
            )
        return FrameResult(Command(FULL_BRAKE, BRAKE, key), error=text, event=event)

    def _start_braking(self, why: str, text: str) -> str:
        self.braking = why
        if self.policy is not None:
            self.policy.reset()
        self._last = None
        return f"{text}, recurrent state reset"

    def on_tick(self) -> FrameResult:
        """The watchdog, called periodically on wall time: a brake command when due."""
        if self.overridden:
            return FrameResult(None)
        if self.braking:
            return FrameResult(Command(FULL_BRAKE, BRAKE))
        armed_at = self._last_good_t if self._last_good_t is not None else self._first_frame_t
        if self._released_t is not None and (armed_at is None or armed_at < self._released_t):
            armed_at = self._released_t
        if armed_at is None or self.clock() - armed_at < self.watchdog_timeout_s:
            return FrameResult(None)
        self.stats.counts["watchdog_events"] += 1
        event = self._start_braking(
            "watchdog", f"no driving command for {self.watchdog_timeout_s:g} s: braking"
        )
        return FrameResult(Command(FULL_BRAKE, BRAKE), event=event)


def _check_timeout(seconds: float) -> None:
    if not seconds > 0:  # also NaN
        raise ValueError(f"watchdog_timeout_s must be > 0, got {seconds}")
