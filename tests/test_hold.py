"""The hold rule: the last command repeated on black, saturated and frozen frames."""

from __future__ import annotations

import numpy as np

from steering_agent.policy.hold import HoldOnUnusable


class _Counting:
    """Steers the row's frame mean / 255 and counts its steps per row."""

    name = "counting"

    def __init__(self, batch):
        self.steps = np.zeros(batch, int)
        self.resets = []

    def reset(self, indices=None):
        self.resets.append(indices)

    def act(self, images, stamps, speeds, expert, active):
        self.steps += active
        out = np.zeros((len(images), 3), np.float32)
        out[:, 0] = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return out


def _frames(rng, n=2):
    return rng.integers(40, 200, (n, 12, 16, 3), dtype=np.uint8)


def test_black_saturated_and_frozen_frames_repeat_the_last_command_without_a_step():
    rng = np.random.default_rng(1)
    inner = _Counting(2)
    hold = HoldOnUnusable(inner, 2, stride=2)
    z, ex, on = np.zeros(2), np.zeros((2, 3), np.float32), np.ones(2, bool)
    good = _frames(rng)
    first = hold.act(good, z, z, ex, on)
    assert np.array_equal(inner.steps, [1, 1])
    # black, saturated, frozen
    for bad0 in (np.zeros_like(good[0]), np.full_like(good[0], 255), good[0]):
        frames = _frames(rng)
        frames[0] = bad0
        out = hold.act(frames, z, z, ex, on)
        assert out[0, 0] == first[0, 0]  # held
        assert out[1, 0] == np.float32(frames[1].mean() / 255.0)  # row 1 drove on
        good[0] = frames[0]
    assert inner.steps[0] == 1 and inner.steps[1] == 4 and hold.held[0]
    fresh = _frames(rng)
    out = hold.act(fresh, z, z, ex, on)
    assert inner.steps[0] == 2 and out[0, 0] == np.float32(fresh[0].mean() / 255.0)


def test_a_row_without_a_command_yet_is_stepped_and_reset_forgets():
    inner = _Counting(1)
    hold = HoldOnUnusable(inner, 1)
    black = np.zeros((1, 12, 16, 3), np.uint8)
    z, ex, on = np.zeros(1), np.zeros((1, 3), np.float32), np.ones(1, bool)
    hold.act(black, z, z, ex, on)  # nothing to hold yet: stepped
    hold.act(black, z, z, ex, on)  # now held
    assert inner.steps[0] == 1
    hold.reset([0])
    hold.act(black, z, z, ex, on)
    assert inner.steps[0] == 2 and inner.resets == [[0]]


def test_dim_frames_are_usable():
    rng = np.random.default_rng(2)
    inner = _Counting(1)
    hold = HoldOnUnusable(inner, 1)
    z, ex, on = np.zeros(1), np.zeros((1, 3), np.float32), np.ones(1, bool)
    for _ in range(3):
        dim = (_frames(rng, 1) // 4).astype(np.uint8)  # a tunnel: dark, not black
        hold.act(dim, z, z, ex, on)
    assert inner.steps[0] == 3
