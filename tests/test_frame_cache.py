"""Training frames through the calibrated view, canonical-car labels and the frame cache
(steering_agent.data.frame_cache), over bags recorded with randomised cameras and cars."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steering_agent.data import frame_cache
from steering_agent.data.frame_cache import calibrated_frames, canonical_steer, prepared_episodes
from steering_agent.data.recording import record_episodes
from steering_agent.data.setups import CANONICAL, draw_setup
from steering_agent.policy.calibration import CameraSpec
from steering_agent.policy.control import VehicleSpec, convert_steer
from steering_agent.policy.preprocess import PreprocessConfig, preprocess_frames


@pytest.fixture(scope="module")
def random_bags(tmp_path_factory):
    out = tmp_path_factory.mktemp("rand")
    # seeds 4 and 5 draw a non-canonical camera and car (checked below)
    record_episodes(out, 2, seed=4, max_steps=12, progress=False, randomize_camera=True)
    return out


def test_draws_repeat_and_cover_the_setups():
    assert draw_setup(11) == draw_setup(11)
    names = {draw_setup(s)[0] for s in range(200)}
    assert CANONICAL in names and len(names) == 6
    for s in range(50):
        name, kw = draw_setup(s)
        if name != CANONICAL:
            assert 0 <= kw["camera_pitch_deg"] + 1 <= 22 and 38 <= kw["max_steer_deg"] <= 75


def test_index_records_each_episodes_camera_and_car(random_bags):
    index = json.loads((random_bags / "index.json").read_text())
    for e in index["episodes"]:
        name, kw = draw_setup(e["seed"])
        assert name != CANONICAL and e["setup"] == name
        assert e["camera"]["pitch_deg"] == pytest.approx(kw["camera_pitch_deg"])
        assert e["camera"]["width"] == kw["width"]
        assert e["vehicle"]["max_steer_deg"] == pytest.approx(kw["max_steer_deg"])


def test_keep_size_records_the_drawn_mount_and_car_at_the_given_image_size(tmp_path, capsys):
    from steering_agent import cli

    out = tmp_path / "small"
    record_episodes(
        out, 1, seed=4, max_steps=6, progress=False, randomize_camera=True, keep_size=True
    )
    (e,) = json.loads((out / "index.json").read_text())["episodes"]
    name, kw = draw_setup(4)
    assert kw["width"] != 200  # the set-up's own size would differ
    assert e["setup"] == f"{name}@200x66"
    assert (e["camera"]["width"], e["camera"]["height"]) == (200, 66)
    assert e["camera"]["pitch_deg"] == pytest.approx(kw["camera_pitch_deg"])
    assert e["vehicle"]["max_steer_deg"] == pytest.approx(kw["max_steer_deg"])
    # without --randomize-camera the option means nothing: refused before recording
    rc = cli.main(["record", "--episodes", "1", "--out", str(tmp_path / "x"), "--keep-size"])
    assert rc == 2 and "--randomize-camera" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_prepared_frames_are_what_the_policy_sees(random_bags, tmp_path):
    from steering_agent.data.dataset import load_episodes
    from steering_agent.policy.policy import BatchedSteeringPolicy

    ep = load_episodes(random_bags).episodes[0]
    assert ep.camera is not None and ep.vehicle is not None
    cfg = PreprocessConfig()
    frames = calibrated_frames(ep.images, ep.camera, cfg)
    assert frames.shape == (len(ep), 3, 66, 200)
    policy = BatchedSteeringPolicy.load("checkpoints/cnn_lstm.pt", camera=ep.camera, device="cpu")
    policy._prepare(ep.images[:1], np.arange(1), True)
    assert np.array_equal(policy._frames[0].transpose(2, 0, 1), frames[0])
    # a non-canonical camera is not just resized
    assert not np.array_equal(frames, preprocess_frames(ep.images, cfg))


def test_prepared_frames_fill_missed_ground_as_the_policy_does(tmp_path):
    """A level camera misses the near ground: with the episode's speed, stamps and
    commands the prepared frames fill it from the frames before exactly as the policy
    does when it was given those commands (its `GroundMemory`), and differ from the
    calibration alone there."""
    from steering_agent.policy.policy import BatchedSteeringPolicy

    spec = CameraSpec.from_fov(200, 66, 60.0, x_m=1.0, y_m=0.0, height_m=1.2, pitch_deg=0.0,
                               roll_deg=0.0, yaw_deg=0.0).to_dict()  # fmt: skip
    vehicle = {"wheelbase_m": 2.5, "max_steer_deg": 40.0}
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (6, 66, 200, 3), dtype=np.uint8)
    stamps = np.array([0.0, 0.05, 0.10, 0.15, 0.9, 0.95])  # a gap before the fifth
    speed = np.array([8.0, np.nan, 8.5, 9.0, 9.0, 9.5], np.float32)  # the second unknown
    steer = np.array([0.1, -0.2, 0.3, 0.05, 0.0, -0.1], np.float32)
    cfg = PreprocessConfig()
    frames = calibrated_frames(images, spec, cfg, speed, stamps, steer, vehicle)
    alone = calibrated_frames(images, spec, cfg)
    policy = BatchedSteeringPolicy.load(
        "checkpoints/cnn_lstm.pt", camera=spec, vehicle=vehicle, device="cpu"
    )
    memory = policy._memory
    assert memory is not None
    for i in range(len(images)):
        dt = stamps[i] - stamps[i - 1] if i else np.nan
        if not 0.0 <= dt <= 0.5:
            policy.reset()
        else:
            policy.last_action[0, 0] = steer[i - 1]  # the command given before this frame
        sp = None if np.isnan(speed[i]) else [float(speed[i])]
        policy._set_motion(np.arange(1), np.array([0.0 if np.isnan(dt) else dt]), sp)
        policy._prepare(images[i : i + 1], np.arange(1), True)
        assert np.array_equal(policy._frames[0].transpose(2, 0, 1), frames[i]), i
    sel = memory.mask.astype(bool)
    for i in (2, 3, 5):  # moved from the frame before: other pixels there
        assert not np.array_equal(
            frames[i].transpose(1, 2, 0)[sel], alone[i].transpose(1, 2, 0)[sel]
        )
    for i in (0, 1, 4):  # first frame, unknown speed, after the gap: the calibration alone
        assert np.array_equal(frames[i], alone[i])
    assert np.array_equal(frames[:, :, ~sel], alone[:, :, ~sel])  # in view: the frame's own


def test_labels_become_the_canonical_cars():
    car = {"wheelbase_m": 2.5, "max_steer_deg": 40.0}
    steer = np.array([-0.5, 0.0, 0.2, 0.9], np.float32)
    got = canonical_steer(steer, car)
    want = [convert_steer(float(s), VehicleSpec(2.5, 40.0), VehicleSpec()) for s in steer]
    assert got == pytest.approx(want, abs=1e-6)
    assert np.array_equal(canonical_steer(steer, None), steer)


def test_cache_is_reused_and_invalidated_by_preprocessing(random_bags, tmp_path, monkeypatch):
    cfg = PreprocessConfig()
    first = list(prepared_episodes(random_bags, cfg, cache_dir=tmp_path))
    assert len(first) == 2 and len(list(tmp_path.glob("*.npy"))) == 2
    assert isinstance(first[0].frames, np.memmap)  # mapped from disk, not resident

    def no_reading(*a, **k):
        raise AssertionError("a cached episode was read from its bag again")

    monkeypatch.setattr(frame_cache, "_read_episode", no_reading)
    again = list(prepared_episodes(random_bags, cfg, cache_dir=tmp_path))
    assert [np.array_equal(a.frames, b.frames) for a, b in zip(first, again, strict=True)] == [
        True,
        True,
    ]
    with pytest.raises(AssertionError, match="read from its bag"):
        list(prepared_episodes(random_bags, PreprocessConfig(color="rgb"), cache_dir=tmp_path))


def test_a_bad_bag_is_named_and_skipped(random_bags, tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "broken.mcap").write_bytes(b"not a bag")
    problems: list[str] = []
    assert list(prepared_episodes(bad, PreprocessConfig(), problems=problems)) == []
    assert problems[0].startswith(str(bad)) and "cannot be opened" in problems[0]
