"""`steering-agent export-onnx`: a checkpoint as ONNX, with the state as explicit I/O.

Graph inputs: `frames` float32 [B, T, 3, H, W] (normalised, `preprocess.normalize`),
and the state: for `cnn_lstm` `h0`, `c0` [layers, B, hidden], for `cnn_stack` `stack0`
[stack - 1, B, 3 * H * W] (the past frames, `model.SteeringNet`). Outputs: `steer`
[B, T], and the state after the last frame: `hn`, `cn` or `stackn`. Batch and time are
dynamic. The export is checked against
PyTorch with onnxruntime over a few steps with the state fed back (max abs diff).
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from steering_agent.common.extras import require
from steering_agent.policy.checkpoint import load_checkpoint
from steering_agent.policy.model import SteeringNet


class _ExplicitState(nn.Module):
    """forward(frames, *state) -> (steer, *new_state): ONNX wants flat tensors, not tuples."""

    def __init__(self, model: SteeringNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames, *state):
        steer, new = self.model(frames, tuple(state))
        return (steer, *new)


class _Stateless(nn.Module):
    def __init__(self, model: SteeringNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames):
        return self.model(frames, None)[0]


class _StepGraph(nn.Module):
    """One policy step: uint8 NHWC frames (+ state) -> steer [B] (+ state).

    The normalisation (`preprocess.normalize`, x / 127.5 - 1) runs inside the graph, so the
    caller hands over OpenCV's output as it is.
    """

    def __init__(self, model: SteeringNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames, *state):
        x = frames.permute(0, 3, 1, 2).to(torch.float32).div(127.5).sub(1.0)
        if not state:
            return self.model.step(x, None)[0]
        steer, new = self.model.step(x, tuple(state))
        return (steer, *new)


def state_io_names(model: SteeringNet) -> tuple[list[str], list[str]]:
    """The graph's state inputs and outputs: (["h0", "c0"], ["hn", "cn"]) for `cnn_lstm`,
    (["stack0"], ["stackn"]) for `cnn_stack`, ([], []) for `cnn`."""
    names = model.state_names
    return [f"{n}0" for n in names], [f"{n}n" for n in names]


def zero_state_feeds(model: SteeringNet, batch: int) -> dict[str, np.ndarray]:
    """onnxruntime feeds of the initial (zero) state for `batch` streams."""
    ins, _ = state_io_names(model)
    return {n: np.zeros(s, np.float32) for n, s in zip(ins, model.state_shapes(batch), strict=True)}


def _export(wrapper: nn.Module, args: tuple, names_in, names_out, dyn, target) -> None:
    # torch's TorchScript-based exporter writes the graph with the onnx package.
    require("onnx", "exporting to ONNX", ("onnx",))
    # The exporter restores the wrapper's mode afterwards: a fresh wrapper is in training
    # mode, which would leave the model (dropout on) in training mode too.
    wrapper.eval()
    with warnings.catch_warnings():
        # The TorchScript-based exporter announces its own deprecation on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # nn.LSTM's shape checks become constants in the trace: right for fixed weights.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The LSTM batch-size caveat does not apply: the state is a graph input.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(
            wrapper,
            args,
            target,
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=dyn,
            opset_version=17,
            dynamo=False,
        )


def _sequence_export_args(model: SteeringNet, seq_len: int):
    cfg = model.cfg
    frames = torch.zeros(1, seq_len, cfg.in_channels, cfg.height, cfg.width)
    dyn = {"frames": {0: "batch", 1: "time"}, "steer": {0: "batch", 1: "time"}}
    state = model.initial_state(1)
    if state is not None:
        ins, outs = state_io_names(model)
        for n in ins + outs:
            dyn[n] = {1: "batch"}
        return _ExplicitState(model), (frames, *state), ["frames", *ins], ["steer", *outs], dyn
    return _Stateless(model), (frames,), ["frames"], ["steer"], dyn


def export_onnx(model: SteeringNet, path: str | Path, seq_len: int = 4) -> Path:
    """Write `model` to `path` as ONNX (legacy TorchScript exporter, opset 17)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    _export(*_sequence_export_args(model, seq_len), str(path))
    return path


