"""Training-time augmentation that keeps labels honest.

- `augment`: photometric jitter (brightness, contrast, noise: no label changes) and a
  horizontal shift of `dx` pixels (constant over a chunk), which looks like the camera
  yawed by `dx * fov / width` and adds `shift_steer_per_px * dx` to the label.
- `CameraFaults`: what the memory suite of the benchmark cuts the camera with, put into
  the training chunks: spans of black frames, frozen frames (the last good frame again),
  a tunnel's dim frames and glare flashes, 0.3..1.5 s long (glare 0.1..0.3 s), started
  at `rate_per_s` per batch row. The labels stay the expert's, so a recurrent network
  learns to steer through the fault from what it saw before it. A fault may run across
  chunk boundaries (the rows walk their episodes chunk after chunk) and ends when a row
  starts a new episode.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from steering_agent.policy.preprocess import to_color_space

FAULT_KINDS = ("black", "frozen", "dim", "glare")
FAULT_WEIGHTS = (0.35, 0.3, 0.2, 0.15)


def augment(frames: np.ndarray, steer: np.ndarray, cfg: Any, rng, channels_last: bool = False):
    """Photometric jitter and label-corrected shifts; returns float input and labels.

    `cfg` is a `steering_agent.training.TrainConfig` (brightness, contrast, noise_std,
    max_shift_px, shift_steer_per_px). Per batch row b it draws, in this order, a contrast
    c_b (numpy `rng`), a brightness br_b (numpy `rng`), the pixel noise (torch's global
    generator, one standard normal per pixel of the whole [B, T, 3, h, w] batch) and a
    shift dx_b (numpy `rng`), and returns, clamped to [-1.5, 1.5],

        x = shift_dx((u / 127.5 - 1) * c + br + noise_std / 127.5 * noise)

    (the shift repeats the edge column into the gap) and y = steer + dx *
    shift_steer_per_px, clamped to [-1, 1]. The work is batch-wide, in four passes: the
    affine of each row as a 256-entry table looked up on the uint8 frames (cv2.LUT), the
    noise drawn and added, one clamp per row that writes the shifted columns into the
    output, and (`channels_last`) one reorder of the batch.

    Args:
        frames: uint8 [B, T, 3, h, w].
        steer: float [B, T].
        channels_last: lay each frame of the output out as NHWC in memory (the shape stays
            [B, T, 3, h, w]; `x.reshape(B * T, 3, h, w)` is a channels_last view), which
            oneDNN's convolutions run about 1.5x faster on (docs/performance.md).
    """
    b = frames.shape[0]
    y = torch.from_numpy(steer.copy())
    # (u / 127.5 - 1) * c + br of the 256 uint8 values, per row
    scale = torch.full((b, 1), 1.0 / 127.5)
    bias = torch.full((b, 1), -1.0)
    if cfg.contrast or cfg.brightness:
        c = 1.0 + torch.from_numpy(rng.uniform(-cfg.contrast, cfg.contrast, b)).float()
        br = torch.from_numpy(rng.uniform(-cfg.brightness, cfg.brightness, b)).float()
        scale, bias = (c / 127.5).view(b, 1), (br - c).view(b, 1)
    table = torch.addcmul(bias, torch.arange(256, dtype=torch.float32).view(1, 256), scale)
    x = _lookup(frames, table.numpy())
    if cfg.noise_std:
        x.add_(torch.randn(x.shape), alpha=cfg.noise_std / 127.5)
    shifts = np.zeros(b, np.int64)
    if cfg.max_shift_px:
        shifts = rng.integers(-cfg.max_shift_px, cfg.max_shift_px + 1, b)
        y += torch.from_numpy(shifts * float(cfg.shift_steer_per_px)).float().view(b, 1)
    out = torch.empty_like(x)
    for i, dx in enumerate(shifts.tolist()):
        _shift_clamp(x[i], dx, out[i])
    if channels_last:  # one reorder of the whole batch (in place of a strided clamp)
        out = out.view(-1, *x.shape[2:]).contiguous(memory_format=torch.channels_last)
        out = out.view(x.shape)
    return out, y.clamp_(-1.0, 1.0)


def _lookup(frames: np.ndarray, tables: np.ndarray) -> torch.Tensor:
    """float32 tables[b][frames[b]] for every row b (cv2.LUT: uint8 in, float32 out)."""
    b, w = frames.shape[0], frames.shape[-1]
    out = np.empty(frames.shape, np.float32)
    for i in range(b):
        src = np.ascontiguousarray(frames[i]).reshape(-1, w)
        cv2.LUT(src, tables[i : i + 1], dst=out[i].reshape(-1, w))
    return torch.from_numpy(out)


def _shift_clamp(x: torch.Tensor, dx: int, out: torch.Tensor) -> None:
    """out = x [..., W] shifted right by dx columns (left if < 0), the edge column
    repeated into the gap, clamped to [-1.5, 1.5] (contiguous rows: a strided `out`,
    e.g. channels_last, makes these copies ten times slower)."""
    w = x.shape[-1]
    if dx > 0:
        torch.clamp(x[..., : w - dx], -1.5, 1.5, out=out[..., dx:])
        torch.clamp(x[..., :1].expand(*x.shape[:-1], dx), -1.5, 1.5, out=out[..., :dx])
    elif dx < 0:
        torch.clamp(x[..., -dx:], -1.5, 1.5, out=out[..., : w + dx])
        torch.clamp(x[..., -1:].expand(*x.shape[:-1], -dx), -1.5, 1.5, out=out[..., w + dx :])
    else:
        torch.clamp(x, -1.5, 1.5, out=out)


def _pixel(rgb: tuple[int, int, int], color: str) -> np.ndarray:
    """One RGB colour in the network's colour space, as a (3, 1, 1) uint8 column."""
    out = np.empty((1, 1, 3), np.uint8)
    to_color_space(np.array([[rgb]], np.uint8), color, out)
    return out.reshape(3, 1, 1)


