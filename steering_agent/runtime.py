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

import math
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
_ROW0 = np.zeros(1, dtype=np.int64)


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
        scale = np.maximum(1.0 - self.turn_slowdown * np.abs(steer), self.min_fraction)
        err = np.where(known, self.target_speed_mps * scale - speed, 0.0)
        integral = self.integral[rows] + err * dt
        np.minimum(np.maximum(integral, -self.i_limit, out=integral), self.i_limit, out=integral)
        self.integral[rows] = integral
        u = np.where(known, self.kp * err + self.ki * integral, self.cruise_throttle)
        throttle = np.minimum(np.maximum(u, 0.0), 1.0)
        brake = np.minimum(np.maximum(u * -self.brake_gain, 0.0), 1.0)
        return throttle, brake

    def update_one(
        self, steer: float, speed: float | None, dt: float, row: int = 0
    ) -> tuple[float, float]:
        """`update` for one stream with Python floats (the single-camera per-frame path)."""
        if speed is None or not math.isfinite(speed):
            integral = min(max(float(self.integral[row]), -self.i_limit), self.i_limit)
            self.integral[row] = integral
            return min(max(self.cruise_throttle, 0.0), 1.0), 0.0
        scale = max(1.0 - self.turn_slowdown * abs(steer), self.min_fraction)
        err = self.target_speed_mps * scale - speed
        integral = float(self.integral[row]) + err * dt
        integral = min(max(integral, -self.i_limit), self.i_limit)
        self.integral[row] = integral
        u = self.kp * err + self.ki * integral
        return min(max(u, 0.0), 1.0), min(max(u * -self.brake_gain, 0.0), 1.0)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _default_threads() -> None:
    # The per-frame work is tiny; more threads than cores only adds contention.
    if torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)


BACKENDS = ("auto", "torch", "onnxruntime")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """ "auto" -> "onnxruntime" on the CPU where it is installed, else "torch"."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
    if backend == "auto":
        use_ort = device.type == "cpu" and onnxruntime_available()
        return "onnxruntime" if use_ort else "torch"
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ValueError(
                f"backend 'onnxruntime' runs on the CPU only, not on {device}; "
                "use backend 'torch' (or 'auto') for a GPU"
            )
        if not onnxruntime_available():
            raise ImportError(
                "backend 'onnxruntime' needs the onnxruntime package: "
                "pip install onnxruntime (or the project's [onnx] extra), or use backend 'torch'"
            )
    return backend


def ort_cpu_session(graph: bytes, threads: int):
    """An onnxruntime CPU session for `graph` on `threads` threads, without busy-waiting
    between runs (the cores are shared with the camera and the simulator; it costs about
    0.1 ms per step)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


class _TorchStepper:
    """The network stepped by PyTorch on any device; the LSTM state lives on the device."""

    name = "torch"

    def __init__(self, model: SteeringNet, device: torch.device, batch: int, hw) -> None:
        self.device = device
        self.model = model
        fmt = torch.contiguous_format
        if device.type == "cpu":
            # oneDNN runs PilotNet's wide early convolutions about 1.5x faster on NHWC.
            model.to(memory_format=torch.channels_last)
            fmt = torch.channels_last
        self._input = torch.empty(
            (batch, 3, *hw), dtype=torch.float32, device=device, memory_format=fmt
        )
        with torch.inference_mode():
            self._state = model.initial_state(batch, device)

    @torch.inference_mode()
    def reset(self, rows) -> None:
        if self._state is not None:
            idx = rows if isinstance(rows, slice) else torch.as_tensor(rows, device=self.device)
            for s in self._state:
                s[:, idx] = 0.0

    @torch.inference_mode()
    def run(self, frames_nhwc: np.ndarray, rows: np.ndarray, full: bool) -> np.ndarray:
        n = frames_nhwc.shape[0]
        x = normalize(torch.from_numpy(frames_nhwc).permute(0, 3, 1, 2), out=self._input[:n])
        if self._state is None or full:
            out, new_state = self.model.step(x, self._state)
            if new_state is not None:
                self._state = new_state
        else:
            idx = torch.as_tensor(rows, device=self.device)
            sub = tuple(s[:, idx] for s in self._state)
            out, new_sub = self.model.step(x, sub)
            for s, new in zip(self._state, new_sub, strict=True):
                s[:, idx] = new
        return out.float().cpu().numpy().astype(np.float64)


