"""The fast training path (steering_agent.training_loop, data/augment.py): the batch-wide
augmentation equals the per-row one it replaced, precision resolution and the bf16
encoder, the in-place ELUs and the allocator setting change no maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steering_agent.data.augment import augment
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.training import TrainConfig, train
from steering_agent.training_loop import (
    cpu_has_native_bf16,
    encoder_autocast,
    fast_training_model,
    keep_freed_memory,
    resolve_precision,
)


def _reference_augment(frames, steer, cfg, rng):
    """The augmentation as it was written before (a stand-in kept as the reference):
    normalise, contrast and brightness per row, noise, then a roll per shifted row."""
    b = frames.shape[0]
    x = torch.from_numpy(frames).to(torch.float32).div_(127.5).sub_(1.0)
    y = torch.from_numpy(steer.copy())
    if cfg.contrast or cfg.brightness:
        c = 1.0 + torch.from_numpy(rng.uniform(-cfg.contrast, cfg.contrast, b)).float()
        br = torch.from_numpy(rng.uniform(-cfg.brightness, cfg.brightness, b)).float()
        x.mul_(c.view(b, 1, 1, 1, 1)).add_(br.view(b, 1, 1, 1, 1))
    if cfg.noise_std:
        x.add_(torch.randn_like(x), alpha=cfg.noise_std / 127.5)
    if cfg.max_shift_px:
        for i, dx in enumerate(rng.integers(-cfg.max_shift_px, cfg.max_shift_px + 1, b)):
            if dx:
                out = torch.roll(x[i], int(dx), dims=-1)
                if dx > 0:
                    out[..., :dx] = x[i][..., :1]
                else:
                    out[..., dx:] = x[i][..., -1:]
                x[i] = out
                y[i] += cfg.shift_steer_per_px * float(dx)
    return x.clamp_(-1.5, 1.5), y.clamp_(-1.0, 1.0)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "overrides",
    [{}, {"noise_std": 0.0}, {"contrast": 0.0, "brightness": 0.0}, {"max_shift_px": 0},
     {"max_shift_px": 7, "contrast": 0.6, "brightness": 0.6, "noise_std": 40.0}],
)  # fmt: skip
def test_batch_augmentation_equals_the_per_row_one_for_a_seed(overrides, channels_last):
    cfg = TrainConfig(**overrides)
    data = np.random.default_rng(1)
    frames = data.integers(0, 256, (12, 3, 3, 10, 24), dtype=np.uint8)
    steer = data.uniform(-0.99, 0.99, (12, 3)).astype(np.float32)
    torch.manual_seed(5)
    want_x, want_y = _reference_augment(frames.copy(), steer, cfg, np.random.default_rng(7))
    torch.manual_seed(5)
    rng = np.random.default_rng(7)
    x, y = augment(frames.copy(), steer, cfg, rng, channels_last=channels_last)
    assert x.shape == want_x.shape and x.dtype == torch.float32
    torch.testing.assert_close(x, want_x, rtol=0, atol=2e-6)
    torch.testing.assert_close(y, want_y, rtol=0, atol=1e-7)
    flat = x.reshape(-1, *x.shape[2:])
    assert flat.is_contiguous(memory_format=torch.channels_last) == channels_last
    if cfg.max_shift_px:
        assert (y != torch.from_numpy(steer).clamp(-1, 1)).any()  # some rows shifted


def test_batch_augmentation_leaves_the_generators_where_the_old_one_did():
    cfg = TrainConfig()
    frames = np.zeros((4, 2, 3, 6, 8), np.uint8)
    steer = np.zeros((4, 2), np.float32)
    ra, rb = np.random.default_rng(3), np.random.default_rng(3)
    torch.manual_seed(0)
    _reference_augment(frames, steer, cfg, ra)
    ta = torch.rand(1)
    torch.manual_seed(0)
    augment(frames, steer, cfg, rb, channels_last=True)
    assert ra.random() == rb.random() and torch.equal(ta, torch.rand(1))


def test_precision_resolution(monkeypatch):
    import steering_agent.training_loop as loop
    from steering_agent.common.cli_args import UsageError

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(UsageError, match="no native bf16"):
        resolve_precision("bf16", "cpu")
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(UsageError, match="not one of"):
        resolve_precision("fp16", "cpu")


def test_bf16_encoder_keeps_fp32_features_and_is_undone_after():
    torch.manual_seed(0)
    model = SteeringNet(ModelConfig()).eval()
    x = torch.rand(2, 3, 3, 66, 200) * 2 - 1
    with torch.no_grad():
        want, _ = model(x)
        with encoder_autocast(model, "bf16", "cpu"):
            feats = model.encoder(x[0])
            got, _ = model(x)
        assert "forward" not in vars(model.encoder)  # the plain module again
        again, _ = model(x)
    assert feats.dtype == torch.float32 and got.dtype == torch.float32
    assert torch.equal(again, want)
    assert (got - want).abs().max() < 0.02  # bf16's 8 bits of mantissa in the encoder
    with encoder_autocast(model, "fp32", "cpu"):
        assert "forward" not in vars(model.encoder)


def test_in_place_elus_change_no_gradient():
    torch.manual_seed(0)
    plain = SteeringNet(ModelConfig(dropout=0.0))
    fast = fast_training_model(SteeringNet(ModelConfig(dropout=0.0)))
    fast.load_state_dict(plain.state_dict())
    assert all(m.inplace for m in fast.modules() if isinstance(m, torch.nn.ELU))
    x = (torch.rand(2, 3, 3, 66, 200) * 2 - 1).contiguous()
    for m in (plain, fast):
        m(x)[0].square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
    assert plain.state_dict().keys() == fast.state_dict().keys()


def test_keep_freed_memory_is_idempotent():
    import platform

    first = keep_freed_memory()
    assert keep_freed_memory() == first
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first
    torch.ones(64 << 20, dtype=torch.uint8).sum()  # a large block still allocates


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_native_bf16(), reason="the CPU has no native bf16")
def test_bf16_training_validates_no_worse_than_fp32(tmp_path):
    from tests.test_train import synthetic_episode

    eps = [synthetic_episode(96, s) for s in range(4)]
    rmse = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(epochs=3, seq_len=8, batch=4, lr=2e-3, val_fraction=0.25,
                          precision=precision)  # fmt: skip
        result = train(eps, cfg, tmp_path / f"{precision}.pt", progress=False)
        rmse[precision] = result["best_val_rmse"]
        from steering_agent.policy.checkpoint import load_checkpoint

        prov = load_checkpoint(tmp_path / f"{precision}.pt").provenance
        assert prov["train_config"]["precision"] == precision
    # a short run on a tiny set: the two differ by noise; bf16 must not be clearly worse
    assert rmse["bf16"] <= rmse["fp32"] * 1.15 + 0.01, rmse
