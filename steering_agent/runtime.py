"""The stateful policy: camera frame in, control out, one network step per frame.

`BatchedSteeringPolicy` steps B independent streams (vectorised evaluation, several
cameras), each with its own LSTM state, time stamp and speed-controller state;
`SteeringPolicy` is the one-stream form with a `Control` result. Both keep the LSTM
state between calls and never re-run past frames.

Longitudinal control comes from `SpeedController` (the networks predict steering only):

    v_ref    = v_target * max(min_fraction, 1 - turn_slowdown * |steer|)
    e        = v_ref - v
    I        = clip(I + e * dt, -i_limit, i_limit)
    u        = kp * e + ki * I
    throttle = clip(u, 0, 1);  brake = clip(-brake_gain * u, 0, 1)

Without a speed measurement the controller holds `cruise_throttle` and no brake.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from steering_agent.checkpoint import Checkpoint, load_checkpoint
from steering_agent.model import SteeringNet
from steering_agent.preprocess import PreprocessConfig, normalize, preprocess_frames

DEFAULT_TARGET_SPEED_MPS = 8.0
SAFE_ACTION = np.array([0.0, 0.0, 1.0], dtype=np.float32)  # steer straight, full brake


@dataclass(frozen=True)
class Control:
    """One control command (CARLA meaning): steer [-1, 1], throttle and brake [0, 1]."""

    steer: float
    throttle: float
    brake: float


class SpeedController:
    """PI speed controller with a slow-down in sharp steering (formula in the module doc).

    Vectorised over `batch` streams; each keeps its own integrator.
    """

    def __init__(
        self,
        target_speed_mps: float = DEFAULT_TARGET_SPEED_MPS,
        batch: int = 1,
        kp: float = 0.35,
        ki: float = 0.08,
        i_limit: float = 5.0,
        turn_slowdown: float = 0.6,
        min_fraction: float = 0.4,
        brake_gain: float = 0.5,
        cruise_throttle: float = 0.35,
    ) -> None:
        if target_speed_mps < 0:
            raise ValueError(f"SpeedController: target_speed_mps ({target_speed_mps}) must be >= 0")
        self.target_speed_mps = float(target_speed_mps)
        self.kp, self.ki, self.i_limit = kp, ki, i_limit
        self.turn_slowdown, self.min_fraction = turn_slowdown, min_fraction
        self.brake_gain, self.cruise_throttle = brake_gain, cruise_throttle
        self.integral = np.zeros(batch, dtype=np.float64)

    def reset(self, indices: np.ndarray | None = None) -> None:
        if indices is None:
            self.integral[:] = 0.0
        else:
            self.integral[indices] = 0.0

    def update(
        self, steer: np.ndarray, speed: np.ndarray | None, dt: np.ndarray, rows=slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Throttle and brake for the streams `rows` (steer, speed and dt are for those).

        A speed of None or NaN (not measured yet) gives `cruise_throttle` and no brake.
        """
        if speed is None:
            speed = np.full(len(steer), np.nan)
        known = np.isfinite(speed)
        scale = np.maximum(self.min_fraction, 1.0 - self.turn_slowdown * np.abs(steer))
        err = np.where(known, self.target_speed_mps * scale - speed, 0.0)
        integral = np.clip(self.integral[rows] + err * dt, -self.i_limit, self.i_limit)
        self.integral[rows] = integral
        u = np.where(known, self.kp * err + self.ki * integral, self.cruise_throttle)
        return np.clip(u, 0.0, 1.0), np.clip(-self.brake_gain * u, 0.0, 1.0)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _default_threads() -> None:
    # The per-frame work is tiny; more threads than cores only adds contention.
    if torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)


