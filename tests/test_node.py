"""The `agent` node as a real process over DDS: controls, bad frames, watchdog, reset,
both control message types, clean shutdown; plus the control message mapping."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

from steering_agent.ros import control_msgs, tf_mount
from tests.ros_helpers import (
    Probe,
    log_text,
    stamp_ns,
    time_msg,
)

W, H = 200, 66
DT_NS = 50_000_000
WATCHDOG_S = 0.4
TWIST_RESET = "/twist_agent/reset"


# -- control message mapping (no ROS) ------------------------------------------------------


def _twist(lx=0.0, az=0.0):
    """A stand-in for geometry_msgs/Twist (only the fields the mapping reads)."""
    return SimpleNamespace(
        linear=SimpleNamespace(x=lx, y=0.0, z=0.0), angular=SimpleNamespace(x=0.0, y=0.0, z=az)
    )


def test_twist_mapping_follows_carla_twist_to_control():
    ctl = SimpleNamespace(steer=0.5, throttle=0.3, brake=0.0)
    msg = control_msgs.to_twist(ctl, max_steer_angle_rad=1.0, msg=_twist())
    assert msg.linear.x == pytest.approx(3.0)  # carla_twist_to_control divides by 10
    assert msg.angular.z == pytest.approx(-0.5)  # steer right = negative yaw rate
    assert control_msgs.from_twist(msg, 1.0) == pytest.approx((0.5, 0.3, 0.0))
    braking = control_msgs.to_twist(SimpleNamespace(steer=0.7, throttle=0.0, brake=0.2), msg=msg)
    assert (braking.linear.x, braking.angular.z) == (0.0, 0.0)
    assert control_msgs.from_twist(braking) == (0.0, 0.0, 1.0)  # zero Twist = full brake


def test_control_type_resolution():
    assert control_msgs.resolve_control_type("twist") == "twist"
    assert control_msgs.resolve_control_type("auto") in ("carla", "twist")
    with pytest.raises(ValueError, match="control_type 'steering_wheel'"):
        control_msgs.resolve_control_type("steering_wheel")
    if control_msgs.ackermann_msgs_available():
        assert control_msgs.resolve_control_type("ackermann") == "ackermann"
    else:
        with pytest.raises(ValueError, match="needs the ackermann_msgs package"):
            control_msgs.resolve_control_type("ackermann")


# -- the node as a process -------------------------------------------------------------------


def _start_agent(tmp, name: str, overrides: dict, remaps=None) -> tuple[subprocess.Popen, object]:
    from steering_agent.ros.closed_loop import start_node

    log = tmp / f"{name}.log"
    return start_node("agent", overrides, log, remaps), log


def _stop(proc: subprocess.Popen, sig=signal.SIGINT) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _image(rgb: np.ndarray, ns: int, encoding: str = "bgra8"):
    from sensor_msgs.msg import Image

    from steering_agent.data.imageconv import rgb_to_image_fields

    f = rgb_to_image_fields(rgb, encoding)
    msg = Image(height=f["height"], width=f["width"], encoding=encoding, step=f["step"])
    msg.data = f["data"].tobytes()
    msg.header.stamp = time_msg(ns)
    return msg


def _jpeg(rgb: np.ndarray, ns: int, data: bytes | None = None):
    from sensor_msgs.msg import CompressedImage

    from steering_agent.data.imageconv import rgb_to_compressed_fields

    msg = CompressedImage(format="jpeg")
    msg.data = data if data is not None else rgb_to_compressed_fields(rgb)["data"].tobytes()
    msg.header.stamp = time_msg(ns)
    return msg


class AgentUnderTest:
    """An agent process plus a probe that feeds it frames and collects its commands."""

    def __init__(
        self, proc, log, probe, image_type, image_topic, control_type, control_topic, make_frame
    ):
        from rclpy.qos import QoSProfile

        self.proc, self.log, self.probe = proc, log, probe
        self.pub = probe.node.create_publisher(image_type, image_topic, QoSProfile(depth=1))
        self.controls = probe.record(control_type, control_topic)
        self.next_ns = DT_NS
        ready = probe.spin_until(
            lambda: (
                (
                    self.pub.get_subscription_count() > 0
                    and probe.node.count_publishers(control_topic) > 0
                )
                or proc.poll() is not None
            ),
            60.0,
        )
        assert ready and proc.poll() is None, f"agent did not start:\n{log_text(log)}"
        self._warm_up(make_frame)

    def _answers(self) -> int:
        """How many commands answered a frame (watchdog brakes do not count)."""
        return sum(getattr(c, "header", None) is None or c.header.frame_id != "watchdog"
                   for c in self.controls)  # fmt: skip

    def _warm_up(self, make_frame, timeout_s: float = 60.0) -> None:
        """Stream frames (as a camera does) until one is answered. The graph shows both
        endpoints before DDS has matched them both ways: the agent's best-effort reader
        drops a frame sent earlier, and its volatile writer sends a command to no one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            n = self._answers()
            self.send(make_frame())
            if self.probe.spin_until(lambda n=n: self._answers() > n, 0.5):
                self.probe.spin_for(0.3)  # the answers of frames still in flight
                return
        raise AssertionError(f"no frame answered in {timeout_s:.0f} s:\n{log_text(self.log)}")

    def send(self, msg) -> int:
        """Publish `msg` with the next stamp (unless it has one > 0); returns the stamp."""
        ns = stamp_ns(msg.header.stamp) or self.next_ns
        msg.header.stamp = time_msg(ns)
        self.next_ns = max(self.next_ns, ns) + DT_NS
        self.pub.publish(msg)
        return ns

    def reply_to(self, ns: int, timeout_s: float = 10.0):
        """The carla command answering the frame stamped `ns` (None if none came)."""
        found = []

        def has_reply():
            found[:] = [c for c in self.controls if stamp_ns(c.header.stamp) == ns]
            return bool(found)

        self.probe.spin_until(has_reply, timeout_s)
        return found[0] if found else None


