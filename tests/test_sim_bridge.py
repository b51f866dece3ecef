"""The `sim_bridge` node as a real process: CARLA bridge topics out, both command types in,
one world step per matching command in sync mode, metrics on topics.METRICS."""

from __future__ import annotations

import json
import signal
from contextlib import contextmanager

import pytest

from tests.ros_helpers import Probe, log_text, restore_domain, set_domain, stamp_ns, unique_domain

W, H = 160, 120
DT_NS = 50_000_000
MAX_STEPS = 30

pytestmark = [pytest.mark.ros, pytest.mark.slow]


class BridgeUnderTest:
    """A sim_bridge process and a probe playing the agent."""

    def __init__(self, proc, log, probe: Probe) -> None:
        from carla_msgs.msg import CarlaEgoVehicleControl
        from geometry_msgs.msg import Twist
        from nav_msgs.msg import Odometry
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Float32, Header, String

        from steering_agent.interfaces import topics

        self.proc, self.log, self.probe = proc, log, probe
        self.images = probe.record(Image, topics.IMAGE)
        self.infos = probe.record(CameraInfo, topics.CAMERA_INFO)
        self.speeds = probe.record(Float32, topics.SPEEDOMETER)
        self.odoms = probe.record(Odometry, topics.ODOMETRY)
        self.clocks = probe.record(Clock, topics.CLOCK)
        self.experts = probe.record(CarlaEgoVehicleControl, topics.EXPERT_CONTROL)
        self.laterals = probe.record(Float32, topics.LATERAL_ERROR)
        self.interventions = probe.record(Header, topics.INTERVENTION)
        latched = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.metrics_msgs = probe.record(String, topics.METRICS, latched)
        self.carla = probe.node.create_publisher(
            CarlaEgoVehicleControl, topics.CONTROL, QoSProfile(depth=10)
        )
        self.twist = probe.node.create_publisher(Twist, topics.TWIST, QoSProfile(depth=10))

    def metrics(self) -> dict:
        return json.loads(self.metrics_msgs[-1].data) if self.metrics_msgs else {}

    def metrics_file(self) -> dict:
        return json.loads((self.log.parent / "metrics.json").read_text())

    def wait_images(self, n: int, timeout_s: float = 15.0) -> bool:
        return self.probe.spin_until(lambda: len(self.images) >= n, timeout_s)

    def stamps(self) -> set[int]:
        return {stamp_ns(i.header.stamp) for i in self.images}

    def wait_stamp(self, ns: int, timeout_s: float = 15.0) -> bool:
        """Wait for a frame stamped `ns` (frames may be re-sent: stamps, not counts)."""
        return self.probe.spin_until(lambda: ns in self.stamps(), timeout_s)

    def answer(self, stamp, throttle: float = 0.5, frame_id: str = "", steer: float = 0.0):
        from carla_msgs.msg import CarlaEgoVehicleControl

        msg = CarlaEgoVehicleControl(throttle=throttle, steer=steer, brake=0.0)
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        self.carla.publish(msg)


@contextmanager
def bridge_process(tmp, **overrides):
    from steering_agent.ros.closed_loop import start_node

    old = set_domain(unique_domain())
    params = {"seed": 1_000_000, "width": W, "height": H, "route_length_m": 200.0,
              "mode": "sync", "max_steps": MAX_STEPS, "sync_resend_s": 0.5,
              "startup_timeout_s": 30.0,
              "metrics_file": str(tmp / "metrics.json"), **overrides}  # fmt: skip
    proc = start_node("sim_bridge", params, tmp / "sim_bridge.log")
    probe = None
    try:
        probe = Probe("bridge_probe")
        b = BridgeUnderTest(proc, tmp / "sim_bridge.log", probe)
        assert b.wait_images(1, 60.0), f"no first frame:\n{log_text(b.log)}"
        yield b
    finally:
        # The bridge first: a participant whose TCP peers are up can hang when deleted.
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if probe is not None:
            probe.close()
        restore_domain(old)


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    with bridge_process(tmp_path_factory.mktemp("sim_bridge")) as b:
        yield b


def test_publishes_the_carla_bridge_sensor_topics(bridge):
    img = bridge.images[0]
    assert (img.width, img.height, img.encoding, img.step) == (W, H, "bgra8", W * 4)
    assert len(img.data) == H * W * 4 and stamp_ns(img.header.stamp) == 0
    assert bridge.probe.spin_until(
        lambda: bridge.infos and bridge.speeds and bridge.odoms and bridge.clocks, 5.0
    )
    info = bridge.infos[0]
    assert (info.width, info.height) == (W, H) and info.k[0] > 0 and info.k[8] == 1.0
    assert bridge.odoms[0].child_frame_id == "ego_vehicle"
    assert stamp_ns(bridge.clocks[0].clock) == 0


def test_sync_steps_only_for_the_command_of_the_current_frame(bridge):
    stamp = bridge.images[-1].header.stamp
    wrong = type(stamp)(sec=stamp.sec, nanosec=stamp.nanosec + 1_000_000)
    bridge.answer(wrong)
    bridge.answer(stamp, frame_id="watchdog")  # the agent's blind braking: no step
    bridge.probe.spin_for(0.3)
    assert bridge.stamps() == {stamp_ns(stamp)}
    bridge.answer(stamp)
    assert bridge.wait_stamp(stamp_ns(stamp) + DT_NS)


