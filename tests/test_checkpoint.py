from __future__ import annotations

import pickle

import pytest
import torch

from steering_agent.policy.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.preprocess import PreprocessConfig


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(arch="cnn_lstm")
    model = SteeringNet(cfg).eval()
    pre = PreprocessConfig(crop_top=0.1, color="rgb")
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, pre, {"data": "synthetic", "n": 3})
    return path, model, pre


def test_round_trip_keeps_weights_configs_and_provenance(saved):
    path, model, pre = saved
    ckpt = load_checkpoint(path)
    assert ckpt.preprocess_config == pre
    assert ckpt.model_config == model.cfg
    assert ckpt.provenance["data"] == "synthetic"
    assert ckpt.provenance["torch_version"] == torch.__version__
    assert "date" in ckpt.provenance
    rebuilt = ckpt.build_model()
    x = torch.randn(1, 2, 3, 66, 200)
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x)[0], model(x)[0])
    assert all(v.dtype == torch.float32 for v in ckpt.state_dict.values())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_directory_is_a_directory(tmp_path):
    (tmp_path / "run" / "m.pt").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"run is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path / "run")


def test_truncated_file(saved):
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.pt is damaged") as e:
        load_checkpoint(path)
    assert "failed finding central directory." in str(e.value)  # a whole sentence


class _Evil:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(_Evil.marker),))


def test_code_running_pickle_is_refused_without_running(tmp_path):
    _Evil.marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"format": "steering_agent.checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match=r"would import and run .* not loaded") as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value)  # never the advice to load it unsafely
    assert not (tmp_path / "pwned").exists()
    # A bare (non-zip) pickle is refused too.
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match=r"evil\.pt .*could run code.*not loaded"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def _rewrite(path, **changes):
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_wrong_format_version(saved):
    _rewrite(saved[0], format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(saved[0])


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a steering_agent checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_wrong_keys_and_shapes(saved):
    path = saved[0]
    sd = torch.load(path, weights_only=True)["state_dict"]
    sd.pop("head.0.bias")
    sd["head.0.weight"] = torch.zeros(3, 3)
    _rewrite(path, state_dict=sd)
    with pytest.raises(CheckpointError, match=r"missing \['head.0.bias'\].*head.0.weight"):
        load_checkpoint(path)


def test_config_that_does_not_fit_the_weights(saved):
    path = saved[0]
    cfg = torch.load(path, weights_only=True)["model_config"]
    _rewrite(path, model_config={**cfg, "hidden_dim": 32})
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)
    _rewrite(path, model_config={**cfg, "arch": "rnn"})
    with pytest.raises(CheckpointError, match="bad or missing field"):
        load_checkpoint(path)


def test_average_checkpoints_writes_the_weighted_mean_and_refuses_other_configs(
    saved, tmp_path, load_tool
):
    path, model, pre = saved
    torch.manual_seed(1)
    other = SteeringNet(model.cfg).eval()
    b = save_checkpoint(tmp_path / "b.pt", other, model.cfg, pre, {"data": "other"})
    tool = load_tool("average_checkpoints")
    out = tool.average([str(path), str(b)], [0.25, 0.75], str(tmp_path / "soup.pt"))
    soup = load_checkpoint(out)
    a_sd, b_sd = model.state_dict(), other.state_dict()
    for key, value in soup.state_dict.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.25 * a_sd[key] + 0.75 * b_sd[key])
    assert soup.provenance["data"] == "synthetic"  # the first input's provenance
    assert [e["weight"] for e in soup.provenance["averaged_from"]] == [0.25, 0.75]
    argv = [str(b), str(path), "--out", str(tmp_path / "s2.pt"), "--set", "target_speed_mps=10"]
    assert tool.main([*argv, "--set", "note=x=y"]) == 0
    s2 = load_checkpoint(tmp_path / "s2.pt").provenance
    assert s2["data"] == "other" and s2["target_speed_mps"] == 10.0 and s2["note"] == "x=y"
    # another architecture cannot be averaged in; nothing is written
    cnn_cfg = ModelConfig(arch="cnn")
    c = save_checkpoint(tmp_path / "c.pt", SteeringNet(cnn_cfg), cnn_cfg, pre)
    with pytest.raises(CheckpointError, match="different model"):
        tool.average([str(path), str(c)], None, str(tmp_path / "bad.pt"))
    with pytest.raises(CheckpointError, match="summing to 1"):
        tool.average([str(path), str(b)], [0.5, 0.6], str(tmp_path / "bad.pt"))
    assert not (tmp_path / "bad.pt").exists()
