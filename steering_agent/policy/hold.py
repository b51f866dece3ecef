"""The hold rule: repeat the last command while the camera frame is unusable.

`HoldOnUnusable` wraps any batched policy (``reset(indices)``,
``act(images, stamps, speeds, expert, active) -> [B, 3]``). A frame is unusable when it
is

- black: mean below `dark` (8 of 255),
- saturated: mean above `bright` (247) or more than `saturated_share` (half) of the
  pixels at 255,
- frozen: identical to the stream's previous frame,

all judged on a fixed subsample of the frame (every `stride`-th row and column, so the
test costs a few thousand bytes per frame). On an unusable frame the wrapper returns the
stream's last command and does not step the wrapped policy for that row (its recurrent
state is kept as it was at the last good frame). A stream with no command yet (the first
frames of an episode) steps the wrapped policy whatever its frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DARK_MEAN = 8.0
BRIGHT_MEAN = 247.0
SATURATED_SHARE = 0.5


class HoldOnUnusable:
    """`policy` under the hold rule (module doc), for `batch_size` streams."""

    def __init__(
        self,
        policy,
        batch_size: int,
        dark: float = DARK_MEAN,
        bright: float = BRIGHT_MEAN,
        saturated_share: float = SATURATED_SHARE,
        stride: int = 4,
    ) -> None:
        self.policy = policy
        self.name = "hold:" + str(getattr(policy, "name", "policy"))
        self.batch_size = batch_size
        self.dark, self.bright, self.saturated_share = dark, bright, saturated_share
        self.stride = stride
        self._last = np.zeros((batch_size, 3), np.float32)
        self._has_cmd = np.zeros(batch_size, bool)
        self._prev: np.ndarray | None = None  # subsampled previous frames
        self._has_prev = np.zeros(batch_size, bool)
        self.held = np.zeros(batch_size, bool)  # which rows were held at the last act

    def reset(self, indices: Sequence[int] | None = None) -> None:
        rows = slice(None) if indices is None else np.asarray(indices)
        self._has_cmd[rows] = False
        self._has_prev[rows] = False
        self.policy.reset(indices)

    def set_target_speed(self, row: int, mps) -> None:
        setter = getattr(self.policy, "set_target_speed", None)
        if setter is not None:
            setter(row, mps)

    def unusable(self, images: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Bool [B]: the active rows whose frame is black, saturated or frozen; records
        the active rows' frames as the previous ones."""
        sub = images[:, :: self.stride, :: self.stride]
        if self._prev is None or self._prev.shape != sub.shape:
            self._prev = np.zeros(sub.shape, np.uint8)
            self._has_prev[:] = False
        flat = sub.reshape(sub.shape[0], -1)
        mean = flat.mean(axis=1)
        share = (flat == 255).mean(axis=1)
        frozen = self._has_prev & np.all((sub == self._prev).reshape(sub.shape[0], -1), axis=1)
        bad = (mean < self.dark) | (mean > self.bright) | (share > self.saturated_share) | frozen
        self._prev[active] = sub[active]
        self._has_prev |= active
        return bad & active

    def act(self, images, stamps, speeds, expert, active=None) -> np.ndarray:
        active = np.ones(self.batch_size, bool) if active is None else np.asarray(active, bool)
        held = self.unusable(np.asarray(images), active) & self._has_cmd
        step = active & ~held
        out = self._last.copy()
        if step.any():
            cmds = np.asarray(self.policy.act(images, stamps, speeds, expert, step), np.float32)
            out[step] = cmds[step]
            self._last[step] = cmds[step]
            self._has_cmd |= step
        self.held = held
        return out
