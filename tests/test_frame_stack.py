"""The frame-stack CNN (`arch="cnn_stack"`): a window of the last k frames, carried as a
state so that training, the steppers, the batched policy and ONNX treat it like the
LSTM's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steering_agent.policy.checkpoint import load_checkpoint, save_checkpoint
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.policy import BatchedSteeringPolicy
from steering_agent.policy.preprocess import PreprocessConfig, normalize, preprocess_frames
from steering_agent.training import _reset_rows

PRE = PreprocessConfig()


def _model(stack=4, seed=0):
    torch.manual_seed(seed)
    return SteeringNet(ModelConfig(arch="cnn_stack", stack=stack)).eval()


def _frames(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, 66, 200, generator=g) * 2 - 1


@torch.inference_mode()
def _windowed(model, x):
    """Reference: every window built by hand (first frame repeated at the start)."""
    k, t = model.cfg.stack, x.shape[1]
    padded = torch.cat([x[:, :1].expand(-1, k - 1, -1, -1, -1), x], 1)
    out = []
    for i in range(t):
        win = padded[:, i : i + k].reshape(x.shape[0], -1, 66, 200)
        out.append(model.head(model.temporal(model.encoder(win))).squeeze(-1))
    return torch.stack(out, 1)


@pytest.mark.parametrize("stack", [2, 4])
@torch.inference_mode()
def test_forward_is_the_hand_built_window_and_stepping_equals_it(stack):
    model, x = _model(stack), _frames(2, 7)
    full, state = model(x, None)
    torch.testing.assert_close(full, _windowed(model, x), atol=1e-5, rtol=0)
    # the state is the last k - 1 frames
    want = x[:, -(stack - 1) :].reshape(2, stack - 1, -1).transpose(0, 1)
    torch.testing.assert_close(state[0], want, atol=0, rtol=0)
    # frame by frame, and in chunks with the state carried, give the same outputs
    s, steps = None, []
    for t in range(x.shape[1]):
        o, s = model.step(x[:, t], s)
        steps.append(o)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=0)
    a, s = model(x[:, :2], model.initial_state(2))
    b, _ = model(x[:, 2:], s)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=0)


@torch.inference_mode()
def test_the_window_matters_and_a_zeroed_row_starts_afresh():
    model, x = _model(), _frames(2, 6)
    _, state = model(x[:, :5], None)
    carried, _ = model(x[:, 5:], state)
    fresh, _ = model(x[:, 5:], None)
    assert (carried - fresh).abs().min() > 1e-5  # the past frames change the output
    # training's truncated BPTT zeroes the rows that start an episode (unchanged code)
    kept = _reset_rows(state, np.array([True, False]))
    out, _ = model(x[:, 5:], kept)
    torch.testing.assert_close(out[0], fresh[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], carried[1], atol=1e-6, rtol=0)


def test_training_step_backpropagates_through_the_window():
    torch.manual_seed(0)
    model = SteeringNet(ModelConfig(arch="cnn_stack", dropout=0.0))
    x = torch.randn(1, 5, 3, 66, 200, requires_grad=True)
    steer, state = model(x, None)
    steer[0, -1].backward()
    assert x.grad[0, 1].abs().sum() > 0  # the last output sees the frame 3 steps back
    assert x.grad[0, 0].abs().sum() == 0  # ... but not 4 steps back (k = 4)
    assert all(not s.requires_grad for s in _reset_rows(state, np.array([False])))


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 66, 200, 3), dtype=np.uint8)


@torch.inference_mode()
def _forward(model, images):
    return model(normalize(preprocess_frames(images, PRE))[None], None)[0][0].numpy()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_batched_policy_carries_and_resets_the_window_per_row(backend):
    model, images = _model(), _images(14).reshape(7, 2, 66, 200, 3)
    p = BatchedSteeringPolicy(model, PRE, batch_size=2, device="cpu", backend=backend)
    out = [p.step(images[i], [i * 0.05] * 2)[:, 0] for i in range(5)]
    for k in range(2):
        np.testing.assert_allclose([o[k] for o in out], _forward(model, images[:5, k]), atol=1e-5)
    p.reset([0])  # row 0 forgets its window, row 1 keeps it
    after = p.step(images[5], [0.25] * 2)[:, 0]
    np.testing.assert_allclose(after[0], _forward(model, images[5:6, 0])[0], atol=1e-5)
    np.testing.assert_allclose(after[1], _forward(model, images[:6, 1])[-1], atol=1e-5)
    # an inactive row keeps its window: its next frame continues from it
    p.step(images[6], [0.3] * 2, active=np.array([False, True]))
    last = p.step(images[6], [0.35] * 2)[:, 0]
    seq0 = images[5:7, 0]
    np.testing.assert_allclose(last[0], _forward(model, seq0)[-1], atol=1e-5)


def test_checkpoints_round_trip_and_old_configs_are_unchanged(tmp_path):
    model = _model(stack=3)
    path = save_checkpoint(tmp_path / "s.pt", model, model.cfg, PRE)
    ckpt = load_checkpoint(path)
    assert ckpt.model_config == model.cfg and ckpt.model_config.stack == 3
    x = _frames(1, 4)
    with torch.inference_mode():
        torch.testing.assert_close(ckpt.build_model()(x)[0], model(x)[0], atol=0, rtol=0)
    # cnn and cnn_lstm write and read the configs they always did (no `stack` key)
    for arch in ("cnn", "cnn_lstm"):
        cfg = ModelConfig(arch=arch)
        assert "stack" not in cfg.to_dict()
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="stack"):
        ModelConfig(arch="cnn_stack", stack=1)


@pytest.mark.parametrize("name", ["cnn.pt", "cnn_lstm.pt"])
def test_shipped_checkpoints_still_load_and_step(name):
    from steering_agent.common.package_files import shipped_checkpoint

    path = shipped_checkpoint().parent / name
    if not path.is_file():
        pytest.skip(f"{path} is not shipped here")
    ckpt = load_checkpoint(path)
    assert ckpt.model_config.arch == name[:-3]
    p = BatchedSteeringPolicy.from_checkpoint(ckpt, 1, "cpu", backend="torch")
    assert np.isfinite(p.step(_images(1), [0.0])).all()
