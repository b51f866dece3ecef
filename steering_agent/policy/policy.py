"""The stateful policy: camera frame in, control out, one network step per frame.

`BatchedSteeringPolicy` steps B independent streams (vectorised evaluation, several
cameras), each with its own LSTM state, time stamp and speed-controller state;
`SteeringPolicy` is the one-stream form with a `Control` result. Both keep the LSTM
state between calls and never re-run past frames.

Longitudinal control: `steering_agent.policy.control.SpeedController`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from steering_agent.common.numbers import scalar
from steering_agent.policy.backends import OrtStepper, TorchStepper, resolve_backend, resolve_device
from steering_agent.policy.calibration import (
    CANONICAL_MOUNT,
    CameraCalibration,
    CameraSpec,
    GroundMemory,
    canonical_camera,
    car_motion,
)
from steering_agent.policy.checkpoint import Checkpoint, load_checkpoint
from steering_agent.policy.control import (
    DEFAULT_TARGET_SPEED_MPS,
    SAFE_ACTION,
    Control,
    SpeedController,
    VehicleSpec,
    convert_steer,
)
from steering_agent.policy.model import SteeringNet
from steering_agent.policy.preprocess import (
    PreprocessConfig,
    preprocess_frames,
    preprocess_into,
    to_color_space,
)

_ROW0 = np.zeros(1, dtype=np.int64)


def _spec_dict(spec) -> dict:
    return spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)


def _vehicle(spec) -> VehicleSpec | None:
    if spec is None or isinstance(spec, VehicleSpec):
        return spec
    return VehicleSpec.from_dict(spec)


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
        camera: the camera that takes the frames (a `CameraSpec` or its dict, e.g. an
            env's `camera_spec()`); None: the canonical one. A camera of another mount
            or field of view is mapped onto the canonical view
            (`steering_agent.policy.calibration`).
        vehicle: the car that is steered (`VehicleSpec` or its dict, e.g. an env's
            `vehicle_spec()`); None: the canonical one. Commands are converted so that
            they drive the path the network meant.
        canonical_camera_spec / canonical_vehicle: what the network was trained with (from
            the checkpoint; default: the embedded simulator's training camera and car).
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
        camera=None,
        vehicle=None,
        canonical_camera_spec=None,
        canonical_vehicle=None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be >= 1")
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
        self._crop_for: tuple = (None, None)  # (frame (height, width), its crop rows)
        if self.backend == "onnxruntime":
            self._stepper = OrtStepper(self.model, batch_size, torch.get_num_threads())
        else:
            self._stepper = TorchStepper(self.model, self.device, batch_size, hw)
        self._last_stamp = np.full(batch_size, np.nan)
        self.last_action = np.tile(SAFE_ACTION, (batch_size, 1))
        self.last_output_finite = True
        self._act = np.empty((batch_size, 3), dtype=np.float32)
        self.canonical_vehicle = _vehicle(canonical_vehicle) or VehicleSpec()
        self.vehicle = _vehicle(vehicle) or self.canonical_vehicle
        cfg = preprocess_cfg
        canon, self._first_row = canonical_camera(
            cfg.width, cfg.height, cfg.crop_top, cfg.crop_bottom
        )
        if canonical_camera_spec is not None:
            canon = CameraSpec.from_dict({**canon.to_dict(), **_spec_dict(canonical_camera_spec)})
        self.canonical_camera = canon
        self.calibration: CameraCalibration | None = None
        self._memory: GroundMemory | None = None
        # per stream, the car's motion since its last frame: metres along, radians of yaw
        # (left positive); NaN where unknown (no speed)
        self._motion = np.full((batch_size, 2), np.nan)
        self.set_camera(camera)

    def set_camera(self, camera) -> None:
        """Use frames of `camera`: a `CameraSpec`, or a dict of its fields (e.g. an env's
        `camera_spec()`, or a CameraInfo's intrinsics with the mount). A dict with a mount
        and `fov_deg` but no intrinsics is calibrated for each frame size as it comes
        (square pixels, centred principal point). None: the canonical camera."""
        self._camera = None if camera is None else _spec_dict(camera)
        self.calibration = None
        self._memory = None
        self._calibrated_size: tuple[int, int] | None = None
        if self._camera is not None and "fx" in self._camera:
            spec = self._spec(int(self._camera["width"]), int(self._camera["height"]))
            self._use(spec)

    def _spec(self, width: int, height: int) -> CameraSpec:
        d = {**self.canonical_camera.to_dict(), **self._camera}
        if "fx" not in self._camera:
            fov = float(self._camera.get("fov_deg", 90.0))
            mount = {k: d[k] for k in CANONICAL_MOUNT}
            return CameraSpec.from_fov(width, height, fov, **mount)
        return CameraSpec.from_dict(d)

    def _use(self, spec: CameraSpec) -> None:
        self._calibrated_size = (spec.width, spec.height)
        if spec.same_mount_and_view(self.canonical_camera):
            self.calibration = None  # the training camera at any resolution: crop and resize
            self._memory = None
        else:
            cfg = self.preprocess_cfg
            self.calibration = CameraCalibration(
                spec, self.canonical_camera, cfg.width, cfg.height, self._first_row
            )
            memory = GroundMemory(self.calibration, self._first_row, self.batch_size)
            self._memory = memory if memory.active else None

    def _prepare(self, images, rows: np.ndarray, full: bool) -> None:
        """Frames -> self._frames[:n] (uint8 NHWC in the network's colour space)."""
        n = rows.size
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if self._camera is not None:
            h, w = images.shape[1:3]
            if self._calibrated_size != (w, h):
                if "fx" in self._camera:
                    raise ValueError(
                        f"frame {w}x{h} does not match the camera's intrinsics "
                        f"({self._calibrated_size[0]}x{self._calibrated_size[1]}); "
                        "pass the camera_info of this camera"
                    )
                self._use(self._spec(w, h))
        if self.calibration is None:
            if images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] in (3, 4):
                # checked: straight in, the crop rows looked up once per frame size
                size = images.shape[1:3]
                if size != self._crop_for[0]:
                    self._crop_for = (size, self.preprocess_cfg.crop_rows(*size))
                for k in range(n):
                    image = images[k if full else rows[k]]
                    preprocess_into(image, self.preprocess_cfg, self._crop_for[1], self._frames[k])
                return
            frames = images if full else images[rows]  # its error names the problem
            preprocess_frames(frames, self.preprocess_cfg, self._frames_chw[:n])
            return
        memory = self._memory
        for k in range(n):
            row = k if full else int(rows[k])
            # the input-sized view in the frame's own channels (a bgra8 frame's colour is
            # converted once, into the network's colour space)
            view = self.calibration.view(images[row])
            if memory is not None:  # the ground out of the camera's view, from before
                memory.fill(row, view, self._motion[row, 0], self._motion[row, 1])
            to_color_space(view, self.preprocess_cfg.color, self._frames[k])

    def _set_motion(self, rows: np.ndarray, dt: np.ndarray, speeds) -> None:
        """The motion of streams `rows` over the last `dt` seconds, for `GroundMemory`
        (`calibration.car_motion`): their speed (NaN when unknown), and the steering
        command they were last given on `self.vehicle`."""
        if speeds is None:
            self._motion[rows] = np.nan
            return
        speed = np.asarray(speeds, dtype=np.float64).reshape(-1)
        speed = speed if speed.size == rows.size else speed[rows]
        ds, dpsi = car_motion(speed, dt, self.last_action[rows, 0], self.vehicle)
        self._motion[rows, 0] = ds
        self._motion[rows, 1] = dpsi

    def _steer_out(self, steer: float) -> float:
        """The network's (canonical-vehicle) command for the vehicle that is driven."""
        return convert_steer(steer, self.canonical_vehicle, self.vehicle)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, batch_size: int = 1, device="auto", **kw):
        device = resolve_device(device)
        # None (also passed explicitly) means the checkpoint's own
        for name, key in (
            ("target_speed_mps", "target_speed_mps"),
            ("canonical_camera_spec", "camera"),
            ("canonical_vehicle", "vehicle"),
        ):
            if kw.get(name) is None:
                kw[name] = ckpt.provenance.get(key)  # fmt: skip
        return cls(ckpt.build_model(device), ckpt.preprocess_config, batch_size, device, **kw)

    @classmethod
    def load(cls, path: str | os.PathLike, batch_size: int = 1, device="auto", **kw):
        """Policy from a checkpoint file (see `steering_agent.policy.checkpoint`)."""
        return cls.from_checkpoint(load_checkpoint(path), batch_size, device, **kw)

    def reset(self, indices=None) -> None:
        """Forget the past of all streams, or only of `indices` (ints or a bool mask)."""
        rows = slice(None) if indices is None else np.asarray(indices)
        if isinstance(rows, np.ndarray) and rows.dtype != bool:
            rows = rows.astype(np.int64)
        self._stepper.reset(rows)
        if self._memory is not None:
            self._memory.reset(rows)
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
        if self._memory is not None:
            self._set_motion(rows, dt, speeds)
        self._prepare(images, rows, full)
        frames = self._frames if full else self._frames[:n]  # the same array: bound once
        steer = self._stepper.run(frames, rows, full)
        bad = ~np.isfinite(steer)
        any_bad = bad.any()
        self.last_output_finite = not any_bad
        if any_bad:
            steer[bad] = 0.0
        np.minimum(np.maximum(steer, -1.0, out=steer), 1.0, out=steer)
        if self.vehicle != self.canonical_vehicle:
            for k in range(n):
                steer[k] = self._steer_out(float(steer[k]))
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

    def step_one(self, image: np.ndarray, stamp_s, speed_mps=None) -> tuple[float, float, float]:
        """`step` for a batch-1 policy in Python floats (at batch 1 numpy's per-call
        overhead would cost more than the arithmetic): (steer, throttle, brake)."""
        if self.batch_size != 1:
            raise ValueError(f"step_one: the policy steps {self.batch_size} streams, not 1")
        stamp_s = scalar(stamp_s, "stamp_s")
        dt = stamp_s - float(self._last_stamp[0])
        if math.isnan(dt):  # first frame (or a NaN stamp)
            dt = 0.0
        elif dt < 0.0 or dt > self.max_gap_s:  # time went back or jumped: start afresh
            self.reset()
            dt = 0.0
        self._last_stamp[0] = stamp_s
        if self._memory is not None:
            speed = None if speed_mps is None else [scalar(speed_mps, "speed_mps")]
            self._set_motion(_ROW0, np.array([dt]), speed)
        self._prepare(image, _ROW0, True)
        steer = float(self._stepper.run(self._frames, _ROW0, True)[0])
        self.last_output_finite = math.isfinite(steer)
        if not self.last_output_finite:  # stop safely and drop the poisoned state
            self.reset()
            self._last_stamp[0] = stamp_s
            return float(SAFE_ACTION[0]), float(SAFE_ACTION[1]), float(SAFE_ACTION[2])
        steer = self._steer_out(min(max(steer, -1.0), 1.0))
        speed = None if speed_mps is None else scalar(speed_mps, "speed_mps")
        throttle, brake = self.speed_controller.update_one(steer, speed, dt)
        self.last_action[0] = steer, throttle, brake
        return steer, throttle, brake


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
        **calibration,
    ) -> None:
        self._batched = BatchedSteeringPolicy(
            model, preprocess_cfg, 1, device, max_gap_s, target_speed_mps, backend, **calibration
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
    def from_checkpoint(cls, ckpt: Checkpoint, device="auto", **kw) -> SteeringPolicy:
        """Keyword arguments as `BatchedSteeringPolicy` (max_gap_s, target_speed_mps,
        backend, camera, vehicle); the canonical camera and vehicle are the checkpoint's."""
        return cls.from_batched(BatchedSteeringPolicy.from_checkpoint(ckpt, 1, device, **kw))

    @classmethod
    def load(cls, path: str | os.PathLike, device="auto", **kw) -> SteeringPolicy:
        """Policy from a checkpoint file; `device="auto"` picks CUDA when present.

        `camera=` (an env's `camera_spec()`, or a `CameraSpec`) and `vehicle=` (an env's
        `vehicle_spec()`) describe the user's camera and car; without them the
        checkpoint's canonical camera and vehicle are assumed.
        """
        return cls.from_checkpoint(load_checkpoint(path), device, **kw)

    @property
    def calibration(self):
        """The `CameraCalibration` in use (None: frames are the canonical camera's)."""
        return self._batched.calibration

    @property
    def ground_memory(self):
        """The `GroundMemory` filling the ground this camera misses (None: it misses none,
        or there is no calibration)."""
        return self._batched._memory

    def set_camera(self, camera) -> None:
        """As `BatchedSteeringPolicy.set_camera` (e.g. when a CameraInfo arrives)."""
        self._batched.set_camera(camera)

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

    @property
    def last_output_finite(self) -> bool:
        """False when the network's last output was NaN or infinite (the step braked)."""
        return self._batched.last_output_finite

    def step(self, image_rgb_uint8: np.ndarray, stamp_s, speed_mps=None) -> Control:
        """Control for one uint8 RGB [H, W, 3] frame taken at `stamp_s` seconds.

        `stamp_s` and `speed_mps` may be Python floats, NumPy scalars or one-element
        arrays (a gym observation's `speed` is shape (1,)); `speed_mps=None`: unknown.
        """
        return Control(*self._batched.step_one(image_rgb_uint8, stamp_s, speed_mps))
