"""`steering-agent drive`: one episode, its summary and its files; honest about the policy."""

from __future__ import annotations

import json

import torch

from steering_agent import drive
from steering_agent.cli import main
from steering_agent.policy.checkpoint import save_checkpoint
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.preprocess import PreprocessConfig


def test_drive_expert_writes_summary_and_files(tmp_path, capsys):
    rc = main(["drive", "--policy", "expert", "--route-length-m", "15", "--out", str(tmp_path)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "policy expert on held-out seed 1000000" in captured.out
    assert "autonomy" in captured.out and "EXPERT" in captured.err
    for name in ("drive.json", "results.md", "steering.png", "episode_expert_1000000.mp4"):
        assert (tmp_path / name).stat().st_size > 0, name
    doc = json.loads((tmp_path / "drive.json").read_text())
    assert list(doc["policies"]) == ["expert"] and "expert" in doc["notice"].lower()


def test_without_a_shipped_checkpoint_the_expert_is_labelled(monkeypatch, tmp_path):
    import steering_agent.common.package_files as pf

    monkeypatch.setattr(pf, "shipped_checkpoint", lambda: tmp_path / "cnn_lstm.pt")
    spec, notice = drive.resolve_policy("auto")
    assert spec == "expert"
    assert "NO TRAINED CHECKPOINT" in notice and "NOT the learned agent" in notice


def test_the_shipped_checkpoint_is_the_default(monkeypatch, tmp_path):
    import steering_agent.common.package_files as pf

    cfg = ModelConfig(feature_dim=16, hidden_dim=8)
    path = save_checkpoint(
        tmp_path / "cnn_lstm.pt", SteeringNet(cfg), cfg, PreprocessConfig(),
        {"torch_version": str(torch.__version__)},
    )  # fmt: skip
    monkeypatch.setattr(pf, "shipped_checkpoint", lambda: path)
    assert drive.resolve_policy("auto") == (str(path), None)


def test_missing_explicit_checkpoint_is_an_error(tmp_path, capsys):
    rc = main(["drive", "--policy", str(tmp_path / "x.pt"), "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "x.pt does not exist" in err and "--policy expert" in err
    assert len(err.strip().splitlines()) == 1


def test_explicit_expert_is_announced():
    assert "EXPERT" in drive.resolve_policy("expert")[1]
