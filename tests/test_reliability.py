"""Safety and reliability between real processes: the watchdog brakes on wall time also
under use_sim_time, a stream of unusable frames is braked for, integers are taken where
a float is declared, and the recorder refuses an output it cannot write at start."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from tests.ros_helpers import Probe, log_text, time_msg

W, H = 64, 48
WATCHDOG_S = 0.4


def _image(ns: int, encoding: str = "bgra8"):
    from sensor_msgs.msg import Image

    from steering_agent.data.imageconv import fill_image_msg

    rgb = np.random.default_rng(ns % 97).integers(0, 256, (H, W, 3), dtype=np.uint8)
    msg = fill_image_msg(Image(), rgb, "bgra8")
    msg.encoding = encoding  # an unsupported one makes the frame undecodable
    msg.header.stamp = time_msg(ns)
    return msg


class Agent:
    """An agent process and a probe that publishes frames and times its commands."""

    def __init__(self, tmp, checkpoint, **params) -> None:
        from carla_msgs.msg import CarlaEgoVehicleControl
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        from steering_agent.interfaces import topics
        from steering_agent.ros.closed_loop import start_node

        self.log = tmp / "agent.log"
        p = {"checkpoint": str(checkpoint), "control_type": "carla",
             "watchdog_timeout_s": WATCHDOG_S, "error_log_period_s": 0.0, **params}  # fmt: skip
        self.proc = start_node("agent", p, self.log)
        self.probe = Probe(f"reliability_probe_{tmp.name}")
        self.got: list[tuple[float, object]] = []  # (wall time received, command)
        self.probe.node.create_subscription(
            CarlaEgoVehicleControl, topics.CONTROL,
            lambda m: self.got.append((time.monotonic(), m)), QoSProfile(depth=100),
        )  # fmt: skip
        self.pub = self.probe.node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
        up = self.probe.spin_until(
            lambda: (
                self.pub.get_subscription_count() > 0
                and self.probe.node.count_publishers(topics.CONTROL) > 0
            ),
            60.0,
        )
        assert up and self.proc.poll() is None, log_text(self.log)

    def send(self, ns: int, encoding: str = "bgra8") -> None:
        self.pub.publish(_image(ns, encoding))
        self.probe.spin_for(0.05)

    def start_driving(self, timeout_s: float = 10.0) -> int:
        """Send good frames (stamps 50 ms apart) until the first command comes back, as a
        camera streams: a best-effort frame sent while the agent's reader has not yet
        matched this publisher is dropped by DDS. Returns the next free stamp index."""
        k = 0
        deadline = time.monotonic() + timeout_s
        while not self.got and time.monotonic() < deadline:
            k += 1
            self.send(k * 50_000_000)
        assert self.got, log_text(self.log)
        self.probe.spin_for(0.2)  # the commands of frames still in flight arrive now
        return k + 1

    def brakes_after(self, t: float) -> list[float]:
        return [w for w, m in self.got if w >= t and m.header.frame_id == "watchdog"]

    def close(self) -> None:
        from steering_agent.ros.closed_loop import stop_process

        stop_process(self.proc)
        self.probe.close()


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("sim_time", [False, True])
def test_watchdog_brakes_within_two_periods_of_the_last_good_command(
    tmp_path, ros_domain, checkpoint, sim_time
):
    # With use_sim_time and nothing on /clock, the node's clock stands still: the watchdog
    # must still count wall time.
    agent = Agent(tmp_path, checkpoint, use_sim_time=sim_time)
    try:
        k = agent.start_driving()
        before = len(agent.got)
        for i in range(k, k + 5):
            agent.send(i * 50_000_000)
        assert agent.probe.spin_until(lambda: len(agent.got) >= before + 5, 10.0), log_text(
            agent.log
        )
        last_good = max(w for w, m in agent.got if m.header.frame_id == "")
        assert agent.probe.spin_until(lambda: len(agent.brakes_after(last_good)) >= 3, 5.0)
        first = agent.brakes_after(last_good)[0]
        assert first - last_good <= 2 * WATCHDOG_S, (first - last_good, log_text(agent.log))
        brakes = [m for w, m in agent.got if w >= first]
        assert all((m.brake, m.throttle, m.steer) == (1.0, 0.0, 0.0) for m in brakes)
    finally:
        agent.close()


@pytest.mark.ros
@pytest.mark.slow
def test_a_stream_of_undecodable_frames_is_braked_for_and_one_bad_frame_does_not_resume(
    tmp_path, ros_domain, checkpoint
):
    agent = Agent(tmp_path, checkpoint, max_failures=3, watchdog_timeout_s=5.0)
    try:
        k = agent.start_driving()
        t_bad = time.monotonic()

        def after():
            return [m for w, m in agent.got if w >= t_bad]

        # Arriving frames, none usable: brake from the third on. A best-effort frame can be
        # dropped or its answer come late on a loaded machine, so stream until four brakes
        # are back (or give up after 40 frames) rather than count on each of six frames.
        i = k
        while len(after()) < 4 and i < k + 40:
            agent.send(i * 50_000_000, encoding="yuv422")
            i += 1
        agent.probe.spin_for(0.2)
        assert len(after()) >= 4 and all(m.brake == 1.0 for m in after()), log_text(agent.log)
        assert "3 unusable frames in a row" in log_text(agent.log)
        assert all(m.header.frame_id == "watchdog" for m in after())
        assert "yuv422" in log_text(agent.log) and "driving again" not in log_text(agent.log)
        t_good = time.monotonic()
        agent.send((i + 1) * 50_000_000)
        assert agent.probe.spin_until(
            lambda: any(m.header.frame_id == "" for w, m in agent.got if w >= t_good), 10.0
        )
        assert agent.proc.poll() is None
    finally:
        agent.close()


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize(
    ("executable", "params"),
    [
        ("recorder", ["max_bag_size_mb:=1024", "flush_period_s:=1"]),
        ("sim_bridge", ["route_length_m:=300", "rate_hz:=20", "startup_timeout_s:=0"]),
        ("agent", ["target_speed_mps:=5", "watchdog_timeout_s:=1"]),
    ],
)
def test_integers_are_taken_where_a_float_is_declared(tmp_path, ros_domain, executable, params):
    from steering_agent.ros.closed_loop import node_command, stop_process

    cmd = [*node_command(executable), *(x for p in params for x in ("-p", p))]
    if executable == "recorder":
        cmd += ["-p", f"output:={tmp_path / 'rec'}"]
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(4.0)
        assert proc.poll() is None, log_text(log)
    finally:
        stop_process(proc)
    assert "Traceback" not in log_text(log) and "InvalidParameterType" not in log_text(log)


@pytest.mark.ros
@pytest.mark.slow
def test_recorder_refuses_an_output_it_cannot_write_at_start(tmp_path, ros_domain):
    from steering_agent.ros.closed_loop import node_command

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cmd = [*node_command("recorder"), "-p", f"output:={blocker / 'bags'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "output" in out.stderr and "Traceback" not in out.stderr
