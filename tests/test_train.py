from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from steering_agent.policy.checkpoint import load_checkpoint
from steering_agent.training import (
    ChunkStream,
    PreparedEpisode,
    TrainConfig,
    augment,
    split_episodes,
    steering_loss,
    train,
)


@dataclass
class SyntheticEpisode:
    """Stands in for dataset.Episode: a bright bar whose position encodes the steer."""

    name: str
    images: np.ndarray
    steer: np.ndarray
    speed: np.ndarray
    stamps: np.ndarray


def synthetic_episode(n: int, seed: int) -> SyntheticEpisode:
    rng = np.random.default_rng(seed)
    steer = np.clip(np.cumsum(rng.normal(0, 0.05, n)), -0.8, 0.8).astype(np.float32)
    images = np.full((n, 66, 200, 3), 60, np.uint8)
    for i, x in enumerate((100 + 90 * steer).astype(int)):
        images[i, :, x - 4 : x + 4] = 220
    return SyntheticEpisode(
        f"ep{seed}", images, steer, np.full(n, 7.0, np.float32), np.arange(n) * 0.05
    )


def test_split_is_by_episode_and_keeps_one_for_validation():
    eps = list(range(5))
    train_eps, val_eps = split_episodes(eps, 0.15, seed=0)
    assert len(val_eps) == 1 and sorted(train_eps + val_eps) == eps


def test_rows_walk_episodes_chunk_after_chunk():
    eps = [
        PreparedEpisode(
            f"e{i}", np.zeros((40, 3, 2, 2), np.uint8), np.arange(40, dtype=np.float32) + 100 * i
        )
        for i in range(3)
    ]
    stream = ChunkStream(eps, batch=2, seq_len=5, rng=np.random.default_rng(0))
    batches = list(stream)
    assert len(batches) == len(stream) == 12
    assert batches[0][2].all()  # every row starts an episode
    for (_, prev, _), (_, cur, fresh) in itertools.pairwise(batches):
        for r in range(2):
            if not fresh[r]:  # a carried row continues exactly where it stopped
                assert cur[r, 0] == prev[r, -1] + 1


def test_shift_augmentation_corrects_the_label():
    cfg = TrainConfig(
        brightness=0, contrast=0, noise_std=0, max_shift_px=3, shift_steer_per_px=0.01
    )
    frames = np.zeros((64, 2, 3, 4, 10), np.uint8)
    frames[..., 5] = 255
    x, y = augment(frames, np.zeros((64, 2), np.float32), cfg, np.random.default_rng(0))
    col = x[:, 0, 0, 0].argmax(-1).numpy()  # where the bright column went
    np.testing.assert_allclose(y[:, 0].numpy(), (col - 5) * 0.01, atol=1e-6)
    assert len(set(col)) > 1


@pytest.mark.slow
def test_training_smoke_loss_falls_and_resume(tmp_path):
    eps = [synthetic_episode(96, s) for s in range(3)]
    cfg = TrainConfig(epochs=2, seq_len=8, batch=4, lr=2e-3, val_fraction=0.34)
    out = tmp_path / "m.pt"
    result = train(eps, cfg, out, logdir=tmp_path / "tb", progress=False)
    h = result["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    ckpt = load_checkpoint(out)
    assert ckpt.training_state == {}  # the shipped file holds no optimizer state
    assert ckpt.provenance["val_episodes"] and ckpt.provenance["target_speed_mps"] == 7.0
    assert list((tmp_path / "tb").iterdir())
    cfg3 = TrainConfig(**{**cfg.__dict__, "epochs": 3})
    resumed = train(eps, cfg3, out, resume=True, progress=False)
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][:2] == h


def test_cli_reports_empty_data(tmp_path, capsys):
    from steering_agent.cli import main

    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt")]) == 2
    assert "no usable episodes" in capsys.readouterr().err


def test_losses_are_finite_on_real_shapes():
    eps = [PreparedEpisode("e", np.zeros((20, 3, 66, 200), np.uint8), np.zeros(20, np.float32))]
    stream = ChunkStream(eps, batch=1, seq_len=4, rng=np.random.default_rng(0))
    x, _ = augment(*next(iter(stream))[:2], TrainConfig(), np.random.default_rng(0))
    assert torch.isfinite(x).all() and x.shape == (1, 4, 3, 66, 200)


