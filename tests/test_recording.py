"""Episode bags: topics, types, counts, stamps, pixels; the noise; the `record` verb."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from steering_agent import cli
from steering_agent.data import bagio, recording
from steering_agent.data.imageconv import image_to_rgb
from steering_agent.data.recording import EpisodeBagWriter, SteeringNoise, writer_throughput
from steering_agent.interfaces import topics
from steering_agent.interfaces.stamps import stamp_to_ns

EXPECTED_TYPES = {
    topics.CLOCK: "rosgraph_msgs/msg/Clock",
    topics.IMAGE: "sensor_msgs/msg/Image",
    topics.CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    topics.SPEEDOMETER: "std_msgs/msg/Float32",
    topics.CONTROL: "carla_msgs/msg/CarlaEgoVehicleControl",
    topics.EXPERT_CONTROL: "carla_msgs/msg/CarlaEgoVehicleControl",
}
SHIPPED_CNN = Path(__file__).resolve().parents[1] / "checkpoints" / "cnn.pt"
INFO = {"width": 20, "height": 8, "fx": 10.0, "fy": 10.0, "cx": 10.0, "cy": 4.0}


def read_bag(path):
    """{topic: [(log_ns, msg), ...]} and {topic: type} of a bag."""
    store = bagio.typestore()
    out: dict[str, list] = {}
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((ns, store.deserialize_cdr(raw, conn.msgtype)))
    return out, types


def test_episode_bag_has_bridge_topics_counts_stamps_and_pixels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 8, 20, 3), dtype=np.uint8)
    with EpisodeBagWriter(tmp_path / "bag", 20, 8, INFO) as writer:
        for i, image in enumerate(images):
            writer.write_step(2.0 + 0.05 * i, image, 5.5, [0.2, 0.6, 0.0], [0.1, 0.6, 0.0])
    assert (tmp_path / "bag" / "metadata.yaml").exists()
    msgs, types = read_bag(tmp_path / "bag")
    assert types == EXPECTED_TYPES
    assert {t: len(m) for t, m in msgs.items()} == dict.fromkeys(EXPECTED_TYPES, 7)
    stamps = [stamp_to_ns(m.header.stamp) for _, m in msgs[topics.IMAGE]]
    assert stamps == [ns for ns, _ in msgs[topics.IMAGE]] and np.all(np.diff(stamps) > 0)
    assert stamps[0] == 2_000_000_000
    assert [stamp_to_ns(m.clock) for _, m in msgs[topics.CLOCK]] == stamps
    for (_, msg), image in zip(msgs[topics.IMAGE], images, strict=True):
        assert msg.encoding == "bgra8" and msg.header.frame_id == "ego_vehicle/rgb_front"
        np.testing.assert_array_equal(image_to_rgb(msg), image)
    info = msgs[topics.CAMERA_INFO][0][1]
    assert (info.width, info.height) == (20, 8) and info.k[0] == 10.0 and info.k[5] == 4.0
    assert msgs[topics.SPEEDOMETER][0][1].data == pytest.approx(5.5)
    assert msgs[topics.CONTROL][0][1].steer == pytest.approx(0.2)
    assert msgs[topics.EXPERT_CONTROL][0][1].steer == pytest.approx(0.1)


def test_write_step_rejects_wrong_image_size(tmp_path):
    bad = np.zeros((9, 20, 3), np.uint8)
    with (
        EpisodeBagWriter(tmp_path / "bag", 20, 8, INFO) as writer,
        pytest.raises(ValueError, match=r"image shape \(9, 20, 3\) differs"),
    ):
        writer.write_step(0.0, bad, 0.0, [0, 0, 0], [0, 0, 0])


def test_noise_is_correlated_with_the_requested_std():
    noise = SteeringNoise(sigma=0.1, dt=0.05, theta=1.0, seed=3)
    x = np.array([noise.sample() for _ in range(40_000)])
    assert np.std(x) == pytest.approx(0.1, rel=0.2)
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert lag1 > 0.9  # white noise would give ~0
    assert SteeringNoise(0.0, 0.05).sample() == 0.0


def test_writer_throughput_writes_every_frame_and_reports_frames_per_second(tmp_path, monkeypatch):
    """The benchmark's bag holds all its frames, and the rate is frames / seconds (a fake
    clock of 0.5 s a reading, not this machine's speed)."""
    kept = tmp_path / "kept"
    kept.mkdir()  # the benchmark's temporary folder, kept to read the bag back
    monkeypatch.setattr(
        recording.tempfile, "TemporaryDirectory", lambda: contextlib.nullcontext(kept)
    )
    clock = SimpleNamespace(perf_counter=itertools.count(0.0, 0.5).__next__)
    monkeypatch.setattr(recording, "time", clock)
    assert writer_throughput(16, 8, frames=5) == pytest.approx(5 / 0.5)
    msgs, types = read_bag(kept / "bag")
    assert types == EXPECTED_TYPES
    assert {t: len(m) for t, m in msgs.items()} == dict.fromkeys(EXPECTED_TYPES, 5)
    assert {(m.width, m.height) for _, m in msgs[topics.IMAGE]} == {(16, 8)}