class _OrtStepper:
    """The network stepped by ONNX Runtime on the CPU; the LSTM state lives in numpy.

    It runs the graph of `onnx_export.step_graph_bytes` (uint8 frames in, normalisation
    inside), built from the weights as they are at construction.
    """

    name = "onnxruntime"

    def __init__(self, model: SteeringNet, batch: int, threads: int) -> None:
        from steering_agent.onnx_export import step_graph_bytes

        self._sess = ort_cpu_session(step_graph_bytes(model), threads)
        cfg = model.cfg
        self._state = None
        if model.recurrent:
            shape = (cfg.lstm_layers, batch, cfg.hidden_dim)
            self._state = [np.zeros(shape, np.float32), np.zeros(shape, np.float32)]

    def reset(self, rows) -> None:
        if self._state is not None:
            for s in self._state:
                s[:, rows] = 0.0

    def run(self, frames_nhwc: np.ndarray, rows: np.ndarray, full: bool) -> np.ndarray:
        if self._state is None:
            steer = self._sess.run(None, {"frames": frames_nhwc})[0]
        elif full:
            h, c = self._state
            steer, h, c = self._sess.run(None, {"frames": frames_nhwc, "h0": h, "c0": c})
            self._state = [h, c]
        else:
            h, c = (s[:, rows] for s in self._state)
            steer, h, c = self._sess.run(None, {"frames": frames_nhwc, "h0": h, "c0": c})
            self._state[0][:, rows] = h
            self._state[1][:, rows] = c
        return steer.astype(np.float64)


class BatchedSteeringPolicy:
    """B independent streams stepped together, each with its own state and resets.

    Args:
        model: the network (moved to `device`, put in eval mode).
        preprocess_cfg: the checkpoint's preprocessing.
        batch_size: number of streams.
        device: "auto", "cpu", "cuda", ...
        max_gap_s: a stream resets when its time goes backwards or jumps more than this.
        target_speed_mps: the speed controller's target.
        backend: who runs the network per frame: "torch", "onnxruntime" (CPU only; it
            runs a copy of the weights taken here), or "auto" (onnxruntime on the CPU
            where it is installed, else torch). Both give the same outputs to ~1e-7.
    """

    def __init__(
        self,
        model: SteeringNet,
        preprocess_cfg: PreprocessConfig,
        batch_size: int = 1,
        device: str | torch.device = "auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
        backend: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be >= 1")
        _default_threads()
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.model = model.to(self.device).eval()
        self.preprocess_cfg = preprocess_cfg
        self.batch_size = batch_size
        self.max_gap_s = float(max_gap_s)
        speed = target_speed_mps
        if speed is None or not np.isfinite(speed):
            speed = DEFAULT_TARGET_SPEED_MPS
        self.speed_controller = SpeedController(speed, batch=batch_size)
        hw = (preprocess_cfg.height, preprocess_cfg.width)
        # The preprocessed frames, uint8 NHWC as OpenCV writes them; preprocess_frames
        # fills it through a [B, 3, H, W] view.
        self._frames = np.empty((batch_size, *hw, 3), dtype=np.uint8)
        self._frames_chw = self._frames.transpose(0, 3, 1, 2)
        if self.backend == "onnxruntime":
            self._stepper = _OrtStepper(self.model, batch_size, torch.get_num_threads())
        else:
            self._stepper = _TorchStepper(self.model, self.device, batch_size, hw)
        self._last_stamp = np.full(batch_size, np.nan)
        self.last_action = np.tile(SAFE_ACTION, (batch_size, 1))
        self._act = np.empty((batch_size, 3), dtype=np.float32)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, batch_size: int = 1, device="auto", **kw):
        device = resolve_device(device)
        kw.setdefault("target_speed_mps", ckpt.provenance.get("target_speed_mps"))
        return cls(ckpt.build_model(device), ckpt.preprocess_config, batch_size, device, **kw)

    @classmethod
    def load(cls, path: str | os.PathLike, batch_size: int = 1, device="auto", **kw):
        """Policy from a checkpoint file (see `steering_agent.checkpoint`)."""
        return cls.from_checkpoint(load_checkpoint(path), batch_size, device, **kw)

    def reset(self, indices=None) -> None:
        """Forget the past of all streams, or only of `indices` (ints or a bool mask)."""
        rows = slice(None) if indices is None else np.asarray(indices)
        if isinstance(rows, np.ndarray) and rows.dtype != bool:
            rows = rows.astype(np.int64)
        self._stepper.reset(rows)
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
        n = rows.size
        preprocess_frames(
            images if full else np.asarray(images)[rows], self.preprocess_cfg, self._frames_chw[:n]
        )
        steer = self._stepper.run(self._frames[:n], rows, full)
        bad = ~np.isfinite(steer)
        any_bad = bad.any()
        if any_bad:
            steer[bad] = 0.0
        np.minimum(np.maximum(steer, -1.0, out=steer), 1.0, out=steer)
        spd = None if speeds is None else np.asarray(speeds, dtype=np.float64).reshape(-1)[rows]
        throttle, brake = self.speed_controller.update(steer, spd, dt, rows)
        act = self._act[:n]
        act[:, 0], act[:, 1], act[:, 2] = steer, throttle, brake
        if any_bad:  # a non-finite net output: stop safely and drop the poisoned state
            act[bad] = SAFE_ACTION
            self.reset(rows[bad])
            self._last_stamp[rows[bad]] = stamps[rows[bad]]
        if full:
            self.last_action[:] = act
        else:
            self.last_action[rows] = act
        return self.last_action.copy()


