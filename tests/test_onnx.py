from __future__ import annotations

import re

import onnx
import pytest
import torch

from steering_agent.cli import main
from steering_agent.policy.checkpoint import save_checkpoint
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.onnx_export import compare_with_torch, export_onnx
from steering_agent.policy.preprocess import PreprocessConfig


@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn", "cnn_stack"])
def test_export_matches_torch_with_explicit_state(arch, tmp_path):
    torch.manual_seed(0)
    model = SteeringNet(ModelConfig(arch=arch)).eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    assert not model.training  # the exporter must not flip the model into training mode
    graph = onnx.load(str(path)).graph
    names = [i.name for i in graph.input], [o.name for o in graph.output]
    if arch == "cnn_lstm":
        assert names == (["frames", "h0", "c0"], ["steer", "hn", "cn"])
    elif arch == "cnn_stack":
        assert names == (["frames", "stack0"], ["steer", "stackn"])
    else:
        assert names == (["frames"], ["steer"])
    assert compare_with_torch(model, path, batch=2, steps=2, seq_len=3) < 1e-4


def test_cli_export(tmp_path, capsys):
    torch.manual_seed(1)
    model = SteeringNet(ModelConfig()).eval()
    ckpt = save_checkpoint(tmp_path / "m.pt", model, model.cfg, PreprocessConfig())
    out = tmp_path / "m.onnx"
    assert main(["export-onnx", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    printed = re.search(r"max abs diff (\S+)", capsys.readouterr().out)
    assert printed and float(printed.group(1)) < 1e-4
    # the file written is this checkpoint's network (checked anew here, not as printed)
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["frames", "h0", "c0"]
    assert compare_with_torch(model, out, batch=1, steps=2, seq_len=3) < 1e-4
    other = SteeringNet(ModelConfig()).eval()  # other weights: the comparison can fail
    assert compare_with_torch(other, out, batch=1, steps=2, seq_len=3) > 1e-3