def test_cli_resume_without_a_previous_run_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import steering_agent.data.dataset as dataset
    from steering_agent.cli import main

    report = dataset.DatasetReport([synthetic_episode(40, 0), synthetic_episode(40, 1)], [])
    monkeypatch.setattr(dataset, "load_episodes", lambda folder: report)
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt"), "--resume"]
    assert main([*args, "--seq-len", "8", "--batch", "2", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def _weights_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_starts_from_the_checkpoints_weights_and_records_it(tmp_path):
    eps = [synthetic_episode(96, s) for s in range(3)]
    cfg = TrainConfig(epochs=2, seq_len=8, batch=4, lr=2e-3, val_fraction=0.34)
    first = train(eps, cfg, tmp_path / "a.pt", progress=False)
    start = load_checkpoint(tmp_path / "a.pt")
    # with a learning rate of 0 the weights stay exactly the ones it started from
    frozen = TrainConfig(**{**cfg.__dict__, "epochs": 1, "lr": 0.0})
    train(eps, frozen, tmp_path / "same.pt", progress=False, init=tmp_path / "a.pt")
    same = load_checkpoint(tmp_path / "same.pt")
    assert _weights_equal(same.state_dict, start.state_dict)
    assert same.provenance["init"]["path"] == str(tmp_path / "a.pt")
    # fine-tuning begins where the first run ended, not from scratch
    tuned = train(eps, TrainConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path / "b.pt",
                  progress=False, init=tmp_path / "a.pt")  # fmt: skip
    assert tuned["history"][0]["train_loss"] < first["history"][0]["train_loss"]
    with pytest.raises(ValueError, match="--init and --resume"):
        train(eps, cfg, tmp_path / "b.pt", resume=True, init=tmp_path / "a.pt", progress=False)


@pytest.fixture
def cli_data(tmp_path, monkeypatch):
    """`steering-agent train` over synthetic episodes (the bag reading replaced)."""
    import steering_agent.data.frame_cache as frame_cache
    from steering_agent.cli import main
    from steering_agent.data.sequences import prepare

    def episodes(data, cfg, label_topic, cache=None, problems=None):  # new ones each run
        yield from prepare([synthetic_episode(40, 0), synthetic_episode(40, 1)], cfg)

    monkeypatch.setattr(frame_cache, "prepared_episodes", episodes)

    def run(out: str, *extra: str) -> int:
        args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / out)]
        return main([*args, "--seq-len", "8", "--batch", "2", "--epochs", "1", "--no-progress",
                     *extra])  # fmt: skip

    return run


def test_cli_init_takes_the_checkpoints_arch_and_preprocessing(tmp_path, cli_data, capsys):
    assert cli_data("cnn.pt", "--arch", "cnn", "--color", "rgb") == 0
    assert cli_data("tuned.pt", "--init", str(tmp_path / "cnn.pt")) == 0
    tuned = load_checkpoint(tmp_path / "tuned.pt")
    assert tuned.model_config.arch == "cnn" and tuned.preprocess_config.color == "rgb"
    assert "--init" in tuned.provenance["command"]


def test_cli_init_that_does_not_fit_is_a_clear_error(tmp_path, cli_data, capsys):
    assert cli_data("cnn.pt", "--arch", "cnn") == 0
    capsys.readouterr()
    init = ["--init", str(tmp_path / "cnn.pt")]
    assert cli_data("x.pt", *init, "--arch", "cnn_lstm") == 2
    err = capsys.readouterr().err
    assert "cnn.pt" in err and "--arch cnn" in err
    assert cli_data("x.pt", *init, "--color", "rgb") == 2
    assert "preprocessing" in capsys.readouterr().err
    assert cli_data("x.pt", "--init", str(tmp_path / "missing.pt")) == 2
    err = capsys.readouterr().err
    assert "--init" in err and "missing.pt" in err
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(SystemExit) as e:
        cli_data("x.pt", *init, "--resume")
    assert e.value.code == 2


def test_delta_loss_penalises_jitter_not_an_offset():
    y = torch.linspace(-0.2, 0.3, 16).view(1, 16)
    offset = y + 0.05
    jitter = y + 0.05 * torch.tensor([1.0, -1.0] * 8)  # the same squared error per frame
    assert torch.isclose(steering_loss(offset, y), steering_loss(jitter, y))
    assert torch.isclose(steering_loss(offset, y, 10.0), steering_loss(offset, y))
    # each change of the jitter is off by 0.1: 10 x 0.01 more loss
    expected = steering_loss(jitter, y) + 10.0 * 0.1**2
    assert torch.isclose(steering_loss(jitter, y, 10.0), expected)
    single = y[:, :1]  # one frame has no change to compare
    assert torch.isclose(steering_loss(single + 0.1, single, 10.0), torch.tensor(0.01))


def test_a_cnn_starts_a_frame_stack(tmp_path, cli_data):
    import torch

    assert cli_data("cnn.pt", "--arch", "cnn") == 0
    assert cli_data("stack.pt", "--arch", "cnn_stack", "--init", str(tmp_path / "cnn.pt"),
                    "--lr", "1e-12") == 0  # fmt: skip
    cnn, stack = load_checkpoint(tmp_path / "cnn.pt"), load_checkpoint(tmp_path / "stack.pt")
    assert stack.model_config.arch == "cnn_stack"
    w, k = cnn.state_dict["encoder.convs.0.weight"], stack.model_config.stack
    got = stack.state_dict["encoder.convs.0.weight"]
    assert torch.allclose(got, w.repeat(1, k, 1, 1) / k, atol=1e-6)
    with pytest.raises(Exception, match="only a cnn may start"):
        from steering_agent.training import TrainConfig, init_checkpoint

        init_checkpoint(tmp_path / "stack.pt", TrainConfig(arch="cnn_lstm"))