class SteeringPolicy:
    """One camera stream: `step(image, stamp) -> Control`, LSTM state kept between calls.

    Resets itself when time goes backwards or jumps more than `max_gap_s`. `backend` as in
    `BatchedSteeringPolicy`.
    """

    def __init__(
        self,
        model: SteeringNet,
        preprocess_cfg: PreprocessConfig,
        device="auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
        backend: str = "auto",
    ) -> None:
        self._batched = BatchedSteeringPolicy(
            model, preprocess_cfg, 1, device, max_gap_s, target_speed_mps, backend
        )

    @classmethod
    def from_batched(cls, batched: BatchedSteeringPolicy) -> SteeringPolicy:
        """The one-stream interface over an existing batch-1 policy (shares its state)."""
        if batched.batch_size != 1:
            raise ValueError(f"from_batched: batch_size is {batched.batch_size}, not 1")
        self = cls.__new__(cls)
        self._batched = batched
        return self

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: Checkpoint,
        device="auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
        backend: str = "auto",
    ) -> SteeringPolicy:
        device = resolve_device(device)
        if target_speed_mps is None:
            target_speed_mps = ckpt.provenance.get("target_speed_mps")
        model = ckpt.build_model(device)
        return cls(model, ckpt.preprocess_config, device, max_gap_s, target_speed_mps, backend)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device="auto",
        max_gap_s: float = 0.5,
        target_speed_mps: float | None = None,
        backend: str = "auto",
    ) -> SteeringPolicy:
        """Policy from a checkpoint file; `device="auto"` picks CUDA when present."""
        ckpt = load_checkpoint(path)
        return cls.from_checkpoint(ckpt, device, max_gap_s, target_speed_mps, backend)

    @property
    def backend(self) -> str:
        return self._batched.backend

    @property
    def device(self) -> torch.device:
        return self._batched.device

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
        """Control for one uint8 RGB [H, W, 3] frame taken at `stamp_s` seconds.

        The same rules as `BatchedSteeringPolicy.step` for one stream, in Python floats:
        at batch 1 numpy's per-call overhead would cost more than the arithmetic.
        """
        b = self._batched
        stamp_s = float(stamp_s)
        last = float(b._last_stamp[0])
        dt = stamp_s - last
        if math.isnan(dt):  # first frame (or a NaN stamp)
            dt = 0.0
        elif dt < 0.0 or dt > b.max_gap_s:  # time went back or jumped: start afresh
            b.reset()
            dt = 0.0
        b._last_stamp[0] = stamp_s
        preprocess_frames(np.asarray(image_rgb_uint8), b.preprocess_cfg, b._frames_chw)
        steer = float(b._stepper.run(b._frames, _ROW0, True)[0])
        if not math.isfinite(steer):  # stop safely and drop the poisoned state
            b.reset()
            b._last_stamp[0] = stamp_s
            return Control(float(SAFE_ACTION[0]), float(SAFE_ACTION[1]), float(SAFE_ACTION[2]))
        steer = min(max(steer, -1.0), 1.0)
        speed = None if speed_mps is None else float(speed_mps)
        throttle, brake = b.speed_controller.update_one(steer, speed, dt)
        b.last_action[0] = steer, throttle, brake
        return Control(steer, throttle, brake)