@pytest.fixture(scope="module")
def carla_agent(domain, checkpoint, tmp_path_factory):
    """Raw bgra8 in, CarlaEgoVehicleControl out, short watchdog, every error logged."""
    from carla_msgs.msg import CarlaEgoVehicleControl
    from sensor_msgs.msg import Image

    from steering_agent.interfaces import topics

    tmp = tmp_path_factory.mktemp("carla_agent")
    params = {
        "checkpoint": str(checkpoint),
        "control_type": "carla",
        "watchdog_timeout_s": WATCHDOG_S,
        "error_log_period_s": 0.0,
        "stats_file": str(tmp / "stats.json"),
    }
    proc, log = _start_agent(tmp, "agent", params)
    probe = None
    try:
        probe = Probe("carla_probe")
        yield AgentUnderTest(
            proc, log, probe, Image, topics.IMAGE, CarlaEgoVehicleControl, topics.CONTROL,
            lambda: _image(_frames(1, seed=99)[0], 0),
        )  # fmt: skip
    finally:
        # The agent first: a participant whose TCP peers are up can hang when deleted.
        _stop(proc)
        if probe is not None:
            probe.close()


@pytest.fixture(scope="module")
def twist_agent(domain, checkpoint, tmp_path_factory):
    """JPEG (compressed transport) in, Twist out, default error rate limit, long watchdog."""
    from geometry_msgs.msg import Twist
    from sensor_msgs.msg import CompressedImage

    from steering_agent.interfaces import topics

    tmp = tmp_path_factory.mktemp("twist_agent")
    params = {
        "checkpoint": str(checkpoint),
        "control_type": "twist",
        "image_transport": "compressed",
        "watchdog_timeout_s": 10.0,
    }
    # Both module agents are nodes called "agent": give this one's reset service its own
    # name, so a call cannot reach the other process.
    proc, log = _start_agent(tmp, "agent", params, {"/agent/reset": TWIST_RESET})
    probe = None
    try:
        probe = Probe("twist_probe")
        yield AgentUnderTest(
            proc, log, probe, CompressedImage, topics.IMAGE + "/compressed", Twist, topics.TWIST,
            lambda: _jpeg(_frames(1, seed=99)[0], 0),
        )  # fmt: skip
    finally:
        # The agent first: a participant whose TCP peers are up can hang when deleted.
        _stop(proc)
        if probe is not None:
            probe.close()


