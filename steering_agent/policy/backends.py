"""Who runs the network per frame: PyTorch on any device, or ONNX Runtime on the CPU.

A stepper holds the state of B streams (the LSTM's (h, c), the frame stack's past
frames; `SteeringNet.state_shapes`, batch on dim 1) and runs one frame per stream.
"""

from __future__ import annotations

import numpy as np
import torch

from steering_agent.policy.model import SteeringNet, lean_step
from steering_agent.policy.preprocess import normalize


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


BACKENDS = ("auto", "torch", "onnxruntime")


def onnxruntime_available() -> bool:
    """Whether the onnxruntime backend can run here: it needs onnxruntime and onnx (the
    graph is exported with torch.onnx, which needs onnx); found, not imported."""
    from steering_agent.common.extras import missing_modules

    return not missing_modules("onnx")


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


class TorchStepper:
    """The network stepped by PyTorch on any device; the state lives on the device.

    On CUDA the step is replayed from CUDA graphs (`cuda_graphs`, default on there;
    `steering_agent.policy.cuda_graphs.GraphStepper`), at `precision` "fp32" (default),
    "fp16" or "bf16" (autocast, refused where it moves the output by more than 1e-3 of
    fp32's on random inputs). Elsewhere the step runs eagerly (fp32), through
    `model.lean_step` (the same kernels with less Python around the LSTM and head).
    """

    name = "torch"

    def __init__(self, model: SteeringNet, device: torch.device, batch: int, hw,
                 cuda_graphs: bool | None = None, precision: str = "fp32") -> None:  # fmt: skip
        self.device = device
        self.model = model
        self._graphs = None
        if cuda_graphs is None:
            cuda_graphs = device.type == "cuda"
        if cuda_graphs:
            if device.type != "cuda":
                raise ValueError(f"cuda_graphs: needs a CUDA device, not {device}")
            from steering_agent.policy.cuda_graphs import GraphStepper

            self._graphs = GraphStepper(model, device, batch, hw, precision=precision)
            self.name = "torch (cuda graphs)"
            return
        if precision != "fp32":
            raise ValueError(f"precision {precision!r}: only with cuda_graphs on a GPU")
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
        # after the memory-format change above: the lean step holds the parameters
        self._step = lean_step(model)
        # (frames array last run, its NCHW tensor view, the input rows it fills): the
        # array is held, so the same object is the same memory
        self._views: tuple = (None, None, None)

    @torch.inference_mode()
    def reset(self, rows) -> None:
        if self._graphs is not None:
            self._graphs.reset(rows)
        elif self._state is not None:
            idx = rows if isinstance(rows, slice) else torch.as_tensor(rows, device=self.device)
            for s in self._state:
                s[:, idx] = 0.0

    @torch.inference_mode()
    def run(self, frames_nhwc: np.ndarray, rows: np.ndarray, full: bool) -> np.ndarray:
        if self._graphs is not None:
            return self._graphs.run(frames_nhwc, rows, full)
        if frames_nhwc is not self._views[0]:  # the policy passes one array: views made once
            n = frames_nhwc.shape[0]
            src = torch.from_numpy(frames_nhwc).permute(0, 3, 1, 2)
            self._views = (frames_nhwc, src, self._input[:n])
        x = normalize(self._views[1], out=self._views[2])
        if self._state is None or full:
            out, new_state = self._step(x, self._state)
            if new_state is not None:
                self._state = new_state
        else:
            idx = torch.as_tensor(rows, device=self.device)
            sub = tuple(s[:, idx] for s in self._state)
            out, new_sub = self._step(x, sub)
            for s, new in zip(self._state, new_sub, strict=True):
                s[:, idx] = new
        return out.float().cpu().numpy().astype(np.float64)


class OrtStepper:
    """The network stepped by ONNX Runtime on the CPU; the state lives in numpy.

    It runs the graph of `onnx_export.step_graph_bytes` (uint8 frames in as OpenCV writes
    them, normalisation inside), built from the weights as they are at construction.

    A step of all B streams runs through IO bindings made once: the frame buffer, the
    state and the output are preallocated numpy arrays bound by address, and the state
    is double-buffered (the graph reads one pair and writes the other; they swap after
    the run), so a step builds no feed dict, wraps and allocates no tensor and copies no
    state. A step of some of the streams gathers their rows and runs with feeds.
    """

    name = "onnxruntime"

    def __init__(self, model: SteeringNet, batch: int, threads: int) -> None:
        from steering_agent.policy.onnx_export import state_io_names, step_graph_bytes

        self._sess = ort_cpu_session(step_graph_bytes(model), threads)
        self._inputs, self._outputs = state_io_names(model)
        shapes = model.state_shapes(batch)
        # two sets of state buffers: self._state is the current one
        self._buffers = [[np.zeros(shape, np.float32) for shape in shapes] for _ in range(2)]
        self._cur = 0
        self._state = self._buffers[0]
        self._steer = np.zeros(batch, np.float32)
        self._batch = batch
        self._bound: np.ndarray | None = None  # the frames array the bindings point at
        self._bindings = []
        for k in range(2):
            binding = self._sess.io_binding()
            for name, buf in zip(self._inputs, self._buffers[k], strict=True):
                bind_cpu_array(binding, name, buf, output=False)
            for name, buf in zip(self._outputs, self._buffers[1 - k], strict=True):
                bind_cpu_array(binding, name, buf, output=True)
            bind_cpu_array(binding, "steer", self._steer, output=True)
            self._bindings.append(binding)

    def reset(self, rows) -> None:
        for s in self._state:
            s[:, rows] = 0.0

    def _bind_frames(self, frames: np.ndarray) -> None:
        for binding in self._bindings:
            bind_cpu_array(binding, "frames", frames, output=False)
        self._bound = frames

    def run(self, frames_nhwc: np.ndarray, rows: np.ndarray, full: bool) -> np.ndarray:
        if full and frames_nhwc.shape[0] == self._batch:
            if frames_nhwc is not self._bound:
                bound = self._bound
                same = (
                    bound is not None
                    and frames_nhwc.ctypes.data == bound.ctypes.data
                    and frames_nhwc.shape == bound.shape
                    and frames_nhwc.strides == bound.strides
                )
                if not same:
                    frames = frames_nhwc
                    if frames.dtype != np.uint8 or not frames.flags.c_contiguous:
                        frames = np.ascontiguousarray(frames, dtype=np.uint8)
                    self._bind_frames(frames)
                    if frames is not frames_nhwc:  # a copy: bound for this call only
                        self._bound = None
            self._sess.run_with_iobinding(self._bindings[self._cur])
            if self._state:
                self._cur ^= 1
                self._state = self._buffers[self._cur]
            return self._steer.astype(np.float64)
        feeds = {"frames": frames_nhwc}
        if not self._state:
            return self._sess.run(None, feeds)[0].astype(np.float64)
        feeds.update((n, s[:, rows]) for n, s in zip(self._inputs, self._state, strict=True))
        steer, *new = self._sess.run(None, feeds)
        for s, n in zip(self._state, new, strict=True):
            s[:, rows] = n
        return steer.astype(np.float64)


def bind_cpu_array(binding, name: str, array: np.ndarray, output: bool) -> None:
    """Bind a C-contiguous CPU numpy array by address (no copy; the caller keeps it
    alive for as long as the binding is used)."""
    args = (name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)
    (binding.bind_output if output else binding.bind_input)(*args)