def _as_policy(checkpoint_or_model, batch: int, device, backend) -> BatchedSteeringPolicy:
    if isinstance(checkpoint_or_model, BatchedSteeringPolicy):
        if checkpoint_or_model.batch_size != batch:
            raise ValueError(
                f"the policy steps {checkpoint_or_model.batch_size} streams, not {batch}"
            )
        checkpoint_or_model.reset()
        return checkpoint_or_model
    if isinstance(checkpoint_or_model, SteeringNet):
        cfg = checkpoint_or_model.cfg
        pre = PreprocessConfig(height=cfg.height, width=cfg.width)
        return BatchedSteeringPolicy(checkpoint_or_model, pre, batch, device, backend=backend)
    if isinstance(checkpoint_or_model, Checkpoint):
        return BatchedSteeringPolicy.from_checkpoint(
            checkpoint_or_model, batch, device, backend=backend
        )
    return BatchedSteeringPolicy.load(Path(checkpoint_or_model), batch, device, backend=backend)


def _window_runner(policy: BatchedSteeringPolicy, batch: int, window: int):
    """The stateless alternative on the policy's backend: re-run the last `window` frames."""
    cfg, model = policy.preprocess_cfg, policy.model
    cfg_m = model.cfg
    u8 = np.empty((batch, 3, cfg.height, cfg.width), dtype=np.uint8)
    if policy.backend == "onnxruntime":
        from steering_agent.onnx_export import sequence_graph_bytes

        sess = ort_cpu_session(sequence_graph_bytes(model), torch.get_num_threads())
        hist = np.zeros((batch, window, 3, cfg.height, cfg.width), dtype=np.float32)
        feeds = {"frames": hist}
        if model.recurrent:  # every window starts from the zero state
            zeros = np.zeros((cfg_m.lstm_layers, batch, cfg_m.hidden_dim), dtype=np.float32)
            feeds.update(h0=zeros, c0=zeros)

        def once(images) -> None:
            preprocess_frames(images, cfg, u8)
            hist[:, :-1] = hist[:, 1:].copy()  # slide the window by one frame
            hist[:, -1] = normalize(u8).numpy()
            sess.run(None, feeds)[0][:, -1]

        return once

    hist = torch.zeros(batch, window, 3, cfg.height, cfg.width, device=policy.device)

    @torch.inference_mode()
    def once(images) -> None:
        preprocess_frames(images, cfg, u8)
        hist[:, :-1] = hist[:, 1:].clone()  # slide the window by one frame
        hist[:, -1] = normalize(u8).to(policy.device)
        out, _ = model(hist, None)
        out[:, -1].cpu().numpy()

    return once


def benchmark_latency(
    checkpoint_or_model,  # a checkpoint (file or loaded), a SteeringNet, or a policy
    batch: int = 1,
    window: int | None = None,
    repeats: int = 200,
    warmup: int = 20,
    image_hw: tuple[int, int] = (66, 200),
    device: str = "auto",
    backend: str = "auto",
) -> dict:
    """Time one control step per frame.

    With `window=None` it times the stateful path (`SteeringPolicy.step` at batch 1, else
    `BatchedSteeringPolicy.step`: preprocess, one network step, speed controller). With
    `window=W` it times the stateless alternative on the same backend: preprocessing the
    new frame and re-running the network over the last W frames for every new frame.

    Returns:
        dict(median_ms, p90_ms, mean_ms, min_ms, batch, window, repeats, device, backend,
        threads).
    """
    policy = _as_policy(checkpoint_or_model, batch, device, backend)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *image_hw, 3), dtype=np.uint8)
    speeds = np.full(batch, 5.0)
    if window is None and batch == 1:  # the single-camera API, as the ROS node uses it
        single = SteeringPolicy.from_batched(policy)

        def once(i: int) -> None:
            single.step(images[0], i * 0.05, 5.0)
    elif window is None:

        def once(i: int) -> None:
            policy.step(images, np.full(batch, i * 0.05), speeds)
    else:
        run_window = _window_runner(policy, batch, window)

        def once(i: int) -> None:
            run_window(images)

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
        "backend": policy.backend,
        "threads": torch.get_num_threads(),
    }