def test_a_nonfinite_command_is_dropped_and_the_bridge_goes_on(bridge):
    from carla_msgs.msg import CarlaEgoVehicleControl
    from geometry_msgs.msg import Twist

    current = max(bridge.stamps())
    stamp = next(i.header.stamp for i in bridge.images if stamp_ns(i.header.stamp) == current)
    bad = CarlaEgoVehicleControl(throttle=0.5, steer=float("nan"), brake=0.0)
    bad.header.stamp = stamp
    bridge.carla.publish(bad)
    twist = Twist()
    twist.angular.z = float("inf")
    bridge.twist.publish(twist)
    bridge.probe.spin_for(0.5)
    assert bridge.proc.poll() is None, log_text(bridge.log)
    assert max(bridge.stamps()) == current  # no world step
    assert "non-finite" in log_text(bridge.log)
    bridge.answer(stamp)  # a good command for the same frame still steps the world
    assert bridge.wait_stamp(current + DT_NS)


def test_twist_command_steps_the_world(bridge):
    from geometry_msgs.msg import Twist

    current = max(bridge.stamps())
    msg = Twist()
    msg.linear.x = 5.0  # throttle 0.5 in carla_twist_to_control's convention
    bridge.twist.publish(msg)
    assert bridge.wait_stamp(current + DT_NS)


def test_unanswered_frame_is_sent_again(bridge):
    current = max(bridge.stamps())
    n = sum(stamp_ns(i.header.stamp) == current for i in bridge.images)
    resent = lambda: sum(stamp_ns(i.header.stamp) == current for i in bridge.images) > n  # noqa: E731
    assert bridge.probe.spin_until(resent, 5.0)  # sync_resend_s = 0.5
    assert max(bridge.stamps()) == current


def test_every_frame_comes_with_the_expert_label_and_lateral_error(bridge):
    frames = bridge.stamps()
    assert bridge.probe.spin_until(
        lambda: {stamp_ns(e.header.stamp) for e in bridge.experts} >= frames, 5.0
    ), (sorted(frames), [stamp_ns(e.header.stamp) for e in bridge.experts])
    labels = [stamp_ns(e.header.stamp) for e in bridge.experts]
    assert len(labels) == len(set(labels))  # once per frame, also when a frame is re-sent
    assert all(-1.0 <= e.steer <= 1.0 and 0.0 <= e.throttle <= 1.0 for e in bridge.experts)
    assert len(bridge.laterals) >= len(frames)
    assert all(abs(m.data) < 1.0 for m in bridge.laterals)  # straight commands: in lane
    assert bridge.interventions == []


def test_drives_to_max_steps_and_reports_metrics(bridge):
    answered: set[int] = set()

    def answered_until_done() -> bool:
        if bridge.metrics().get("done"):
            return True
        stamp = bridge.images[-1].header.stamp
        if stamp_ns(stamp) not in answered:  # one command per frame, as the agent does
            answered.add(stamp_ns(stamp))
            bridge.answer(stamp, throttle=1.0)
        return False

    assert bridge.probe.spin_until(answered_until_done, 60.0), bridge.metrics()
    m = bridge.metrics()
    assert m["reason"] == "max_steps" and m["step"] == MAX_STEPS
    assert m["frames_published"] == MAX_STEPS == m["frames_answered"]
    assert m["frames_without_control"] == 0 and m["duplicate_controls"] == 0
    assert m["frames_resent"] >= 1 and m["unmatched_controls"] >= 1
    assert m["watchdog_controls"] == 1
    assert m["progress_m"] > 1.0 and bridge.speeds[-1].data > 0.5
    assert m["summary"]["steps"] == MAX_STEPS and "mean_abs_lateral_m" in m["summary"]
    assert set(m["accepts"]) == {"carla", "twist"}
    assert bridge.metrics_file() == m  # the same object, also in the metrics_file


def test_sigterm_exits_cleanly(bridge):
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0
    log = log_text(bridge.log)
    assert "Traceback" not in log and "final metrics" in log
    final = bridge.metrics_file()  # rewritten at shutdown, with the counts up to then
    assert final["done"] and final["step"] == MAX_STEPS
    assert final["controls_received"] >= bridge.metrics()["controls_received"]


def test_an_intervention_is_published_with_the_stamp_of_its_frame(tmp_path):
    """Full right lock leaves the lane: each re-centre is one Header on INTERVENTION."""
    with bridge_process(tmp_path, max_steps=400) as b:
        answered: set[int] = set()

        def steer_off_until_intervention() -> bool:
            if b.interventions or b.metrics().get("done"):
                return True
            stamp = b.images[-1].header.stamp
            if stamp_ns(stamp) not in answered:
                answered.add(stamp_ns(stamp))
                b.answer(stamp, throttle=1.0, steer=1.0)
            return False

        assert b.probe.spin_until(steer_off_until_intervention, 90.0), b.metrics()
        assert b.interventions, b.metrics()
        first = b.interventions[0]
        assert first.frame_id == "recenter" and stamp_ns(first.stamp) in answered
        # the frame after the re-centre is back in lane, with its own expert label
        after = stamp_ns(first.stamp) + DT_NS
        assert b.wait_stamp(after), sorted(b.stamps())[-3:]
        assert b.probe.spin_until(
            lambda: after in {stamp_ns(e.header.stamp) for e in b.experts}, 5.0
        )
        assert abs(b.laterals[-1].data) < 1.0, b.laterals[-1]
