"""The one-frame step of a SteeringNet replayed from CUDA graphs (the torch backend on a
GPU; `backends.TorchStepper(cuda_graphs=True)`, the default there).

A step is a few dozen small kernels (five convolutions, ELUs, the LSTM cell, the head);
at batch 1 launching them costs more than running them. `GraphStepper` records the
whole step once per batch size, with its buffers fixed: the uint8 NHWC frames go into
a static input tensor, the normalisation, encoder, LSTM cell (or frame stack) and head
run inside the graph, and the new state is written into the static state tensors in
place. Per frame: one copy of the frames in, one replay, one copy of the steering out.

Two graphs are recorded: one at the policy's batch size (all rows step) and one at batch
1 (a single row steps: its state is copied into the small graph's state and back). Any
other subset of rows runs the plain step on those rows. A reset zeroes rows of the state
outside the graphs. Recording follows PyTorch's recipe: a few warm-up runs on a side
stream, then `torch.cuda.graph`.

`precision` "fp16" or "bf16" runs the step under autocast (weights stay fp32); at
construction the step is compared with the fp32 step on a few random input sequences,
state carried, and refused (`ValueError`) if any output differs by more than `tol`
(1e-3 of the steering's [-1, 1]).

The graph itself is behind a small interface (`capture(fn)`, `replay()`): `CudaGraph`
records a real one; `EagerGraph` is a stand-in that calls the function on replay, so the
static-buffer logic runs and is tested on a machine without CUDA.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from steering_agent.policy.model import SteeringNet
from steering_agent.policy.preprocess import normalize

PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class CudaGraph:
    """A torch.cuda.CUDAGraph of `fn`, recorded after `warmup` runs on a side stream."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup = warmup
        self._graph = None

    def capture(self, fn) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            fn()

    def replay(self) -> None:
        self._graph.replay()


class EagerGraph:
    """Stand-in for `CudaGraph` on any device: "captures" by keeping `fn`, replays by
    calling it (the same static tensors, read and written in place)."""

    def __init__(self) -> None:
        self._fn = None

    def capture(self, fn) -> None:
        self._fn = fn

    def replay(self) -> None:
        self._fn()


class _Captured:
    """One recorded step at a fixed batch: static frames in, static state updated in
    place, static steering out."""

    def __init__(self, model: SteeringNet, batch: int, hw, device, dtype, graph) -> None:
        self.model, self.dtype = model, dtype
        self.frames = torch.zeros((batch, *hw, 3), dtype=torch.uint8, device=device)
        state = model.initial_state(batch, device)
        self.state = tuple(state) if state is not None else ()
        self.steer = torch.zeros(batch, dtype=torch.float32, device=device)
        self.graph = graph
        graph.capture(self._body)
        self.zero()  # the warm-up runs stepped the state

    @torch.inference_mode()
    def _body(self) -> None:
        x = normalize(self.frames.permute(0, 3, 1, 2))
        with _autocast(x.device, self.dtype):
            out, new = self.model.step(x, self.state or None)
        self.steer.copy_(out.float())
        for s, n in zip(self.state, new or (), strict=False):
            s.copy_(n.float())

    @torch.inference_mode()
    def zero(self, rows=slice(None)) -> None:
        for s in self.state:
            s[:, rows] = 0.0

    @torch.inference_mode()
    def step(self, frames_nhwc: np.ndarray) -> torch.Tensor:
        self.frames.copy_(torch.from_numpy(frames_nhwc))
        self.graph.replay()
        return self.steer


class GraphStepper:
    """The stateful step of `model` for `batch` streams from recorded graphs (module doc).

    Args:
        model: the network (eval mode, on `device`).
        device: where it runs (CUDA for `CudaGraph`).
        batch: streams (the batched policy's batch size).
        hw: (height, width) of the network input.
        precision: "fp32", "fp16" or "bf16" (autocast inside the graph).
        graph: a factory of graphs (`CudaGraph` by default; `EagerGraph` stands in).
        check_sequences, check_steps: random input sequences (and steps each, state
            carried) that a reduced precision is compared on against fp32.
        tol: the largest difference from fp32 accepted.

    Raises:
        ValueError: an unknown precision, or one whose outputs differ from fp32's by more
            than `tol` (the message gives the difference and the fix).
    """

    name = "torch (cuda graphs)"

    def __init__(self, model: SteeringNet, device, batch: int, hw, precision: str = "fp32",
                 graph=CudaGraph, check_sequences: int = 4, check_steps: int = 3,
                 tol: float = 1e-3) -> None:  # fmt: skip
        if precision not in PRECISIONS:
            raise ValueError(f"cuda graphs: precision {precision!r} is not one of {PRECISIONS}")
        self.model, self.device, self.batch, self.precision = model, device, batch, precision
        dtype = _DTYPES.get(precision)
        if dtype is not None:
            worst = reduced_precision_error(model, device, hw, dtype, check_sequences,
                                            check_steps)  # fmt: skip
            if worst > tol:
                raise ValueError(
                    f"cuda graphs: the {precision} step differs from fp32 by {worst:.2e} "
                    f"(> {tol:g}) on random inputs; use precision 'fp32'"
                )
        self._full = _Captured(model, batch, hw, device, dtype, graph())
        self._one = self._full if batch == 1 else _Captured(model, 1, hw, device, dtype, graph())
        self.state = self._full.state  # the streams' state: [slots, batch, ...] each

    @torch.inference_mode()
    def reset(self, rows) -> None:
        idx = rows if isinstance(rows, slice) else torch.as_tensor(rows, device=self.device)
        self._full.zero(idx)

    @torch.inference_mode()
    def run(self, frames_nhwc: np.ndarray, rows: np.ndarray, full: bool) -> np.ndarray:
        if full:
            out = self._full.step(frames_nhwc)
        elif len(rows) == 1:
            r = int(rows[0])
            for small, big in zip(self._one.state, self.state, strict=True):
                small.copy_(big[:, r : r + 1])
            out = self._one.step(frames_nhwc[:1])
            for small, big in zip(self._one.state, self.state, strict=True):
                big[:, r : r + 1] = small
        else:  # another subset of rows: the plain step on them
            out = self._subset(frames_nhwc, rows)
        return out.float().cpu().numpy().astype(np.float64)

    def _subset(self, frames_nhwc: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        x = normalize(torch.from_numpy(frames_nhwc).to(self.device).permute(0, 3, 1, 2))
        idx = torch.as_tensor(rows, device=self.device)
        sub = tuple(s[:, idx] for s in self.state) or None
        out, new = self.model.step(x, sub)
        for s, n in zip(self.state, new or (), strict=False):
            s[:, idx] = n
        return out


def _autocast(device: torch.device, dtype):
    """Autocast to `dtype` (None: none), without its weight cache (graphs need that)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


@torch.inference_mode()
def reduced_precision_error(model: SteeringNet, device, hw, dtype, sequences: int = 4,
                            steps: int = 3, seed: int = 0) -> float:  # fmt: skip
    """The largest |steer| difference between the step under `dtype` autocast and the fp32
    step, over `sequences` random uint8 frame sequences of `steps` frames (state carried)."""
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    device = torch.device(device)
    for _ in range(sequences):
        ref = low = None
        for _ in range(steps):
            frames = torch.randint(0, 256, (1, 3, *hw), generator=gen, dtype=torch.uint8)
            x = normalize(frames.to(device))
            want, ref = model.step(x, ref)
            with _autocast(device, dtype):
                got, low = model.step(x, low)
            low = None if low is None else tuple(s.float() for s in low)
            worst = max(worst, float((got.float() - want).abs().max()))
    return worst
