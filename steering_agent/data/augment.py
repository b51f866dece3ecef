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

import numpy as np
import torch

from steering_agent.policy.preprocess import normalize, to_color_space

FAULT_KINDS = ("black", "frozen", "dim", "glare")
FAULT_WEIGHTS = (0.35, 0.3, 0.2, 0.15)


def augment(frames: np.ndarray, steer: np.ndarray, cfg: Any, rng):
    """Photometric jitter and label-corrected shifts; returns float input and labels.

    `cfg` is a `steering_agent.training.TrainConfig` (brightness, contrast, noise_std,
    max_shift_px, shift_steer_per_px)."""
    b = frames.shape[0]
    x = normalize(torch.from_numpy(frames))  # [B, T, 3, h, w] in [-1, 1]
    y = torch.from_numpy(steer.copy())
    if cfg.contrast or cfg.brightness:
        c = 1.0 + torch.from_numpy(rng.uniform(-cfg.contrast, cfg.contrast, b)).float()
        br = torch.from_numpy(rng.uniform(-cfg.brightness, cfg.brightness, b)).float()
        x.mul_(c.view(b, 1, 1, 1, 1)).add_(br.view(b, 1, 1, 1, 1))
    if cfg.noise_std:
        x.add_(torch.randn_like(x), alpha=cfg.noise_std / 127.5)
    if cfg.max_shift_px:
        shifts = rng.integers(-cfg.max_shift_px, cfg.max_shift_px + 1, b)
        for i, dx in enumerate(shifts):
            if dx:
                x[i] = _shift(x[i], int(dx))
                y[i] += cfg.shift_steer_per_px * float(dx)
    return x.clamp_(-1.5, 1.5), y.clamp_(-1.0, 1.0)


def _shift(x: torch.Tensor, dx: int) -> torch.Tensor:
    """Shift [..., W] right by dx (left if < 0), repeating the edge column."""
    out = torch.roll(x, dx, dims=-1)
    if dx > 0:
        out[..., :dx] = x[..., :1]
    else:
        out[..., dx:] = x[..., -1:]
    return out


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