class CameraFaults:
    """Camera faults in preprocessed training chunks (module doc).

    Args:
        batch: rows of the global batch.
        rate_per_s: faults started per second of driving per row (0: off).
        dt: seconds per frame.
        color: the preprocessing's colour space ("yuv" or "rgb").
        rng: numpy Generator (the training's, so runs repeat).
        min_s, max_s: fault length range (glare flashes: 0.1..0.3 s).
    """

    def __init__(self, batch: int, rate_per_s: float, dt: float, color: str, rng,
                 min_s: float = 0.3, max_s: float = 1.5) -> None:  # fmt: skip
        self.batch, self.rng = int(batch), rng
        self.p_start = float(rate_per_s) * float(dt)
        self.dt, self.min_s, self.max_s = float(dt), float(min_s), float(max_s)
        self.black = _pixel((0, 0, 0), color)
        self.white = _pixel((255, 255, 255), color)
        self.grey = _pixel((128, 128, 128), color).astype(np.float32)  # dimming centre
        self.left = np.zeros(self.batch, np.int64)  # frames of the current fault left
        self.kind = np.zeros(self.batch, np.int64)
        self.dim = np.ones(self.batch, np.float32)
        self.held: list[np.ndarray | None] = [None] * self.batch
        self.faulted_frames = 0

    def _start(self, i: int) -> None:
        kind = int(self.rng.choice(len(FAULT_KINDS), p=FAULT_WEIGHTS))
        lo, hi = (0.1, 0.3) if FAULT_KINDS[kind] == "glare" else (self.min_s, self.max_s)
        self.left[i] = max(1, round(self.rng.uniform(lo, hi) / self.dt))
        self.kind[i] = kind
        self.dim[i] = self.rng.uniform(0.12, 0.35)

    def apply(self, frames: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """Fault `frames` (uint8 [B, T, 3, h, w], changed in place) and return them."""
        if self.p_start <= 0 and not self.left.any():
            return frames
        b, t = frames.shape[:2]
        starts = self.rng.random((b, t)) < self.p_start
        for i in range(b):
            if fresh[i]:
                self.left[i], self.held[i] = 0, None
            for k in range(t):
                if self.left[i] == 0 and starts[i, k]:
                    self._start(i)
                    self.held[i] = frames[i, k - 1].copy() if k else self.held[i]
                if self.left[i] == 0:
                    continue
                self._fault(frames, i, k)
                self.left[i] -= 1
                self.faulted_frames += 1
            if self.left[i] == 0:  # the last good frame, should a fault start next chunk
                self.held[i] = frames[i, t - 1].copy()
        return frames

    def _fault(self, frames: np.ndarray, i: int, k: int) -> None:
        kind = FAULT_KINDS[self.kind[i]]
        f = frames[i, k]
        if kind == "black":
            f[:] = self.black
        elif kind == "glare":
            f[:] = self.white
        elif kind == "frozen":
            if self.held[i] is None:  # nothing seen yet in this episode: one frame held
                self.held[i] = f.copy()
            f[:] = self.held[i]
        else:  # dim: towards black, around the colour space's grey for chroma
            scaled = f.astype(np.float32) * self.dim[i]
            if self.black[1, 0, 0] != 0:  # yuv: chroma shrinks toward 128, not 0
                scaled[1:] = (f[1:].astype(np.float32) - 128.0) * self.dim[i] + 128.0
            f[:] = np.clip(scaled, 0, 255).astype(np.uint8)
