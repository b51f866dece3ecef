"""The per-frame latency benchmark of the policy: the stateful step against re-running a
window of past frames (`steering-agent bench inference`)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from steering_agent.policy.backends import ort_cpu_session
from steering_agent.policy.checkpoint import Checkpoint
from steering_agent.policy.model import SteeringNet
from steering_agent.policy.policy import BatchedSteeringPolicy, SteeringPolicy
from steering_agent.policy.preprocess import PreprocessConfig, normalize, preprocess_frames


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
    u8 = np.empty((batch, 3, cfg.height, cfg.width), dtype=np.uint8)
    if policy.backend == "onnxruntime":
        from steering_agent.policy.onnx_export import sequence_graph_bytes, zero_state_feeds

        sess = ort_cpu_session(sequence_graph_bytes(model), torch.get_num_threads())
        hist = np.zeros((batch, window, 3, cfg.height, cfg.width), dtype=np.float32)
        feeds = {"frames": hist}
        feeds.update(zero_state_feeds(model, batch))  # every window starts from zero state

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


LAYOUTS = ("rgb", "bgra", "bgra_via_rgb")


def preprocess_ms(
    width: int, height: int, camera=None, frames: int = 300, warmup: int = 30, seed: int = 0,
    layout: str = "rgb", ground_memory: bool = False,
) -> float:  # fmt: skip
    """Median time (ms) to turn one uint8 `width` x `height` frame into the network's
    input (PilotNet's 200x66 YUV): the plain crop and resize, or with `camera` (a
    `CameraSpec`) the calibrated remap of `steering_agent.policy.calibration`.

    `layout`: "rgb" (an RGB frame), "bgra" (a bgra8 message's pixels as they are, the
    node's path), "bgra_via_rgb" (the node's path before: the whole BGRA frame converted
    to RGB first, then the RGB path). `ground_memory`: with `camera`, also fill the
    ground it misses from the frame before (`calibration.GroundMemory`, as the policy
    does when the speed is known; 10 m/s at 20 Hz, turning gently)."""
    import cv2

    from steering_agent.policy.calibration import (
        CameraCalibration,
        GroundMemory,
        canonical_camera,
    )
    from steering_agent.policy.preprocess import to_color_space

    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    cfg = PreprocessConfig()
    channels = 3 if layout == "rgb" else 4
    source = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    image = source
    if layout == "bgra_via_rgb":
        image = np.empty((height, width, 3), np.uint8)
    out = np.empty((1, 3, cfg.height, cfg.width), np.uint8)
    nhwc = np.empty((cfg.height, cfg.width, 3), np.uint8)
    if camera is None:

        def once() -> None:
            preprocess_frames(image, cfg, out)
    else:
        canon, first = canonical_camera(cfg.width, cfg.height)
        calib = CameraCalibration(camera, canon, cfg.width, cfg.height, first)
        memory = GroundMemory(calib, first) if ground_memory else None
        if memory is not None and not memory.active:
            raise ValueError("ground_memory: this camera misses no ground the memory fills")

        def once() -> None:  # the policy's path
            view = calib.view(image)
            if memory is not None:
                memory.fill(0, view, 0.5, 0.004)
            to_color_space(view, cfg.color, nhwc)

    convert = layout == "bgra_via_rgb"
    times = []
    for i in range(warmup + frames):
        t0 = time.perf_counter()
        if convert:
            cv2.cvtColor(source, cv2.COLOR_BGRA2RGB, dst=image)
        once()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def encoder_runner(model: SteeringNet, backend: str):
    """The bare `FrameEncoder` forward at batch 1 on `backend`, a callable taking one
    float32 [1, 3, H, W] normalised frame: the floor under the stateful step (which adds
    the normalisation, the LSTM cell, the head, the speed controller and bookkeeping).

    Run as the step's backend runs: onnxruntime through the same session options and
    threads (`backends.ort_cpu_session`) and an IO binding (the input bound once per
    array, the output preallocated), as `backends.OrtStepper` runs the step; torch on
    the input in the stepper's memory format (channels-last on the CPU), converted once
    per array, not per call.
    """
    cfg = model.cfg
    encoder = model.encoder.eval()
    last: list = [None, None]  # the input array last seen, and what it became
    if backend == "onnxruntime":
        import io

        from steering_agent.policy.backends import bind_cpu_array
        from steering_agent.policy.onnx_export import _export

        buf = io.BytesIO()
        x0 = torch.zeros(1, cfg.encoder_channels, cfg.height, cfg.width)
        _export(encoder, (x0,), ["frames"], ["features"], None, buf)
        sess = ort_cpu_session(buf.getvalue(), torch.get_num_threads())
        binding = sess.io_binding()
        out = np.zeros((1, cfg.feature_dim), np.float32)  # kept alive by `once`
        bind_cpu_array(binding, "features", out, output=True)

        def once(x: np.ndarray) -> None:
            if x is not last[0]:
                last[1] = np.ascontiguousarray(x, dtype=np.float32)
                bind_cpu_array(binding, "frames", last[1], output=False)
                last[0] = x
            sess.run_with_iobinding(binding)

        once.output = out
        return once
    fmt = torch.channels_last if next(encoder.parameters()).device.type == "cpu" else None
    if fmt is not None:  # as the torch stepper runs it on the CPU
        encoder.to(memory_format=fmt)
    device = next(encoder.parameters()).device

    @torch.inference_mode()
    def once(x: np.ndarray) -> None:
        if x is not last[0]:
            t = torch.from_numpy(x).to(device)
            last[1] = t if fmt is None else t.contiguous(memory_format=fmt)
            last[0] = x
        encoder(last[1]).cpu()

    return once


def encoder_ms(
    model: SteeringNet, backend: str, repeats: int = 200, warmup: int = 20, runner=None
) -> float:
    """Median time (ms) of the bare encoder forward at batch 1 (`encoder_runner`; the
    model where it is, e.g. a policy's `model`). `runner`: one made before by
    `encoder_runner(model, backend)`, to time it again without rebuilding it."""
    cfg = model.cfg
    once = encoder_runner(model, backend) if runner is None else runner
    x = np.random.default_rng(0).uniform(-1, 1, (1, cfg.encoder_channels, cfg.height, cfg.width))
    x = x.astype(np.float32)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        once(x)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
