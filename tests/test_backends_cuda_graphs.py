"""The CUDA-graph step of the torch backend (steering_agent.policy.cuda_graphs): the
static-buffer logic runs here with `EagerGraph`, a stand-in for the graph that calls the
step on replay; the real capture only where CUDA is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from steering_agent.policy.backends import TorchStepper
from steering_agent.policy.cuda_graphs import EagerGraph, GraphStepper, reduced_precision_error
from steering_agent.policy.model import ModelConfig, SteeringNet

HW = (66, 200)


def _model(arch: str, device="cpu") -> SteeringNet:
    torch.manual_seed(0)
    return SteeringNet(ModelConfig(arch=arch)).eval().to(device)


def _script(batch: int, steps: int, seed: int = 0):
    """A mixed run: full steps, single rows, a two-row subset, resets of one row."""
    rng = np.random.default_rng(seed)
    for k in range(steps):
        if k % 5 == 3:
            yield "reset", np.array([k % batch])
        rows = np.arange(batch)
        if k % 4 == 1:
            rows = np.array([k % batch])
        elif k % 4 == 2 and batch > 2:
            rows = np.array([0, batch - 1])
        frames = rng.integers(0, 256, (len(rows), *HW, 3), dtype=np.uint8)
        yield "run", (frames, rows, len(rows) == batch)


def _drive(stepper, batch: int, steps: int) -> list:
    out = []
    for kind, arg in _script(batch, steps):
        if kind == "reset":
            stepper.reset(arg)
        else:
            out.append(stepper.run(*arg))
    return out


@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn", "cnn_stack"])
@pytest.mark.parametrize("batch", [1, 3])
def test_static_buffer_step_equals_the_plain_step(arch, batch):
    plain = TorchStepper(_model(arch), torch.device("cpu"), batch, HW)
    graphs = GraphStepper(_model(arch), torch.device("cpu"), batch, HW, graph=EagerGraph)
    want, got = _drive(plain, batch, 14), _drive(graphs, batch, 14)
    assert len(want) == len(got) > 5
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b, a, atol=2e-5)
    if arch != "cnn":  # the state is kept in place, in the graph's own tensors
        assert all(s.shape[1] == batch for s in graphs.state)


def test_a_reset_zeroes_only_its_rows():
    g = GraphStepper(_model("cnn_lstm"), torch.device("cpu"), 3, HW, graph=EagerGraph)
    frames = np.random.default_rng(0).integers(0, 256, (3, *HW, 3), dtype=np.uint8)
    g.run(frames, np.arange(3), True)
    g.reset(np.array([1]))
    h = g.state[0]
    assert float(h[:, 1].abs().max()) == 0.0
    assert float(h[:, 0].abs().max()) > 0.0 and float(h[:, 2].abs().max()) > 0.0


def test_a_reduced_precision_that_moves_the_output_is_refused():
    model = _model("cnn_lstm")
    worst = reduced_precision_error(model, "cpu", HW, torch.bfloat16, sequences=2, steps=2)
    assert worst > 0.0  # bf16 rounds
    with pytest.raises(ValueError, match=r"differs from fp32 by .* use precision 'fp32'"):
        GraphStepper(model, torch.device("cpu"), 2, HW, precision="bf16", graph=EagerGraph,
                     check_sequences=2, check_steps=2, tol=worst / 2)  # fmt: skip
    kept = GraphStepper(model, torch.device("cpu"), 2, HW, precision="bf16", graph=EagerGraph,
                        check_sequences=2, check_steps=2, tol=1.0)  # fmt: skip
    frames = np.zeros((2, *HW, 3), np.uint8)
    assert np.isfinite(kept.run(frames, np.arange(2), True)).all()
    with pytest.raises(ValueError, match="not one of"):
        GraphStepper(model, torch.device("cpu"), 1, HW, precision="int8", graph=EagerGraph)


def test_graphs_need_cuda_and_reduced_precision_needs_graphs():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        TorchStepper(_model("cnn_lstm"), torch.device("cpu"), 1, HW, cuda_graphs=True)
    with pytest.raises(ValueError, match="only with cuda_graphs"):
        TorchStepper(_model("cnn_lstm"), torch.device("cpu"), 1, HW, precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn_stack"])
def test_recorded_cuda_graphs_equal_the_plain_step(arch):
    dev = torch.device("cuda")
    plain = TorchStepper(_model(arch, dev), dev, 3, HW, cuda_graphs=False)
    graphs = TorchStepper(_model(arch, dev), dev, 3, HW)  # on by default on CUDA
    assert graphs.name == "torch (cuda graphs)"
    for a, b in zip(_drive(plain, 3, 14), _drive(graphs, 3, 14), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_bench_says_no_cuda_and_writes_nothing(tmp_path, capsys):
    import runpy

    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "cuda_bench.py"))
    assert bench["main"](["--out", str(tmp_path / "b.json")]) == 2
    assert "no CUDA" in capsys.readouterr().err and not (tmp_path / "b.json").exists()