def sequence_graph_bytes(model: SteeringNet, seq_len: int = 4) -> bytes:
    """The graph of `export_onnx`, in memory (model on the CPU)."""
    buf = io.BytesIO()
    _export(*_sequence_export_args(model.eval(), seq_len), buf)
    return buf.getvalue()


def step_graph_bytes(model: SteeringNet) -> bytes:
    """The per-frame graph of the onnxruntime backend, in memory (model on the CPU).

    Inputs: `frames` uint8 [B, H, W, 3] (preprocessed, not normalised), and the state
    (`state_io_names`: `h0`, `c0` for `cnn_lstm`, `stack0` for `cnn_stack`). Outputs:
    `steer` [B], and the new state (`hn`, `cn` or `stackn`). B is dynamic.
    """
    model = model.eval()
    cfg = model.cfg
    frames = torch.zeros(1, cfg.height, cfg.width, cfg.in_channels, dtype=torch.uint8)
    dyn = {"frames": {0: "batch"}, "steer": {0: "batch"}}
    buf = io.BytesIO()
    wrapper = _StepGraph(model)
    state = model.initial_state(1)
    if state is not None:
        ins, outs = state_io_names(model)
        for n in ins + outs:
            dyn[n] = {1: "batch"}
        _export(wrapper, (frames, *state), ["frames", *ins], ["steer", *outs], dyn, buf)
    else:
        _export(wrapper, (frames,), ["frames"], ["steer"], dyn, buf)
    return buf.getvalue()


def compare_with_torch(
    model: SteeringNet,
    path: str | Path,
    batch: int = 2,
    steps: int = 3,
    seq_len: int = 5,
    seed: int = 0,
) -> float:
    """Max abs difference of steer (and state) between onnxruntime and PyTorch."""
    require("onnx", "the onnxruntime check", ("onnxruntime",))
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    state = model.initial_state(batch)
    ort_state = None if state is None else [s.numpy() for s in state]
    ins, _ = state_io_names(model)
    diff = 0.0
    with torch.inference_mode():
        for _ in range(steps):  # several calls: the fed-back state must agree too
            x = torch.rand(batch, seq_len, cfg.in_channels, cfg.height, cfg.width, generator=gen)
            x = x * 2 - 1
            ref, state = model(x, state)
            feeds = {"frames": x.numpy()}
            if ort_state is not None:
                feeds.update(zip(ins, ort_state, strict=True))
            outs = sess.run(None, feeds)
            diff = max(diff, float(np.abs(outs[0] - ref.numpy()).max()))
            if state is not None:
                ort_state = outs[1:]
                for o, s in zip(ort_state, state, strict=True):
                    diff = max(diff, float(np.abs(o - s.numpy()).max()))
    return diff


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default=None, help="default: the shipped checkpoints/cnn_lstm.pt"
    )
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")


def run(args: argparse.Namespace) -> int:
    """Checks the extra, --out and the checkpoint before any work. A user's mistake
    raises one of `cli_args.user_errors` (one line, exit 2, from `steering_agent.cli`)."""
    from steering_agent.common import cli_args
    from steering_agent.common.package_files import shipped_checkpoint

    # the export needs onnx, its check onnxruntime (the `onnx` extra)
    require("onnx", "export-onnx", ("onnx",) if args.no_check else None)
    out = cli_args.writable_file(args.out, "--out")
    ckpt = load_checkpoint(args.checkpoint or shipped_checkpoint(), option="--checkpoint")
    model = ckpt.build_model("cpu")
    path = export_onnx(model, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, arch {ckpt.model_config.arch})")
    if not args.no_check:
        diff = compare_with_torch(model, path)
        print(f"onnxruntime vs PyTorch: max abs diff {diff:.2e}")
        if diff > 1e-4:
            print("error: the ONNX model disagrees with PyTorch", file=sys.stderr)
            return 1
    return 0
