"""Camera faults in training chunks (steering_agent.data.augment.CameraFaults)."""

from __future__ import annotations

import numpy as np

from steering_agent.data.augment import CameraFaults


def _frames(b=3, t=16, value=None):
    rng = np.random.default_rng(0)
    f = rng.integers(20, 230, (b, t, 3, 4, 5), dtype=np.uint8)
    # every frame distinct, so a frozen frame is recognisable
    f[:, :, 0, 0, 0] = np.arange(b * t).reshape(b, t) % 200 + 20
    return f


def test_off_changes_nothing():
    f = _frames()
    before = f.copy()
    CameraFaults(3, 0.0, 0.05, "yuv", np.random.default_rng(1)).apply(f, np.ones(3, bool))
    assert np.array_equal(f, before)


def test_faults_are_black_frozen_dim_or_glare_and_last_long():
    faults = CameraFaults(3, 2.0, 0.05, "yuv", np.random.default_rng(2))
    black, white = faults.black[:, 0, 0], faults.white[:, 0, 0]
    seen = set()
    fresh = np.ones(3, bool)
    for _ in range(40):
        f = _frames()
        orig = f.copy()
        faults.apply(f, fresh)
        fresh = np.zeros(3, bool)
        changed = (f != orig).reshape(3, 16, -1).any(axis=2)
        for i, k in zip(*np.nonzero(changed), strict=True):
            px = f[i, k].reshape(3, -1)
            if (px == black[:, None]).all():
                seen.add("black")
            elif (px == white[:, None]).all():
                seen.add("glare")
            elif f[i, k, 0].mean() < orig[i, k, 0].mean() * 0.6:  # luma dimmed
                seen.add("dim")
            else:
                seen.add("frozen")
    assert seen == {"black", "glare", "dim", "frozen"}
    assert faults.faulted_frames > 0


def test_a_fault_runs_across_chunks_and_ends_with_the_episode():
    faults = CameraFaults(1, 1.0, 0.05, "yuv", np.random.default_rng(3))
    faults.p_start = 0.0  # no new faults: one set by hand, black, 20 frames long
    faults.left[0], faults.kind[0] = 20, 0
    first, second = _frames(1), _frames(1)
    faults.apply(first, np.zeros(1, bool))
    faults.apply(second, np.zeros(1, bool))  # the same episode: the fault goes on
    black = faults.black[:, 0, 0]
    is_black = [bool((f.reshape(3, -1) == black[:, None]).all()) for f in
                np.concatenate([first[0], second[0]])]  # fmt: skip
    assert is_black == [True] * 20 + [False] * 12
    faults.left[0] = 5
    third = _frames(1)
    orig = third.copy()
    faults.apply(third, np.ones(1, bool))  # a new episode: no fault carried into it
    assert np.array_equal(third, orig)
