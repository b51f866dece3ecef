"""The `recorder` node as a real process: fed by another process, stopped by a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rosbags.rosbag2 import Reader

from steering_agent.data import bagio
from steering_agent.interfaces import topics

REPO = Path(__file__).resolve().parents[1]
FED = [topics.IMAGE, topics.SPEEDOMETER, topics.CLOCK]

pytestmark = pytest.mark.ros


def _env():
    # With the project's one-host Fast DDS profile from os.environ (tests/conftest.py).
    return {**os.environ, "PYTHONPATH": str(REPO)}


def start_recorder(output: Path, *params: str) -> subprocess.Popen:
    topic_list = "[" + ",".join(f"'{t}'" for t in FED) + "]"
    cmd = [
        sys.executable,
        "-m",
        "steering_agent.ros.recorder_node",
        "--ros-args",
        "-p",
        f"output:={output}",
        "-p",
        f"topics:={topic_list}",
    ]
    for param in params:
        cmd += ["-p", param]
    return subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def feed(width: int, height: int, seconds: float, linger: float = 1.0) -> dict[str, int]:
    """Run tools/feed_images.py to the end (every message acknowledged by the
    subscribers); {topic: messages published}."""
    cmd = [
        sys.executable,
        "tools/feed_images.py",
        "--rate",
        "30",
        "--duration",
        str(seconds),
        "--width",
        str(width),
        "--height",
        str(height),
        "--linger",
        str(linger),
    ]
    done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(result["acked"].values()), f"not every message was acknowledged: {result}"
    published = result["published"]
    return {
        topics.IMAGE: published["image"],
        topics.SPEEDOMETER: published["speed"],
        topics.CLOCK: published["clock"],
    }


def stop(proc: subprocess.Popen, sig: int) -> str:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"recorder did not exit after signal {sig}:\n{out}")
    return out


def bag_counts(bags: list[Path]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for bag in bags:
        with Reader(bag) as reader:
            for conn in reader.connections:
                counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
    return counts


@pytest.mark.slow
def test_sigint_leaves_a_complete_bag_with_every_message(tmp_path, ros_domain):
    proc = start_recorder(tmp_path / "rec")
    try:
        published = feed(800, 600, 2.0)
    finally:
        out = stop(proc, signal.SIGINT)
    assert proc.returncode == 0, out
    bags = sorted((tmp_path / "rec").iterdir())
    assert [b.name for b in bags] == ["bag_0000"]
    assert (bags[0] / "metadata.yaml").exists()
    assert bag_counts(bags) == published, out
    with Reader(bags[0]) as reader:
        conn = next(c for c in reader.connections if c.topic == topics.IMAGE)
        _, _, raw = next(reader.messages(connections=[conn]))
    msg = bagio.typestore().deserialize_cdr(raw, conn.msgtype)
    assert (msg.width, msg.height, msg.encoding) == (800, 600, "bgra8")


@pytest.mark.slow
def test_sigterm_closes_split_bags(tmp_path, ros_domain):
    proc = start_recorder(tmp_path / "rec", "max_bag_duration_s:=0.7")
    try:
        published = feed(200, 66, 2.0)
    finally:
        out = stop(proc, signal.SIGTERM)
    bags = sorted((tmp_path / "rec").iterdir())
    assert len(bags) >= 2, out
    assert all((b / "metadata.yaml").exists() for b in bags)
    assert bag_counts(bags) == published, out


@pytest.mark.slow
def test_kill_9_then_recover_bag(tmp_path, ros_domain):
    proc = start_recorder(tmp_path / "rec", "flush_period_s:=0.2")
    try:
        published = feed(200, 66, 1.5)
    finally:
        stop(proc, signal.SIGKILL)
    bag = tmp_path / "rec" / "bag_0000"
    assert not (bag / "metadata.yaml").exists()
    # The feeder idles 1 s after every message was acknowledged: all are in flushed chunks.
    assert bagio.recover_bag(bag) == sum(published.values())
    assert bag_counts([bag]) == published


def test_parameters_have_defaults_and_descriptions(tmp_path, ros_domain, monkeypatch):
    import rclpy

    # Default transports: the node is destroyed below, and a LARGE_DATA (TCP) participant
    # can hang when deleted.
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    monkeypatch.chdir(tmp_path)  # the default output folder is made in the current one

    from steering_agent.ros.recorder_node import DEFAULT_TOPICS, RecorderNode, message_class

    rclpy.init()
    try:
        node = RecorderNode()
        try:
            assert node.get_parameter("topics").value == DEFAULT_TOPICS
            assert topics.CONTROL in DEFAULT_TOPICS and topics.CLOCK in DEFAULT_TOPICS
            for name in ("output", "max_bag_size_mb", "max_bag_duration_s", "flush_period_s"):
                assert node.describe_parameter(name).description
            node.close()  # nothing received: no bag created
            assert node.bags == []
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
    assert message_class("std_msgs/msg/Float32").__name__ == "Float32"
