"""The suites of `steering-agent bench` that compare paths within one run: preprocessing
(plain against calibrated, RGB against the bgra8 message's pixels), the encoder beside
the stateful step, the ROS node and DDS at two frame sizes, and training throughput.

Each ratio is taken run by run (the two figures of a ratio come from the same repeat,
measured one right after the other), so it holds on a machine whose speed drifts.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from steering_agent.bench import Measurement, Skipped

# the goals of the performance issue, recorded beside their ratios
GOALS = {
    "step / encoder": 1.2,
    "node 800x600 / 200x66": 1.15,
    "camera->control / node 800x600": 1.5,
    "calibrated / plain 800x600": 1.0,
}
# step / encoder: per repeat, this many alternating blocks of this many calls each
BLOCKS, BLOCK_CALLS = 10, 20


def _ratio(name: str, num: list, den: list, goal_key: str | None, **params) -> Measurement:
    runs = [a / b for a, b in zip(num, den, strict=True)]
    extra = {"goal_at_most": GOALS[goal_key]} if goal_key else {}
    return Measurement(name, "ratio", runs, {**extra, **params})


def bench_preprocess(repeats: int, quick: bool) -> list:
    """Frame -> network input per frame at 200x66 and 800x600: the plain crop and resize
    and the calibrated remap of the CARLA bridge's camera (800x600, pitch 0, 2.0 m high,
    2.0 m ahead) onto the training camera; from RGB, from the bgra8 message's pixels as
    they are (the node's path), and as the node did before (BGRA -> RGB, then RGB)."""
    from steering_agent.policy.calibration import CANONICAL_MOUNT, CameraSpec
    from steering_agent.policy.latency import preprocess_ms

    frames = 30 if quick else 300
    bridge = CameraSpec.from_fov(
        800, 600, 90.0, **{**CANONICAL_MOUNT, "x_m": 2.0, "height_m": 2.0, "pitch_deg": 0.0}
    )
    cal = "calibrated (CARLA bridge mount)"
    cases = (
        ("preprocess 200x66", 200, 66, None, "rgb"),
        ("preprocess 800x600", 800, 600, None, "rgb"),
        (f"preprocess 800x600 {cal}", 800, 600, bridge, "rgb"),
        ("preprocess 200x66 bgra8", 200, 66, None, "bgra"),
        ("preprocess 800x600 bgra8", 800, 600, None, "bgra"),
        (f"preprocess 800x600 bgra8 {cal}", 800, 600, bridge, "bgra"),
        (f"preprocess 800x600 bgra8 {cal} + ground memory", 800, 600, bridge, "bgra+memory"),
        ("preprocess 800x600 bgra8 via rgb (the node before)", 800, 600, None, "bgra_via_rgb"),
        (f"preprocess 800x600 bgra8 via rgb {cal}", 800, 600, bridge, "bgra_via_rgb"),
    )
    runs: dict[str, list] = {name: [] for name, *_ in cases}
    for _ in range(repeats):  # interleaved: each repeat measures every case once
        for name, w, h, cam, layout in cases:
            kind, memory = layout.split("+")[0], layout.endswith("+memory")
            runs[name].append(preprocess_ms(w, h, cam, frames, layout=kind, ground_memory=memory))
    out = [
        Measurement(name, "ms/frame", runs[name], {"frames": frames, "layout": layout})
        for name, _, _, _, layout in cases
    ]
    goal = "calibrated / plain 800x600"
    for label, num, den in (
        ("bgra8: calibrated / plain", 5, 4),
        ("bgra8: calibrated + ground memory / plain", 6, 4),
        ("bgra8: calibrated / plain via rgb (the node before)", 5, 7),
        ("rgb: calibrated / plain", 2, 1),
    ):
        name = f"preprocess 800x600 {label}"
        out.append(_ratio(name, runs[cases[num][0]], runs[cases[den][0]], goal))
    return out


def inference_encoder_rows(pol, backend: str, repeats: int, quick: bool):
    """The bare encoder at batch 1 on `pol`'s backend, and the step / encoder ratio.

    The step is timed again right beside the encoder, so both figures of a ratio come
    from the same moment of a machine whose speed drifts: each repeat alternates
    `BLOCKS` blocks of step calls and of encoder calls (`BLOCK_CALLS` each), and takes the
    median of each over all its blocks. The encoder runs on the same backend, threads and
    session options as the step (`latency.encoder_runner`).
    """
    from steering_agent.policy.latency import benchmark_latency, encoder_ms, encoder_runner

    blocks, calls = (1, 2) if quick else (BLOCKS, BLOCK_CALLS)
    runner = encoder_runner(pol.model, backend)
    steps, enc = [], []
    for _ in range(repeats):
        s_ms, e_ms = [], []
        for _ in range(blocks):
            s_ms.append(benchmark_latency(pol, 1, None, calls, warmup=2)["median_ms"])
            e_ms.append(encoder_ms(pol.model, backend, calls, warmup=2, runner=runner))
        steps.append(statistics.median(s_ms))
        enc.append(statistics.median(e_ms))
    name = f"inference encoder alone, batch 1, {backend}"
    params = {"batch": 1, "backend": backend, "blocks": blocks, "calls_per_block": calls}
    ratio = f"inference stateful step / encoder, batch 1, {backend}"
    step_ms = [round(v, 4) for v in steps]
    return [
        Measurement(name, "ms/step", enc, params),
        _ratio(ratio, steps, enc, "step / encoder", backend=backend, step_ms=step_ms),
    ]


def bench_ros(repeats: int, quick: bool, policy: str | None) -> list:
    """Node and DDS latency from steering_agent.ros.closed_loop (needs rclpy), 200x66 and
    800x600 measured in turn in each repeat, and their ratios. With two CPUs or more, each
    repeat also measures 800x600 with the camera and the agent pinned to one CPU each
    ("pinned" rows: as a deployment that gives the two processes cores of their own)."""
    from steering_agent.bench import _checkpoint_file, _latency_model, _median_of

    try:
        import rclpy  # noqa: F401
    except Exception as e:  # the wheels raise more than ImportError when libraries are missing
        return [Skipped("ros latency", f"rclpy is not importable ({e}); run `make setup`")]
    try:
        from steering_agent.ros.closed_loop import measure_dds_latency
    except ImportError as e:
        return [Skipped("ros latency", f"steering_agent.ros.closed_loop is not available: {e}")]
    try:
        model, _ = _latency_model(policy)
    except FileNotFoundError as e:
        return [Skipped("ros latency", str(e))]
    sizes = ((200, 66), (800, 600))
    frames = 20 if quick else 200
    own = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = (own[0], own[1]) if len(own) >= 2 else None
    runs_of = [(w, h, None) for w, h in sizes] + ([(800, 600, pin)] if pin else [])
    results: dict = {(w, h, c): [] for w, h, c in runs_of}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint_file(model, Path(tmp))
        for _ in range(repeats):
            for w, h, cpus in runs_of:
                try:
                    results[w, h, cpus].append(
                        measure_dds_latency(w, h, frames, checkpoint=ckpt, cpus=cpus)
                    )
                except RuntimeError as e:  # the agent process did not come up: say why
                    return [Skipped(f"ros {w}x{h}", f"{e}".strip().splitlines()[-1])]
    out, node, latency = [], {}, {}
    for (w, h, cpus), runs in results.items():
        key = (w, bool(cpus))
        tag = f"{w}x{h}" + (" pinned" if cpus else "")
        params = {"frames": frames, "lost": [r.get("lost") for r in runs]}
        params["p99_ms"] = [r["latency_ms"].get("p99") for r in runs]
        if cpus:
            params["cpus"] = {"camera": cpus[0], "agent": cpus[1]}
        latency[key] = [r["latency_ms"]["median"] for r in runs]
        out.append(Measurement(f"ros camera->control {tag}", "ms", latency[key], params))
        node[key] = [_median_of(r.get("agent", {}).get("total_ms")) for r in runs]
        if all(v is not None for v in node[key]):
            out.append(Measurement(f"ros node per-frame {tag}", "ms", node[key], params))
        else:
            node[key] = None
    if node[200, False] and node[800, False]:
        out.append(_ratio("ros node per-frame 800x600 / 200x66", node[800, False],
                          node[200, False], "node 800x600 / 200x66"))  # fmt: skip
        for w, h in sizes:
            goal = "camera->control / node 800x600" if w == 800 else None
            out.append(_ratio(f"ros camera->control / node per-frame {w}x{h}",
                              latency[w, False], node[w, False], goal))  # fmt: skip
    if node.get((800, True)):
        out.append(_ratio("ros camera->control / node per-frame 800x600 pinned",
                          latency[800, True], node[800, True], None))  # fmt: skip
    return out


class _PeakRss:
    """Peak resident memory of this process while the `with` block runs, sampled every
    2 ms from /proc (Linux; elsewhere `peak_mb` stays None)."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            rss = self._rss()
            if rss is not None and rss > self.peak:
                self.peak = rss

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def extra_bytes(self) -> int | None:
        return None if self.base is None else self.peak - self.base


def train_throughput(episodes, epochs: int = 1, batch: int = 16, seq_len: int = 16,
                     seed: int = 0, precision: str = "fp32") -> dict:  # fmt: skip
    """Frames per second of `steering_agent.training.train_epoch` (augmentation, forward,
    backward, optimiser step) on already prepared episodes, and the peak memory it adds;
    the model and the process set up as `training.train` sets them up (in-place ELUs,
    freed memory kept), at `precision` ("auto", "fp32", "bf16").

    Returns:
        dict(frames_per_s, frames, seconds, cpu_seconds (all threads of the process:
        steadier than the wall clock on a shared machine), steps, precision (resolved),
        peak_extra_mb,
        peak_bytes_per_frame: the added peak over the frames of one batch, batch * seq_len).
    """
    import numpy as np
    import torch

    from steering_agent.data.sequences import ChunkStream
    from steering_agent.policy.model import ModelConfig, SteeringNet
    from steering_agent.training import TrainConfig, train_epoch
    from steering_agent.training_loop import (
        fast_training_model,
        keep_freed_memory,
        resolve_precision,
    )

    cfg = TrainConfig(epochs=epochs, batch=batch, seq_len=seq_len, seed=seed)
    cfg = replace(cfg, precision=resolve_precision(precision, cfg.device))
    keep_freed_memory()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pre = cfg.preprocess
    model = SteeringNet(ModelConfig(arch=cfg.arch, height=pre.height, width=pre.width))
    model = fast_training_model(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    stream = ChunkStream(episodes, batch, seq_len, rng)
    with _PeakRss() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(epochs):
            train_epoch(model, opt, sched, stream, cfg, rng)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = len(stream) * epochs
    frames = steps * batch * seq_len
    extra = mem.extra_bytes
    return {
        "frames_per_s": frames / seconds,
        "frames": frames,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "steps": steps,
        "precision": cfg.precision,
        "peak_extra_mb": None if extra is None else extra / 2**20,
        "peak_bytes_per_frame": None if extra is None else extra / (batch * seq_len),
    }


def bench_train(repeats: int, quick: bool) -> list:
    """Training throughput on a small dataset recorded here (expert drives at 200x66,
    loaded and prepared with the training code's own functions), one epoch per run, at
    the default precision (fp32) and, where the CPU has native bf16, at bf16 too."""
    from steering_agent.data.dataset import load_episodes
    from steering_agent.data.recording import record_episodes
    from steering_agent.data.sequences import prepare
    from steering_agent.policy.threads import set_torch_threads
    from steering_agent.training import TrainConfig
    from steering_agent.training_loop import resolve_precision

    episodes, steps = (2, 80) if quick else (4, 400)
    batch, seq_len = (4, 8) if quick else (16, 16)
    with tempfile.TemporaryDirectory() as tmp:
        record_episodes(tmp, episodes, seed=0, max_steps=steps, progress=False)
        report = load_episodes(tmp)
    prepared = prepare(report.episodes, TrainConfig().preprocess)
    set_torch_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    # the default precision, and bf16 beside it where the CPU has it natively (interleaved)
    default = TrainConfig().precision
    precisions = [default]
    if default != "bf16" and resolve_precision("auto", TrainConfig().device) == "bf16":
        precisions.append("bf16")
    runs: dict[str, list] = {p: [] for p in precisions}
    for _ in range(repeats):
        for p in precisions:
            runs[p].append(train_throughput(prepared, 1, batch, seq_len, precision=p))
    out = []
    for p in precisions:
        out += _train_rows(runs[p], p == default, episodes=episodes, steps_per_episode=steps,
                           batch=batch, seq_len=seq_len)  # fmt: skip
    return out


def _train_rows(runs: list, default: bool, **params) -> list:
    precision = runs[0]["precision"]
    params = {**params, "frames_per_run": runs[0]["frames"], "size": "200x66",
              "precision": precision}  # fmt: skip
    label = "" if default else f", {precision}"
    fps = [r["frames_per_s"] for r in runs]
    out = [Measurement(f"train frames/s (train_epoch{label})", "frames/s", fps, params)]
    peak = [r["peak_bytes_per_frame"] for r in runs]
    if all(v is not None for v in peak):
        mem = {**params, "peak_extra_mb": [r["peak_extra_mb"] for r in runs]}
        kib = [v / 1024 for v in peak]
        name = f"train peak memory per frame of a batch{label}"
        out.append(Measurement(name, "KiB/frame", kib, mem))
    cpu = [r["frames"] / r["cpu_seconds"] for r in runs]
    name = f"train frames per CPU-second (train_epoch{label})"
    out.append(Measurement(name, "frames/cpu-s", cpu, params))
    return out
