"""Camera faults of the `memory` suite, applied between the simulator and the policy.

A `CameraFault` is one named fault; its schedule (the steps at which it is active) is
drawn once per episode from a generator seeded by the road seed and the fault's kind, so
a seed gives the same faults to every policy, whatever the number of environments.

    black    the frame is black (a blackout: windows of `duration_s`, every `gap_s`)
    frozen   the last frame before the window is repeated (a stuck driver/decoder)
    missing  no frame arrives: the policy is not stepped; the command in effect is held,
             as the agent node holds it, until `WATCHDOG_S` (its watchdog_timeout_s)
             without a command, then full brake and a reset of the recurrent state
             (steering_agent/agent.py `DrivingAgent`), until a frame arrives again
    burst    frames lost as `missing`, in bursts: a two-state Gilbert-Elliott channel
             (good -> bad with `p_enter` per frame, bad -> good with `p_leave`; every
             frame of the bad state is lost, none of the good one)
    glare    a flash: ``2 * pixel + 200`` saturated at 255 (almost the whole frame white)
    dim      a tunnel: every pixel times `dim` for several seconds (dark, not black)
    latency  commands reach the car `latency_s` late (end-to-end delay, whole steps)
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import cv2
import numpy as np

WATCHDOG_S = 0.5  # the agent node's default watchdog_timeout_s
KINDS = ("black", "frozen", "missing", "burst", "glare", "dim", "latency")
_FAULT_STREAM = 0xFA17


@dataclass(frozen=True)
class CameraFault:
    """One named camera fault (module doc); windows last `duration_s` (uniform in the
    range) and start `gap_s` (uniform) after the previous one ended."""

    name: str
    kind: str
    duration_s: tuple[float, float] = (0.3, 1.5)
    gap_s: tuple[float, float] = (3.0, 6.0)
    dim: float = 0.25
    latency_s: float = 0.0
    p_enter: float = 0.03
    p_leave: float = 0.15

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"camera fault {self.name}: kind {self.kind!r} not in {KINDS}")

    @property
    def drops_frames(self) -> bool:
        return self.kind in ("missing", "burst")

    def delay_steps(self, dt_s: float) -> int:
        return round(self.latency_s / dt_s) if self.kind == "latency" else 0

    def describe(self) -> dict:
        d = asdict(self)
        keep = {"name", "kind"}
        if self.kind in ("black", "frozen", "missing", "glare", "dim"):
            keep |= {"duration_s", "gap_s"}
        keep |= {"dim"} if self.kind == "dim" else set()
        keep |= {"latency_s"} if self.kind == "latency" else set()
        keep |= {"p_enter", "p_leave"} if self.kind == "burst" else set()
        return {k: v for k, v in d.items() if k in keep}

    def rng(self, seed: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), _FAULT_STREAM, zlib.crc32(self.kind.encode())])

    def schedule(self, seed: int, steps: int, dt_s: float) -> np.ndarray:
        """Bool [steps]: the steps (frame k = the observation after k steps) at which the
        fault is active; deterministic per (seed, kind), and a longer schedule starts
        with the shorter one."""
        mask = np.zeros(steps, dtype=bool)
        if self.kind == "latency" or steps == 0:
            return mask
        rng = self.rng(seed)
        if self.kind == "burst":
            starts, ends = _gilbert_elliott(rng, steps, self.p_enter, self.p_leave)
        else:
            n = int(steps * dt_s / max(self.gap_s[0], 1e-3)) + 2
            u = rng.random((n, 2))  # (gap, duration) pairs: a prefix whatever n
            gaps = self.gap_s[0] + (self.gap_s[1] - self.gap_s[0]) * u[:, 0]
            durs = self.duration_s[0] + (self.duration_s[1] - self.duration_s[0]) * u[:, 1]
            start_s = np.cumsum(gaps + durs) - durs
            starts = np.rint(start_s / dt_s).astype(np.int64)
            ends = np.maximum(np.rint((start_s + durs) / dt_s).astype(np.int64), starts + 1)
        edges = np.zeros(steps + 1, dtype=np.int64)
        np.add.at(edges, np.minimum(starts, steps), 1)
        np.add.at(edges, np.minimum(ends, steps), -1)
        mask[:] = np.cumsum(edges[:steps]) > 0
        return mask


def _gilbert_elliott(rng, steps: int, p_enter: float, p_leave: float):
    """Bad-state windows [start, end) of a two-state Markov chain started good: the good
    and bad sojourns are geometric with means 1/p_enter and 1/p_leave frames."""
    starts, ends, t = [], [], 0
    while t < steps:
        n = 256  # fixed chunks: the same windows whatever `steps`
        good = rng.geometric(p_enter, n)
        bad = rng.geometric(p_leave, n)
        s = t + np.cumsum(good + bad) - bad
        starts.append(s)
        ends.append(s + bad)
        t = int(s[-1] + bad[-1])
    return np.concatenate(starts), np.concatenate(ends)


class FaultChannel:
    """One slot's camera link under `fault`: `start` per episode, `frame` per step."""

    def __init__(self, fault: CameraFault | None) -> None:
        self.fault = fault
        self.mask = np.zeros(0, dtype=bool)
        self.held = False  # the last `frame` repeated the previous one (frozen)

    def start(self, seed: int, steps: int, dt_s: float) -> None:
        if self.fault is not None:
            self.mask = self.fault.schedule(seed, steps, dt_s)

    def active(self, step: int) -> bool:
        return step < self.mask.size and bool(self.mask[step])

    def frame(self, step: int, image: np.ndarray, out: np.ndarray) -> bool:
        """Writes what the policy sees at `step` into `out` (which holds this slot's
        previous frame); False when no frame arrives (`out` untouched)."""
        self.held = False
        if self.fault is None or not self.active(step):
            out[...] = image
            return True
        kind = self.fault.kind
        self.held = kind == "frozen"
        if kind == "black":
            out[...] = 0
        elif kind == "frozen":
            pass  # `out` still holds the last frame shown
        elif kind == "glare":
            cv2.convertScaleAbs(image, out, 2.0, 200.0)
        elif kind == "dim":
            cv2.convertScaleAbs(image, out, self.fault.dim, 0.0)
        else:  # missing, burst
            return False
        return True


def memory_faults() -> list[CameraFault]:
    """The `memory` suite's cells, one named fault each (docs/benchmarks.md)."""
    return [
        CameraFault("blackout_short", "black", (0.3, 0.6), (3.0, 6.0)),
        CameraFault("blackout_long", "black", (1.0, 1.5), (4.0, 8.0)),
        CameraFault("frozen", "frozen", (0.3, 1.5), (3.0, 6.0)),
        CameraFault("no_frames", "missing", (0.3, 1.5), (3.0, 6.0)),
        CameraFault("burst_loss", "burst", p_enter=0.03, p_leave=0.15),
        CameraFault("glare", "glare", (0.1, 0.4), (2.0, 5.0)),
        CameraFault("tunnel", "dim", (3.0, 6.0), (8.0, 15.0), dim=0.25),
        CameraFault("latency_100ms", "latency", latency_s=0.10),
        CameraFault("latency_200ms", "latency", latency_s=0.20),
    ]