def test_record_refuses_evaluation_seeds(tmp_path, capsys):
    rc = cli.main(["record", "--episodes", "2", "--out", str(tmp_path), "--seed", "999999"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "road seed 1000000" in err and "reserved for evaluation" in err
    assert not list(tmp_path.iterdir())


class ObservationLog:
    """Wraps the env to keep every observation image it returns."""

    def __init__(self, env):
        self.env, self.images = env, []
        self.unwrapped = env.unwrapped

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.images.append(obs["image"].copy())
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        self.images.append(out[0]["image"].copy())
        return out


def test_recorded_images_equal_env_observations(tmp_path):
    import gymnasium

    import sim  # noqa: F401  (registers the environment)
    from steering_agent.data.recording import record_episode

    env = ObservationLog(gymnasium.make("SteeringAgent/Drive-v0", route_length_m=50.0))
    entry = record_episode(env, tmp_path / "bag", 7, SteeringNoise(0.1, 0.05, seed=7))
    msgs, _ = read_bag(tmp_path / "bag")
    assert len(msgs[topics.IMAGE]) == entry["steps"] == len(env.images) - 1
    for (_, msg), image in zip(msgs[topics.IMAGE], env.images, strict=False):
        np.testing.assert_array_equal(image_to_rgb(msg), image)
    executed = np.array([m.steer for _, m in msgs[topics.CONTROL]])
    expert = np.array([m.steer for _, m in msgs[topics.EXPERT_CONTROL]])
    assert np.abs(executed - expert).max() > 0.01  # the noise reached the executed control


def test_record_cli_two_episodes(tmp_path):
    out = tmp_path / "rec"
    argv = [
        "record",
        "--episodes",
        "2",
        "--out",
        str(out),
        "--seed",
        "11",
        "--noise",
        "0.05",
        "--route-length",
        "50",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    index = json.loads((out / "index.json").read_text())
    assert [e["seed"] for e in index["episodes"]] == [11, 12]
    for entry in index["episodes"]:
        msgs, types = read_bag(out / entry["bag"])
        assert types == EXPECTED_TYPES
        counts = {t: len(m) for t, m in msgs.items()}
        assert counts == dict.fromkeys(EXPECTED_TYPES, entry["steps"]) and entry["steps"] > 10
        assert entry["frames"] == entry["steps"] and entry["distance_m"] > 0
        log_ns = [ns for ns, _ in msgs[topics.IMAGE]]
        assert np.all(np.diff(log_ns) > 0)
        assert msgs[topics.IMAGE][0][1].width == index["width"] == 200
    assert cli.main(argv) == 2  # refuses to overwrite


class _StandInPolicy:
    """A stand-in for SteeringPolicy (named as one): steers a constant, counts resets."""

    def __init__(self, steer: float) -> None:
        self.steer, self.resets = steer, 0
        self.speed_controller = SimpleNamespace(target_speed_mps=10.0)

    def reset(self) -> None:
        self.resets += 1

    def step(self, image, stamp_s, speed_mps=None):
        return SimpleNamespace(steer=self.steer, throttle=0.3, brake=0.0)


def test_dagger_driver_hands_over_beyond_takeover_and_back_below_release():
    from steering_agent.data.dagger import PolicyDriver

    driver = PolicyDriver.__new__(PolicyDriver)  # its policy is the stand-in
    driver.name, driver.policy = "stand-in", _StandInPolicy(0.4)
    driver.takeover_m, driver.release_m = 0.7, 0.25
    driver.reset()
    obs = {"image": np.zeros((4, 4, 3), np.uint8), "speed": np.array([5.0])}
    expert = np.array([-0.2, 0.5, 0.0], np.float32)
    laterals = [0.1, 0.5, 0.8, 0.6, 0.3, 0.2, 0.9, 0.1]
    driven = [
        driver.command(obs, {"lateral_error_m": lat, "speed_limit_mps": 7.0}, expert, i * 0.05)[0]
        for i, lat in enumerate(laterals)
    ]
    np.testing.assert_allclose(driven, [0.4, 0.4, -0.2, -0.2, -0.2, 0.4, -0.2, 0.4], atol=1e-6)
    assert driver.summary() == {"driver": "stand-in", "expert_share": 0.5, "takeovers": 2}
    assert driver.policy.speed_controller.target_speed_mps == 7.0  # the road's speed
    driver.reset()
    assert driver.summary()["takeovers"] == 0 and driver.policy.resets == 2


def test_record_with_a_driver_executes_the_checkpoint_and_labels_with_the_expert(tmp_path):
    """DAgger: the shipped checkpoint drives, the label topic is the expert's action."""
    out = tmp_path / "dagger"
    argv = ["record", "--out", str(out), "--seed", "21", "--route-length", "60",
            "--driver", str(SHIPPED_CNN), "--look", "varied", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    (entry,) = json.loads((out / "index.json").read_text())["episodes"]
    assert entry["driver"] == "cnn.pt" and 0.0 <= entry["expert_share"] <= 1.0
    msgs, types = read_bag(out / entry["bag"])
    assert types == EXPECTED_TYPES
    executed = np.array([m.steer for _, m in msgs[topics.CONTROL]])
    expert = np.array([m.steer for _, m in msgs[topics.EXPERT_CONTROL]])
    assert len(executed) == len(expert) == entry["steps"] > 20
    # the network, not the expert, drove (they agree only roughly); the labels are the
    # expert's: the same road driven by the expert alone starts with the same label
    assert np.abs(executed - expert).max() > 1e-3
    ref = tmp_path / "expert"
    assert cli.main(["record", "--out", str(ref), *argv[3:7], *argv[9:]]) == 0
    (ref_entry,) = json.loads((ref / "index.json").read_text())["episodes"]
    assert "driver" not in ref_entry
    ref_msgs, _ = read_bag(ref / ref_entry["bag"])
    ref_expert = np.array([m.steer for _, m in ref_msgs[topics.EXPERT_CONTROL]])
    assert expert[0] == pytest.approx(ref_expert[0])  # same start, same label
    ref_executed = np.array([m.steer for _, m in ref_msgs[topics.CONTROL]])
    np.testing.assert_allclose(ref_executed, ref_expert)  # without a driver: the expert


def test_record_weather_and_lanes_fix_the_world_of_every_episode(tmp_path):
    """`--weather night --lanes-per-direction 3` records the frames the env makes with
    those keywords, not the seed's own draw."""
    import gymnasium

    import sim  # noqa: F401  (registers the environments)

    out = tmp_path / "night"
    argv = ["record", "--out", str(out), "--seed", "7", "--max-steps", "3", "--look", "varied",
            "--weather", "night", "--lanes-per-direction", "3", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    (entry,) = json.loads((out / "index.json").read_text())["episodes"]
    msgs, _ = read_bag(out / entry["bag"])
    first = image_to_rgb(msgs[topics.IMAGE][0][1])

    def frame(**kw):
        env = gymnasium.make("SteeringAgent/Drive-v0", look="varied", **kw)
        obs, info = env.reset(seed=7)
        w = env.unwrapped.weather
        weather = "none" if w is None else w.name
        env.close()
        return obs["image"], info["lanes_same"], weather

    want, lanes, weather = frame(weather="night", lanes_per_direction=3)
    assert np.array_equal(first, want)
    assert (lanes, weather) == (3, "night")
    drawn, drawn_lanes, drawn_weather = frame()  # the seed's own world differs
    assert (drawn_lanes, drawn_weather) != (3, "night") and not np.array_equal(first, drawn)
    # a bad value is refused before anything is written
    with pytest.raises(SystemExit):
        cli.main(["record", "--out", str(tmp_path / "x"), "--lanes-per-direction", "5"])
    assert not (tmp_path / "x").exists()


def _add_entries(out: str, name: str, n: int, go) -> None:
    from steering_agent.data.episode_bags import add_to_episode_index

    go.wait(30)  # both start together
    mine = []
    for i in range(n):
        mine.append({"bag": f"{name}_{i:04d}_seed{i}", "seed": i, "frames": i})
        add_to_episode_index(Path(out), mine)


def test_recordings_side_by_side_into_one_folder_lose_no_index_entry(tmp_path):
    """Two processes adding to one index.json at once: every entry of both stays, each
    recording's in its order (a read-merge-write under the index lock)."""
    import multiprocessing

    from steering_agent.data.episode_bags import read_episode_index, write_episode_index

    write_episode_index(tmp_path, [{"bag": "old_0000_seed9", "seed": 9}])
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_add_entries, args=(str(tmp_path), n, 150, go)) for n in "ab"]
    for p in procs:
        p.start()
    time.sleep(1.0)
    go.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    bags = [e["bag"] for e in read_episode_index(tmp_path)]
    assert bags[0] == "old_0000_seed9" and len(bags) == len(set(bags)) == 301
    for name in "ab":
        want = [f"{name}_{i:04d}_seed{i}" for i in range(150)]
        assert [b for b in bags if b.startswith(name)] == want
