from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import steering_agent.policy.policy as policy_module
from steering_agent.policy.backends import resolve_backend
from steering_agent.policy.checkpoint import save_checkpoint
from steering_agent.policy.control import Control, SpeedController
from steering_agent.policy.latency import benchmark_latency
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.policy import BatchedSteeringPolicy, SteeringPolicy
from steering_agent.policy.preprocess import PreprocessConfig, normalize, preprocess_frames

PRE = PreprocessConfig()
# Both per-frame backends must behave the same; onnxruntime is part of `make setup`.
BACKENDS = ["torch", "onnxruntime"]


def _model(arch="cnn_lstm", seed=0):
    torch.manual_seed(seed)
    return SteeringNet(ModelConfig(arch=arch)).eval()


def _images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 66, 200, 3), dtype=np.uint8)


def _steps(policy, images, t0=0.0, dt=0.05):
    return np.array([policy.step(im, t0 + i * dt, 8.0).steer for i, im in enumerate(images)])


@torch.inference_mode()
def _forward(model, images):
    x = normalize(preprocess_frames(images, PRE))[None]
    return model(x, None)[0][0].numpy()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn", "cnn_stack"])
def test_stepping_equals_one_forward(arch, backend):
    model, images = _model(arch), _images(12)
    policy = SteeringPolicy(model, PRE, device="cpu", backend=backend)
    assert policy.backend == backend
    np.testing.assert_allclose(_steps(policy, images), _forward(model, images), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_restores_initial_behaviour_and_state_matters(backend):
    model, images = _model(), _images(10)
    policy = SteeringPolicy(model, PRE, device="cpu", backend=backend)
    first = _steps(policy, images)
    again = _steps(policy, images, t0=first.size * 0.05)  # state carried on: differs
    assert np.abs(again - first).max() > 1e-4
    policy.reset()
    np.testing.assert_allclose(_steps(policy, images, t0=100.0), first, atol=1e-6)


@pytest.mark.parametrize("jump", [-0.05, 0.6])
def test_time_going_back_or_jumping_resets(jump):
    model, images = _model(), _images(6)
    policy = SteeringPolicy(model, PRE, device="cpu", max_gap_s=0.5)
    first = _steps(policy, images)
    t0 = 5 * 0.05 + jump  # relative to the last stamp
    np.testing.assert_allclose(_steps(policy, images, t0=t0), first, atol=1e-6)


def test_small_gap_keeps_state():
    model, images = _model(), _images(6)
    policy = SteeringPolicy(model, PRE, device="cpu", max_gap_s=0.5)
    first = _steps(policy, images)
    assert np.abs(_steps(policy, images, t0=5 * 0.05 + 0.4) - first).max() > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_in_range_and_nan_gives_safe_stop(backend):
    model = _model()
    policy = SteeringPolicy(model, PRE, device="cpu", backend=backend)
    c = policy.step(_images(1)[0], 0.0, 3.0)
    assert isinstance(c, Control)
    assert -1 <= c.steer <= 1 and 0 <= c.throttle <= 1 and 0 <= c.brake <= 1
    with torch.no_grad():
        model.head[2].bias.fill_(float("nan"))
    # onnxruntime runs a copy of the weights taken when the policy was made: make it anew.
    policy = SteeringPolicy(model, PRE, device="cpu", backend=backend)
    assert policy.step(_images(1)[0], 0.05, 3.0) == Control(0.0, 0.0, 1.0)
    assert policy.step(_images(1)[0], 0.10, 3.0) == Control(0.0, 0.0, 1.0)


def test_backend_choice_and_errors():
    assert SteeringPolicy(_model(), PRE, device="cpu").backend == "onnxruntime"  # auto
    with pytest.raises(ValueError, match="not one of"):
        SteeringPolicy(_model(), PRE, device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("onnxruntime", torch.device("cuda"))
    assert resolve_backend("auto", torch.device("cuda")) == "torch"


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_stream_path_matches_the_batched_one(backend):
    """SteeringPolicy.step (Python floats) and BatchedSteeringPolicy.step (numpy) agree."""
    model, images = _model(), _images(12)
    single = SteeringPolicy(model, PRE, device="cpu", backend=backend)
    batched = BatchedSteeringPolicy(model, PRE, 1, device="cpu", backend=backend)
    # Steady frames, a jump back in time, a gap, no speed, a NaN speed, a NaN stamp.
    stamps = [0.0, 0.05, 0.1, 0.02, 0.07, 0.9, 0.95, 1.0, 1.05, np.nan, 1.1, 1.15]
    speeds = [3.0, 4.0, 5.0, 5.0, None, 6.0, np.nan, 7.0, 12.0, 8.0, 8.0, 8.0]
    for im, t, v in zip(images, stamps, speeds, strict=True):
        c = single.step(im, t, v)
        a = batched.step(im[None], [t], None if v is None else [v])[0]
        np.testing.assert_allclose([c.steer, c.throttle, c.brake], a, atol=1e-6)
    np.testing.assert_allclose(
        single.speed_controller.integral, batched.speed_controller.integral, atol=1e-6
    )
    with pytest.raises(ValueError, match="not 1"):
        SteeringPolicy.from_batched(BatchedSteeringPolicy(model, PRE, 2, device="cpu"))


def test_speed_controller():
    ctl = SpeedController(10.0)
    dt = np.array([0.05])
    thr, brk = ctl.update(np.array([0.0]), np.array([5.0]), dt)
    assert thr[0] > 0.5 and brk[0] == 0
    ctl.reset()
    thr, brk = ctl.update(np.array([0.0]), np.array([15.0]), dt)
    assert thr[0] == 0 and brk[0] > 0.5
    ctl.reset()
    straight = ctl.update(np.array([0.0]), np.array([8.0]), dt)[0][0]
    ctl.reset()
    sharp = ctl.update(np.array([0.8]), np.array([8.0]), dt)
    assert sharp[0][0] < straight and sharp[1][0] > 0  # slows for the curve
    thr, brk = SpeedController(10.0).update(np.array([0.0]), None, dt)
    assert 0 < thr[0] < 1 and brk[0] == 0
    ctl = SpeedController(10.0, batch=2)
    thr, brk = ctl.update(np.zeros(2), np.array([np.nan, 20.0]), np.full(2, 0.05))
    assert thr[0] == ctl.cruise_throttle and brk[1] > 0 and np.isfinite(ctl.integral).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_streams_are_independent(backend):
    model, images = _model(), _images(16).reshape(8, 2, 66, 200, 3)
    batched = BatchedSteeringPolicy(model, PRE, batch_size=2, device="cpu", backend=backend)
    out = np.stack([batched.step(images[i], [i * 0.05] * 2, [8.0, 8.0]) for i in range(8)])
    for k in range(2):
        np.testing.assert_allclose(out[:, k, 0], _forward(model, images[:, k]), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("arch", ["cnn_lstm", "cnn_stack"])
def test_batched_reset_indices_and_active_mask(backend, arch):
    model, images = _model(arch), _images(18).reshape(6, 3, 66, 200, 3)
    p = BatchedSteeringPolicy(model, PRE, batch_size=3, device="cpu", backend=backend)
    for i in range(3):
        p.step(images[i], [i * 0.05] * 3)
    p.reset([1])
    active = np.array([True, True, False])
    before = p.last_action.copy()
    out = p.step(images[3], [0.15] * 3, active=active)
    np.testing.assert_array_equal(out[2], before[2])  # inactive stream untouched
    fresh = _forward(model, images[3:4, 1])
    np.testing.assert_allclose(out[1, 0], fresh[0], atol=1e-5)  # stream 1 restarted
    carried = _forward(model, images[:4, 0])
    np.testing.assert_allclose(out[0, 0], carried[-1], atol=1e-5)  # stream 0 carried on
    # Stream 2 skipped a frame: its next step continues from its own state.
    out = p.step(images[4], [0.2] * 3)
    seq2 = np.concatenate([images[:3, 2], images[4:5, 2]])
    np.testing.assert_allclose(out[2, 0], _forward(model, seq2)[-1], atol=1e-5)


def test_frames_of_changing_size_are_each_preprocessed_as_preprocess_frames_does():
    """The policy looks the crop rows up once per frame size: frames whose size changes
    from one step to the next (a camera reconfigured mid-drive) are still each cropped
    and resized for their own size, as `preprocess_frames` does them."""
    pre = PreprocessConfig(crop_top=0.2, color="yuv")
    policy = SteeringPolicy(_model(), pre, device="cpu")
    rng = np.random.default_rng(3)
    sizes = [(66, 200), (264, 800), (66, 200), (150, 400), (264, 800)]
    for i, (h, w) in enumerate(sizes):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        policy.step(image, i * 0.05, 8.0)
        want = preprocess_frames(image, pre)[0].transpose(1, 2, 0)
        np.testing.assert_array_equal(policy._batched._frames[0], want)


def test_load_from_file_uses_checkpoint_settings(tmp_path):
    model = _model()
    pre = PreprocessConfig(crop_top=0.1, color="rgb")
    path = save_checkpoint(tmp_path / "p.pt", model, model.cfg, pre, {"target_speed_mps": 6.5})
    policy = SteeringPolicy.load(path, device="auto")
    assert policy._batched.preprocess_cfg == pre
    assert policy.speed_controller.target_speed_mps == 6.5
    assert BatchedSteeringPolicy.load(path, 4, device="cpu").batch_size == 4


_PREPARE = BatchedSteeringPolicy._prepare  # as defined, whatever a test has patched


class ScriptedWork:
    """A stand-in clock whose time passes only inside the wrapped work: the i-th call of
    the wrapped function takes durations_ms[i] and logs how many frames it was given."""

    def __init__(self, monkeypatch, module, durations_ms) -> None:
        """`module`: the policy module (its policy's per-step `_prepare` is wrapped) or the
        latency module (its `preprocess_frames`, the window path's, is)."""
        self.now, self.frames = 0.0, []
        durations = iter(durations_ms)

        def advance(images) -> None:
            self.frames.append(1 if np.ndim(images) == 3 else len(images))
            self.now += next(durations) / 1e3

        if module is policy_module:

            def work(policy, images, *args):
                advance(images)
                return _PREPARE(policy, images, *args)

            monkeypatch.setattr(policy_module.BatchedSteeringPolicy, "_prepare", work)
        else:

            def work(images, *args):
                advance(images)
                return preprocess_frames(images, *args)

            monkeypatch.setattr(module, "preprocess_frames", work)
        import steering_agent.policy.latency as latency

        monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=lambda: self.now))


@pytest.mark.parametrize("backend", BACKENDS)
def test_benchmark_latency_reports_both_modes(backend, monkeypatch):
    """Every frame is stepped; the statistics are those of the timed calls, in ms, with
    the warm-up left out (a scripted clock, not this machine's speed)."""
    import steering_agent.policy.latency as latency

    model = _model()
    # stateful, batch 1: 1 warm-up call of 100 ms (left out), then 5 timed calls
    work = ScriptedWork(monkeypatch, policy_module, [100, 3, 1, 4, 1, 5])
    policy = BatchedSteeringPolicy(model, PRE, 1, device="cpu", backend=backend)
    r = benchmark_latency(policy, batch=1, repeats=5, warmup=1)
    assert work.frames == [1] * 6  # every frame went through the policy
    assert not np.array_equal(policy.last_action[0], [0.0, 0.0, 1.0])  # not the reset action
    assert r["median_ms"] == pytest.approx(3.0) and r["p90_ms"] == pytest.approx(4.0)
    assert r["mean_ms"] == pytest.approx(2.8) and r["min_ms"] == pytest.approx(1.0)
    assert (r["batch"], r["window"], r["repeats"]) == (1, None, 5)
    assert (r["backend"], r["device"]) == (backend, "cpu")
    assert isinstance(r["threads"], int) and r["threads"] >= 1
    # stateful, batch 2: one batched step of both streams per call
    work = ScriptedWork(monkeypatch, policy_module, [50, 2, 2, 6])
    r = benchmark_latency(model, batch=2, repeats=3, warmup=1, backend=backend)
    assert work.frames == [2] * 4
    assert r["median_ms"] == pytest.approx(2.0) and r["p90_ms"] == pytest.approx(2.0)
    assert r["min_ms"] == pytest.approx(2.0) and r["mean_ms"] == pytest.approx(10 / 3)
    # the stateless window: each new frame preprocessed once, then the window re-run
    stateful = work
    work = ScriptedWork(monkeypatch, latency, [9, 7, 8])
    r = benchmark_latency(model, batch=2, window=4, repeats=2, warmup=1, backend=backend)
    assert work.frames == [2] * 3 and stateful.frames == [2] * 4  # the window path only
    assert (r["window"], r["batch"], r["repeats"], r["backend"]) == (4, 2, 2, backend)
    assert r["median_ms"] == pytest.approx(7.5) and r["min_ms"] == pytest.approx(7.0)
    assert r["p90_ms"] == pytest.approx(7.0)  # times[int(0.9 * (n - 1))] of the sorted two
