from __future__ import annotations

import pytest
import torch

from steering_agent.policy.model import ARCHS, ModelConfig, SteeringNet, count_parameters


@pytest.fixture(params=ARCHS)
def model(request):
    torch.manual_seed(0)
    return SteeringNet(ModelConfig(arch=request.param)).eval()


def test_shapes_and_range(model):
    x = torch.randn(2, 5, 3, 66, 200) * 3
    steer, state = model(x, None)
    assert steer.shape == (2, 5)
    assert steer.abs().max() <= 1.0
    if model.recurrent:
        assert state[0].shape == (1, 2, 64) and state[1].shape == (1, 2, 64)
    elif model.stacked:  # the last stack - 1 frames, [slots, batch, features] like (h, c)
        assert len(state) == 1 and state[0].shape == (3, 2, 3 * 66 * 200)
    else:
        assert state is None


def test_parameter_budget_and_fair_comparison():
    n = {a: count_parameters(SteeringNet(ModelConfig(arch=a))) for a in ARCHS}
    assert all(1e5 < v < 1e6 for v in n.values()), n  # "a few hundred thousand"
    assert abs(n["cnn_lstm"] - n["cnn"]) < 0.2 * n["cnn"]  # same encoder, similar head
    # the frame stack only widens the first convolution: 24 x 3 (k - 1) x 5 x 5 more
    assert n["cnn_stack"] - n["cnn"] == 24 * 3 * (ModelConfig().stack - 1) * 25


@torch.inference_mode()
def test_chunked_forward_equals_one_forward(model):
    x = torch.randn(2, 8, 3, 66, 200)
    full, _ = model(x, None)
    a, state = model(x[:, :3], model.initial_state(2))
    b, _ = model(x[:, 3:], state)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=0)


@torch.inference_mode()
def test_lstm_state_changes_the_output():
    torch.manual_seed(0)
    model = SteeringNet(ModelConfig(arch="cnn_lstm")).eval()
    x = torch.randn(1, 1, 3, 66, 200)
    _, state = model(torch.randn(1, 10, 3, 66, 200), None)
    with_past, _ = model(x, state)
    fresh, _ = model(x, None)
    assert (with_past - fresh).abs().max() > 1e-4


def test_unknown_arch_is_rejected():
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="transformer")


def test_gradients_flow_through_time():
    torch.manual_seed(0)
    model = SteeringNet(ModelConfig(arch="cnn_lstm", dropout=0.0))
    x = torch.randn(1, 4, 3, 66, 200, requires_grad=True)
    steer, _ = model(x, None)
    steer[0, -1].backward()
    assert x.grad[0, 0].abs().sum() > 0  # the last output depends on the first frame


def _two_layer_lstm():
    torch.manual_seed(1)
    return SteeringNet(ModelConfig(arch="cnn_lstm", lstm_layers=2)).eval()


@pytest.mark.parametrize("variant", ["fixture", "two LSTM layers"])
@torch.inference_mode()
def test_lean_step_gives_the_models_step_exactly(model, variant):
    """`lean_step` (the policy's CPU path) runs the same kernels as `SteeringNet.step`:
    bit-identical outputs and states, from no state and along a sequence."""
    from steering_agent.policy.model import lean_step

    if variant == "two LSTM layers":  # once per arch of the fixture: the same model
        model = _two_layer_lstm()
    lean = lean_step(model)
    frames = torch.randn(6, 2, 3, 66, 200)
    ref_state = lean_state = None
    for t in range(frames.shape[0]):
        ref, ref_state = model.step(frames[t], ref_state)
        got, lean_state = lean(frames[t], lean_state)
        assert torch.equal(got, ref)
        if ref_state is None:
            assert lean_state is None
        else:
            assert all(torch.equal(a, b) for a, b in zip(lean_state, ref_state, strict=True))
    # it reads the model's parameters: a change made in place shows in its output
    before = lean(frames[0], lean_state)[0]
    with torch.no_grad():
        model.head[-2].bias.add_(0.5)
    assert not torch.equal(lean(frames[0], lean_state)[0], before)
    assert torch.equal(lean(frames[0], lean_state)[0], model.step(frames[0], ref_state)[0])


def test_lean_step_leaves_the_encoders_features_alone():
    """ELU runs in place only on a Linear's own output: a head that starts with an ELU
    must not overwrite what it is given."""
    from torch import nn

    from steering_agent.policy.model import _functional

    run = _functional(nn.Sequential(nn.ELU(), nn.Linear(4, 3), nn.ELU(), nn.Tanh()))
    x = torch.randn(2, 4)
    before = x.clone()
    run(x)
    assert torch.equal(x, before)
