"""The lean per-frame path of the onnxruntime backend (issue 20, item 3): its graph (first
convolution on the raw frame, ONNX's LSTM node), its IO bindings (double-buffered
state, the frame buffer bound once), and the same outputs as the PyTorch reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from steering_agent.policy.backends import OrtStepper, TorchStepper
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.onnx_export import _interleaved_first_conv, step_graph_bytes
from steering_agent.policy.policy import BatchedSteeringPolicy, SteeringPolicy
from steering_agent.policy.preprocess import PreprocessConfig, normalize

HW = (66, 200)
PRE = PreprocessConfig(height=HW[0], width=HW[1])


def _model(arch: str = "cnn_lstm", seed: int = 0, **kw) -> SteeringNet:
    torch.manual_seed(seed)
    return SteeringNet(ModelConfig(arch=arch, **kw)).eval()


def _frames(n: int, seed: int = 0, batch: int | None = None) -> np.ndarray:
    shape = (n, *HW, 3) if batch is None else (n, batch, *HW, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_interleaved_first_conv_is_the_conv_of_normalised_frames():
    conv = _model().encoder.convs[0]
    u8 = torch.from_numpy(_frames(2, seed=3))  # [B, H, W, 3] as the camera gives it
    with torch.no_grad():
        want = conv(normalize(u8.permute(0, 3, 1, 2).contiguous()))
        got = _interleaved_first_conv(conv)(u8.reshape(2, 1, HW[0], -1).float())
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    padded = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert _interleaved_first_conv(padded) is None  # padding: zeros differ once normalised


@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn"])
def test_step_graph_has_no_nodes_beyond_the_network(arch):
    ops = [n.op_type for n in onnx.load_from_string(step_graph_bytes(_model(arch))).graph.node]
    assert not {"Transpose", "Div", "Sub", "Sigmoid", "Slice"} & set(ops)
    assert ops.count("Conv") == 5
    assert ops.count("LSTM") == (1 if arch == "cnn_lstm" else 0)


def test_two_layer_lstm_step_graph_matches_torch():
    model = _model(lstm_layers=2, seed=4)
    stepper = OrtStepper(model, 2, threads=1)
    reference = TorchStepper(model, torch.device("cpu"), 2, HW)
    rows = np.arange(2)
    for frames in _frames(4, seed=5, batch=2):
        np.testing.assert_allclose(
            stepper.run(frames, rows, True), reference.run(frames, rows, True), atol=1e-5
        )


@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn", "cnn_stack"])
def test_ort_step_matches_torch_over_resets_and_gaps(arch):
    """Control by control, the onnxruntime policy equals the PyTorch one over a sequence
    with an explicit reset, a time jump (a reset of its own) and a frame of another size
    (crop and resize before the network)."""
    model = _model(arch, seed=1)
    images = _frames(14, seed=2)
    big = np.random.default_rng(9).integers(0, 256, (132, 400, 3), dtype=np.uint8)
    out = {}
    for backend in ("torch", "onnxruntime"):
        policy = SteeringPolicy(model, PRE, device="cpu", backend=backend)
        assert policy.backend == backend
        controls, t = [], 0.0
        for k, image in enumerate(images):
            if k == 5:
                policy.reset()
            t += 2.0 if k == 9 else 0.05  # k == 9: a gap past max_gap_s
            frame = big if k == 11 else image
            c = policy.step(frame, t, 4.0 + 0.1 * k)
            controls.append((c.steer, c.throttle, c.brake))
        out[backend] = np.array(controls)
    np.testing.assert_allclose(out["onnxruntime"], out["torch"], atol=1e-5)
    steer = out["torch"][:, 0]
    # the state matters: the frames after the reset differ from a carried-on run
    assert np.ptp(steer) > 1e-4


def test_batched_ort_step_with_inactive_streams_matches_torch():
    """Full steps (IO bindings, swapped state buffers) and partial ones (feeds with the
    gathered rows) interleaved, with a reset of one stream: the same as PyTorch."""
    model = _model(seed=6)
    images = _frames(10, seed=7, batch=3)
    masks = [None, None, [True, False, True], None, [False, True, False], None,
             [True, True, False], None, None, None]  # fmt: skip
    out = {}
    for backend in ("torch", "onnxruntime"):
        policy = BatchedSteeringPolicy(model, PRE, 3, "cpu", backend=backend)
        acts = []
        for k, (frames, mask) in enumerate(zip(images, masks, strict=True)):
            if k == 7:
                policy.reset([1])
            acts.append(policy.step(frames, np.full(3, 0.05 * k), np.full(3, 5.0), mask))
        out[backend] = np.array(acts)
    np.testing.assert_allclose(out["onnxruntime"], out["torch"], atol=1e-5)


def test_ort_stepper_rebinds_a_new_frame_array():
    """The frame buffer is bound by address: another array (or the same one refilled)
    must be what the next step reads."""
    model = _model(seed=8)
    a, b = _frames(1, seed=10), _frames(1, seed=11)
    rows = np.zeros(1, np.int64)
    want = TorchStepper(model, torch.device("cpu"), 1, HW)
    got = OrtStepper(model, 1, threads=1)
    buf = a.copy()
    for frames in (a, b, a, buf, b[:, :, :, :]):
        np.testing.assert_allclose(got.run(frames, rows, True), want.run(frames, rows, True),
                                   atol=1e-5)  # fmt: skip
    buf[:] = b  # refilled in place: the bound buffer's new content is read
    np.testing.assert_allclose(got.run(buf, rows, True), want.run(buf, rows, True), atol=1e-5)
    strided = np.ascontiguousarray(np.concatenate([a, b], axis=2))[:, :, ::2]  # not contiguous
    np.testing.assert_allclose(got.run(strided, rows, True), want.run(strided, rows, True),
                               atol=1e-5)  # fmt: skip


def test_encoder_runner_output_is_the_encoder():
    from steering_agent.policy.latency import encoder_runner

    model = _model(seed=12)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, *HW)).astype(np.float32)
    once = encoder_runner(model, "onnxruntime")
    once(x)
    with torch.no_grad():
        want = model.encoder(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(once.output, want, atol=1e-5)