def _frames(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.ros
@pytest.mark.slow
def test_each_frame_gets_one_command_with_its_stamp(carla_agent):
    stamps = [carla_agent.send(_image(rgb, 0)) for rgb in _frames(1)]
    for rgb in _frames(4, seed=2):
        assert carla_agent.reply_to(stamps[-1]) is not None
        stamps.append(carla_agent.send(_image(rgb, 0)))
    assert carla_agent.reply_to(stamps[-1]) is not None
    carla_agent.probe.spin_for(0.3)
    for ns in stamps:
        replies = [c for c in carla_agent.controls if stamp_ns(c.header.stamp) == ns]
        assert len(replies) == 1
        c = replies[0]
        assert c.header.frame_id == ""
        assert -1.0 <= c.steer <= 1.0 and 0.0 <= c.throttle <= 1.0 and 0.0 <= c.brake <= 1.0


def _bad_images():
    from sensor_msgs.msg import Image

    good = _image(_frames(1)[0], 0)
    unknown = Image(height=H, width=W, encoding="yuv9", step=W * 2)
    unknown.data = bytes(H * W * 2)
    short = Image(height=H, width=W, encoding="bgra8", step=W * 4)
    short.data = bytes(good.data)[: (H - 2) * W * 4]  # size does not match height * step
    empty = Image(height=0, width=0, encoding="bgra8", step=0)
    return {"unknown image encoding 'yuv9'": unknown, "does not match": short, "empty frame": empty}


@pytest.mark.ros
@pytest.mark.slow
def test_bad_frames_are_logged_and_skipped(carla_agent):
    for problem, bad in _bad_images().items():
        bad_ns = carla_agent.send(bad)
        # The node keeps only the newest frame: let it see the bad one before the next.
        logged = carla_agent.probe.spin_until(
            lambda p=problem: p in log_text(carla_agent.log), 10.0
        )
        assert logged, f"no error naming {problem!r}:\n{log_text(carla_agent.log)}"
        good_ns = carla_agent.send(_image(_frames(1)[0], 0))
        assert carla_agent.reply_to(good_ns) is not None, f"no command after {problem!r}"
        assert carla_agent.reply_to(bad_ns, timeout_s=0.2) is None
    assert carla_agent.proc.poll() is None


def _watchdog_brakes(agent) -> list:
    return [c for c in agent.controls if c.header.frame_id == "watchdog"]


@pytest.mark.ros
@pytest.mark.slow
def test_watchdog_brakes_until_frames_return(carla_agent):
    from rclpy.clock import Clock

    for rgb in _frames(6, seed=3):
        assert carla_agent.reply_to(carla_agent.send(_image(rgb, 0))) is not None
    stopped_ns = Clock().now().nanoseconds  # the node stamps watchdog commands with its clock
    before = len(_watchdog_brakes(carla_agent))
    assert carla_agent.probe.spin_until(
        lambda: len(_watchdog_brakes(carla_agent)) >= before + 3, 10 * WATCHDOG_S
    ), "the watchdog did not keep braking while frames stayed away"
    brakes = _watchdog_brakes(carla_agent)[before:]
    assert stamp_ns(brakes[0].header.stamp) - stopped_ns <= 2 * WATCHDOG_S * 1e9
    assert all((b.brake, b.throttle, b.steer) == (1.0, 0.0, 0.0) for b in brakes)
    resumed = carla_agent.reply_to(carla_agent.send(_image(_frames(1)[0], 0)))
    assert resumed is not None and resumed.header.frame_id == ""
    assert resumed.brake < 1.0  # driving again (no speed reading: cruise throttle)


def _twist_steers(agent, images: list[np.ndarray], max_angle: float) -> list[float]:
    steers = []
    for rgb in images:
        n = len(agent.controls)
        agent.send(_jpeg(rgb, 0))
        assert agent.probe.spin_until(lambda n=n: len(agent.controls) > n, 10.0)
        twist = agent.controls[n]
        assert twist.linear.x > 0.0  # no brake: cruise throttle
        steers.append(-twist.angular.z / max_angle)
    return steers


def _call_reset(probe, service: str = TWIST_RESET) -> object:
    from std_srvs.srv import Trigger

    client = probe.node.create_client(Trigger, service)
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(Trigger.Request())
    assert probe.spin_until(future.done, 10.0)
    return future.result()


@pytest.mark.ros
@pytest.mark.slow
def test_reset_service_restarts_the_recurrent_state(twist_agent):
    angle = control_msgs.DEFAULT_MAX_STEER_ANGLE_RAD
    images = _frames(4, seed=4)
    assert _call_reset(twist_agent.probe).success
    first = _twist_steers(twist_agent, images, angle)
    carried = _twist_steers(twist_agent, images, angle)  # same frames, state carried over
    result = _call_reset(twist_agent.probe)
    assert result.success and "reset" in result.message
    again = _twist_steers(twist_agent, images, angle)
    assert again == pytest.approx(first, abs=1e-5)
    assert np.abs(np.subtract(carried, first)).max() > 1e-6


@pytest.mark.ros
@pytest.mark.slow
def test_corrupt_jpegs_are_skipped_then_braked_for_with_one_rate_limited_error(twist_agent):
    n = len(twist_agent.controls)
    for _ in range(5):  # spaced, so the newest-frame-only subscription sees each one
        twist_agent.send(_jpeg(None, 0, data=b"\xff\xd8\xff\xe0 not really a jpeg"))
        twist_agent.probe.spin_for(0.1)
    twist_agent.probe.spin_for(0.3)
    # max_failures (3): the first two are skipped, then it brakes (the all-zero Twist)
    brakes = twist_agent.controls[n:]
    assert len(brakes) == 3, [(b.linear.x, b.angular.z) for b in brakes]
    assert all((b.linear.x, b.angular.z) == (0.0, 0.0) for b in brakes)
    n = len(twist_agent.controls)
    twist_agent.send(_jpeg(_frames(1)[0], 0))
    assert twist_agent.probe.spin_until(lambda: len(twist_agent.controls) > n, 10.0)
    assert twist_agent.controls[n].linear.x > 0.0  # a good frame: driving again
    assert log_text(twist_agent.log).count("corrupt JPEG") == 1  # rate-limited


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("image_transport:=theora", "image_transport"),
        ("watchdog_timeout_s:=100.0", "watchdog"),
        ("backend:=tensorrt", "backend"),
        ("speed_source:=gps", "speed_source"),
        ("lifecycle:=maybe", "lifecycle"),
        *(
            []
            if tf_mount.tf2_available()
            else [("camera_mount_source:=tf", "camera_mount_source 'tf' needs tf2_ros")]
        ),
    ],
)
def test_invalid_parameter_exits_with_a_clear_message(domain, param, message):
    from steering_agent.ros.closed_loop import node_command

    cmd = [*node_command("agent"), "-p", param]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.ros
@pytest.mark.slow
def test_sigterm_shuts_down_cleanly_with_timing_summary(carla_agent):
    assert _stop(carla_agent.proc, signal.SIGTERM) == 0
    log = log_text(carla_agent.log)
    assert "Traceback" not in log
    stats = json.loads((carla_agent.log.parent / "stats.json").read_text())
    assert stats["frames"] >= 10 and stats["skipped_frames"] == 3
    assert stats["watchdog_events"] >= 1
    assert {"decode_ms", "policy_ms", "publish_ms", "total_ms"} <= stats.keys()
