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
import copy
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
    """One policy step of `cnn_stack`: uint8 NHWC frames + past frames -> steer [B] + state.

    The normalisation (`preprocess.normalize`, x / 127.5 - 1) runs inside the graph, so the
    caller hands over OpenCV's output as it is (the state keeps normalised frames).
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


def _interleaved_first_conv(conv: nn.Conv2d) -> nn.Conv2d | None:
    """`conv` (no padding) as a one-channel convolution over raw uint8 NHWC rows.

    conv(x / 127.5 - 1) on [B, C, H, W] equals, term by term, a convolution of the raw
    pixels laid out as they come, one channel [B, 1, H, W * C] (each row's pixels with
    their channels interleaved): kernel (kh, kw * C), stride (sh, sw * C), weights
    W / 127.5 interleaved the same way, bias b - sum(W). So the graph needs no
    transpose and no normalisation: a Cast of the frame is all that precedes it. None
    where that does not hold (padding, dilation, groups).
    """
    if conv.padding != (0, 0) or conv.dilation != (1, 1) or conv.groups != 1:
        return None
    w = conv.weight.detach().double()
    out_c, c, kh, kw = w.shape
    bias = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(out_c)
    sh, sw = conv.stride
    new = nn.Conv2d(1, out_c, (kh, kw * c), stride=(sh, sw * c))
    with torch.no_grad():
        new.weight.copy_((w / 127.5).permute(0, 2, 3, 1).reshape(out_c, 1, kh, kw * c).float())
        new.bias.copy_((bias - w.sum(dim=(1, 2, 3))).float())
    return new.eval()


class _FastStepGraph(nn.Module):
    """One policy step of `cnn_lstm` and `cnn`: uint8 NHWC frames (+ h0, c0) -> steer [B]
    (+ hn, cn), with the fewest nodes beyond the encoder's own.

    A copy of the weights, rearranged (the outputs are the same up to float rounding):
    the first convolution reads the raw frame (`_interleaved_first_conv`: no transpose, no
    normalisation nodes), and the LSTM is ONNX's one LSTM node per layer (a time-major
    copy of `model.lstm`, one time step) instead of the cell's two dozen element-wise
    nodes. Each node costs onnxruntime a dispatch, and every one large enough to be split
    across the intra-op threads a wake-up of those threads.
    """

    def __init__(self, model: SteeringNet, first: nn.Conv2d) -> None:
        super().__init__()
        cfg = model.cfg
        self.hwc = (cfg.height, cfg.width * cfg.in_channels)
        self.first = first
        self.rest = copy.deepcopy(nn.Sequential(*list(model.encoder.convs)[1:], model.encoder.fc))
        self.head = copy.deepcopy(model.head)
        self.temporal = None if model.recurrent else copy.deepcopy(model.temporal)
        self.lstm = None
        if model.recurrent:
            src = model.lstm
            self.lstm = nn.LSTM(src.input_size, src.hidden_size, num_layers=src.num_layers)
            self.lstm.load_state_dict(src.state_dict())
        self.eval()

    def forward(self, frames, *state):
        x = frames.reshape(-1, 1, *self.hwc).to(torch.float32)
        feats = self.rest(self.first(x))
        if self.lstm is None:
            return self.head(self.temporal(feats)).squeeze(-1)
        y, (hn, cn) = self.lstm(feats.unsqueeze(0), tuple(state))
        return self.head(y[0]).squeeze(-1), hn, cn


def _step_wrapper(model: SteeringNet) -> nn.Module:
    if not model.stacked and model.cfg.in_channels == model.cfg.encoder_channels:
        first = _interleaved_first_conv(model.encoder.convs[0])
        if first is not None:
            return _FastStepGraph(model, first)
    return _StepGraph(model)


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
    `steer` [B], and the new state (`hn`, `cn` or `stackn`). B is dynamic. For `cnn_lstm`
    and `cnn` the graph is `_FastStepGraph` (the first convolution on the raw frame, one
    LSTM node; the same outputs to float rounding), for `cnn_stack` `_StepGraph`.
    """
    model = model.eval()
    cfg = model.cfg
    frames = torch.zeros(1, cfg.height, cfg.width, cfg.in_channels, dtype=torch.uint8)
    dyn = {"frames": {0: "batch"}, "steer": {0: "batch"}}
    buf = io.BytesIO()
    wrapper = _step_wrapper(model)
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
