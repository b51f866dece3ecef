"""Camera faults of the memory suite: deterministic per seed, and the frames they make."""

from __future__ import annotations

import numpy as np
import pytest

from sim.seeds import eval_seeds
from steering_agent.evaluation import faults
from steering_agent.evaluation.vec_eval import EvalConfig, ExpertPolicy, run_episodes

DT = 0.05


@pytest.mark.parametrize("fault", faults.memory_faults(), ids=lambda f: f.name)
def test_schedules_are_deterministic_per_seed_and_within_their_ranges(fault):
    a = fault.schedule(1_000_000, 4000, DT)
    assert np.array_equal(a, fault.schedule(1_000_000, 4000, DT))
    assert np.array_equal(a[:1500], fault.schedule(1_000_000, 1500, DT))
    if fault.kind == "latency":
        assert not a.any() and fault.delay_steps(DT) == round(fault.latency_s / DT)
        return
    assert a.any() and not np.array_equal(a, fault.schedule(1_000_001, 4000, DT))
    edges = np.diff(np.concatenate([[0], a.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = (ends - starts)[:-1] * DT  # the last window may be cut by the end
    if fault.kind != "burst":
        lo, hi = fault.duration_s
        assert np.all(lengths >= lo - DT) and np.all(lengths <= hi + DT)
        assert starts[0] * DT >= fault.gap_s[0] - DT
    else:  # Gilbert-Elliott: mean loss p_enter / (p_enter + p_leave)
        expected = fault.p_enter / (fault.p_enter + fault.p_leave)
        assert abs(a.mean() - expected) < 0.5 * expected


def test_channel_makes_black_frozen_glare_dim_and_missing_frames_at_the_scheduled_steps():
    rng = np.random.default_rng(0)
    frames = rng.integers(30, 200, (200, 6, 8, 3), dtype=np.uint8)
    for kind in ("black", "frozen", "glare", "dim", "missing"):
        fault = faults.CameraFault(kind, kind, (0.3, 0.5), (1.0, 2.0))
        ch = faults.FaultChannel(fault)
        ch.start(1_000_000, 200, DT)
        out = np.zeros((6, 8, 3), np.uint8)
        for k in range(200):
            prev = out.copy()
            seen = ch.frame(k, frames[k], out)
            if not fault.schedule(1_000_000, 200, DT)[k]:
                assert seen and np.array_equal(out, frames[k])
            elif kind == "black":
                assert seen and not out.any()
            elif kind == "frozen":
                assert seen and np.array_equal(out, prev)
            elif kind == "glare":
                assert seen and np.all(out == 255)
            elif kind == "dim":
                assert seen and 0 < out.mean() < 0.3 * frames[k].mean()
            else:
                assert not seen and np.array_equal(out, prev)


class _Recorder(ExpertPolicy):
    """The expert, recording which rows were stepped and when it was reset."""

    def __init__(self):
        self.stepped, self.resets = [], 0

    def reset(self, indices=None):
        self.resets += 1

    def act(self, images, stamps, speeds, expert, active):
        if active[0]:
            self.stepped.append(round(float(stamps[0]) / DT))
        out = expert.copy()
        out[:, 0] += 0.01  # never exactly the brake's straight wheels
        return out


def test_missing_frames_hold_the_command_until_the_watchdog_then_brake():
    fault = faults.CameraFault("gap", "missing", (1.0, 1.0), (1.0, 1.0))
    cfg = EvalConfig(route_length_m=40.0, num_envs=1, fault=fault)
    policy = _Recorder()
    (trace,) = run_episodes(policy, eval_seeds(1), cfg)
    mask = fault.schedule(eval_seeds(1)[0], trace.steps + 1, DT)[: trace.steps]
    assert policy.stepped == list(np.flatnonzero(~mask))  # not stepped where frames miss
    first = int(np.argmax(mask))
    watch = round(faults.WATCHDOG_S / DT)
    steer = np.asarray(trace.steer)
    # held: the command in effect at the last frame, until the watchdog; then braking
    assert np.all(steer[first : first + watch - 1] == steer[first - 1])
    end = first + int(np.argmin(mask[first:]))
    assert end - first > watch and np.all(steer[first + watch - 1 : end] == 0.0)
    assert steer[first - 1] != 0.0
    assert policy.resets >= 2  # the episode start, and the watchdog's reset