class BatchedSteeringPolicy:
    """B independent streams stepped together, each with its own state and resets.

    Args:
        model: the network (moved to `device`, put in eval mode).
        preprocess_cfg: the checkpoint's preprocessing.
        batch_size: number of streams.
        device: "auto", "cpu", "cuda", ...
        max_gap_s: a stream resets when its time goes backwards or jumps more than this.
        target_speed_mps: the speed controller's target.
    """

    def __init__(
        self,
        model: SteeringNet,
        preprocess_cfg: PreprocessConfig,
        batch_size: int = 1,
        device: str | torch.device = "auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be >= 1")
        _default_threads()
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.preprocess_cfg = preprocess_cfg
        self.batch_size = batch_size
        self.max_gap_s = float(max_gap_s)
        speed = target_speed_mps
        if speed is None or not np.isfinite(speed):
            speed = DEFAULT_TARGET_SPEED_MPS
        self.speed_controller = SpeedController(speed, batch=batch_size)
        shape = (batch_size, 3, preprocess_cfg.height, preprocess_cfg.width)
        # Preallocated per-frame buffers: uint8 from OpenCV, float input on the device.
        self._u8 = np.empty(shape, dtype=np.uint8)
        self._u8_t = torch.from_numpy(self._u8)
        self._input = torch.empty(shape, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            self._state = model.initial_state(batch_size, self.device)
        self._last_stamp = np.full(batch_size, np.nan)
        self.last_action = np.tile(SAFE_ACTION, (batch_size, 1))

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, batch_size: int = 1, device="auto", **kw):
        device = resolve_device(device)
        kw.setdefault("target_speed_mps", ckpt.provenance.get("target_speed_mps"))
        return cls(ckpt.build_model(device), ckpt.preprocess_config, batch_size, device, **kw)

    @classmethod
    def load(cls, path: str | os.PathLike, batch_size: int = 1, device="auto", **kw):
        """Policy from a checkpoint file (see `steering_agent.checkpoint`)."""
        return cls.from_checkpoint(load_checkpoint(path), batch_size, device, **kw)

    @torch.inference_mode()
    def reset(self, indices=None) -> None:
        """Forget the past of all streams, or only of `indices` (ints or a bool mask)."""
        rows = slice(None) if indices is None else np.asarray(indices)
        if isinstance(rows, np.ndarray) and rows.dtype != bool:
            rows = rows.astype(np.int64)
        if self._state is not None:
            idx = rows if isinstance(rows, slice) else torch.as_tensor(rows, device=self.device)
            for s in self._state:
                s[:, idx] = 0.0
        self._last_stamp[rows] = np.nan
        self.speed_controller.reset(rows)
        self.last_action[rows] = SAFE_ACTION

    def _dt_and_gap_resets(self, stamps: np.ndarray, rows: np.ndarray) -> np.ndarray:
        last = self._last_stamp[rows]
        dt = stamps - last
        jump = ~np.isnan(last) & ((dt < 0) | (dt > self.max_gap_s))
        if jump.any():
            self.reset(rows[jump])
        self._last_stamp[rows] = stamps
        return np.where(np.isnan(dt) | jump, 0.0, dt)

    @torch.inference_mode()
    def step(self, images, stamps, speeds=None, active=None) -> np.ndarray:
        """Advance every active stream by one frame.

        Args:
            images: uint8 RGB [B, H, W, 3] (rows of inactive streams are ignored).
            stamps: [B] time stamps in seconds.
            speeds: [B] m/s, or None when unknown.
            active: optional bool [B]; inactive streams keep state and last action.

        Returns:
            float32 [B, 3] (steer, throttle, brake); always finite and in range.
        """
        stamps = np.asarray(stamps, dtype=np.float64).reshape(self.batch_size)
        rows = np.arange(self.batch_size) if active is None else np.flatnonzero(active)
        if rows.size == 0:
            return self.last_action.copy()
        dt = self._dt_and_gap_resets(stamps[rows], rows)
        full = rows.size == self.batch_size
        u8 = self._u8 if full else self._u8[: rows.size]
        preprocess_frames(images if full else np.asarray(images)[rows], self.preprocess_cfg, u8)
        x = normalize(self._u8_t[: rows.size], out=self._input[: rows.size])
        steer = self._forward(x, rows, full)
        bad = ~np.isfinite(steer)
        steer = np.clip(np.nan_to_num(steer, nan=0.0), -1.0, 1.0)
        spd = None if speeds is None else np.asarray(speeds, dtype=np.float64).reshape(-1)[rows]
        throttle, brake = self.speed_controller.update(steer, spd, dt, rows)
        act = np.stack([steer, throttle, brake], axis=1).astype(np.float32)
        if bad.any():  # a non-finite net output: stop safely and drop the poisoned state
            act[bad] = SAFE_ACTION
            self.reset(rows[bad])
            self._last_stamp[rows[bad]] = stamps[rows[bad]]
        self.last_action[rows] = act
        return self.last_action.copy()

    def _forward(self, x: torch.Tensor, rows: np.ndarray, full: bool) -> np.ndarray:
        if self._state is None or full:
            out, new_state = self.model(x.unsqueeze(1), self._state)
            if new_state is not None:
                self._state = new_state
        else:
            idx = torch.as_tensor(rows, device=self.device)
            sub = tuple(s[:, idx] for s in self._state)
            out, new_sub = self.model(x.unsqueeze(1), sub)
            for s, n in zip(self._state, new_sub, strict=True):
                s[:, idx] = n
        return out[:, 0].float().cpu().numpy().astype(np.float64)


