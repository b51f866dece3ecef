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