class SteeringPolicy:
    """One camera stream: `step(image, stamp) -> Control`, LSTM state kept between calls.

    Resets itself when time goes backwards or jumps more than `max_gap_s`.
    """

    def __init__(
        self,
        model: SteeringNet,
        preprocess_cfg: PreprocessConfig,
        device="auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
    ) -> None:
        self._batched = BatchedSteeringPolicy(
            model, preprocess_cfg, 1, device, max_gap_s, target_speed_mps
        )
        self._stamp = np.zeros(1)
        self._speed = np.zeros(1)

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: Checkpoint,
        device="auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
    ) -> SteeringPolicy:
        device = resolve_device(device)
        if target_speed_mps is None:
            target_speed_mps = ckpt.provenance.get("target_speed_mps")
        return cls(
            ckpt.build_model(device), ckpt.preprocess_config, device, max_gap_s, target_speed_mps
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device="auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
    ) -> SteeringPolicy:
        """Policy from a checkpoint file; `device="auto"` picks CUDA when present."""
        return cls.from_checkpoint(load_checkpoint(path), device, max_gap_s, target_speed_mps)

    @property
    def model(self) -> SteeringNet:
        return self._batched.model

    @property
    def speed_controller(self) -> SpeedController:
        return self._batched.speed_controller

    def reset(self) -> None:
        """Forget the past (call when the episode restarts)."""
        self._batched.reset()

    def step(
        self, image_rgb_uint8: np.ndarray, stamp_s: float, speed_mps: float | None = None
    ) -> Control:
        """Control for one uint8 RGB [H, W, 3] frame taken at `stamp_s` seconds."""
        self._stamp[0] = stamp_s
        speeds = None
        if speed_mps is not None:
            self._speed[0] = speed_mps
            speeds = self._speed
        a = self._batched.step(np.asarray(image_rgb_uint8)[None], self._stamp, speeds)[0]
        return Control(float(a[0]), float(a[1]), float(a[2]))


def _as_policy(checkpoint_or_model, batch: int, device) -> BatchedSteeringPolicy:
    if isinstance(checkpoint_or_model, SteeringNet):
        cfg = checkpoint_or_model.cfg
        pre = PreprocessConfig(height=cfg.height, width=cfg.width)
        return BatchedSteeringPolicy(checkpoint_or_model, pre, batch, device)
    if isinstance(checkpoint_or_model, Checkpoint):
        return BatchedSteeringPolicy.from_checkpoint(checkpoint_or_model, batch, device)
    return BatchedSteeringPolicy.load(Path(checkpoint_or_model), batch, device)


def benchmark_latency(
    checkpoint_or_model,
    batch: int = 1,
    window: int | None = None,
    repeats: int = 200,
    warmup: int = 20,
    image_hw: tuple[int, int] = (66, 200),
    device: str = "auto",
) -> dict:
    """Time one control step per frame.

    With `window=None` it times the stateful path (`BatchedSteeringPolicy.step`: preprocess,
    one network step, speed controller). With `window=W` it times the stateless
    alternative: preprocessing the new frame and re-running the network over the last W
    frames for every new frame.

    Returns:
        dict(median_ms, p90_ms, mean_ms, min_ms, batch, window, repeats, device, threads).
    """
    policy = _as_policy(checkpoint_or_model, batch, device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *image_hw, 3), dtype=np.uint8)
    speeds = np.full(batch, 5.0)
    if window is None:

        def once(i: int) -> None:
            policy.step(images, np.full(batch, i * 0.05), speeds)
    else:
        cfg, model = policy.preprocess_cfg, policy.model
        hist = torch.zeros(batch, window, 3, cfg.height, cfg.width, device=policy.device)
        u8 = np.empty((batch, 3, cfg.height, cfg.width), dtype=np.uint8)

        @torch.inference_mode()
        def once(i: int) -> None:
            preprocess_frames(images, cfg, u8)
            hist[:, :-1] = hist[:, 1:].clone()  # slide the window by one frame
            hist[:, -1] = normalize(u8).to(policy.device)
            out, _ = model(hist, None)
            out[:, -1].cpu().numpy()

    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        once(i)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "mean_ms": statistics.fmean(times),
        "min_ms": times[0],
        "batch": batch,
        "window": window,
        "repeats": repeats,
        "device": str(policy.device),
        "threads": torch.get_num_threads(),
    }
