"""Ackermann output: the mapping (road-wheel angle in radians, + = left as ackermann_msgs
has it, from CARLA's steer, + = right), the wire-compatible ackermann_msgs package and
its rosbags definition, and the agent process publishing AckermannDriveStamped with the
angle its policy computed."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from steering_agent.interfaces import ackermann_msgs_def as defs
from steering_agent.ros import control_msgs
from tests.ros_helpers import Probe, log_text, stamp_ns, time_msg


def _stamped():
    drive = SimpleNamespace(steering_angle=9.0, steering_angle_velocity=9.0, speed=9.0,
                            acceleration=9.0, jerk=9.0)  # fmt: skip
    return SimpleNamespace(header=SimpleNamespace(stamp=None), drive=drive)


def test_a_right_steer_is_a_negative_angle_in_radians_of_the_vehicles_lock():
    right = SimpleNamespace(steer=0.5, throttle=0.4, brake=0.0)
    msg = control_msgs.to_ackermann(right, max_steer_deg=40.0, speed_mps=7.0, msg=_stamped())
    assert msg.drive.steering_angle == pytest.approx(-math.radians(20.0))  # right = negative
    assert msg.drive.speed == 7.0
    assert (msg.drive.acceleration, msg.drive.jerk, msg.drive.steering_angle_velocity) == (0, 0, 0)
    left = control_msgs.to_ackermann(SimpleNamespace(steer=-1.0, throttle=0.0, brake=0.0), 70.0,
                                     5.0, msg=_stamped())  # fmt: skip
    assert left.drive.steering_angle == pytest.approx(math.radians(70.0))
    assert control_msgs.from_ackermann(msg, 40.0) == pytest.approx((0.5, 7.0))
    # beyond the lock: clipped to it
    far = SimpleNamespace(steer=3.0, throttle=0.0, brake=0.0)
    assert control_msgs.steering_angle_rad(far.steer, 40.0) == pytest.approx(-math.radians(40))


def test_a_brake_asks_for_zero_speed():
    braking = SimpleNamespace(steer=0.1, throttle=0.0, brake=1.0)
    msg = control_msgs.to_ackermann(braking, 70.0, speed_mps=8.0, msg=_stamped())
    assert msg.drive.speed == 0.0


def _fields(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            typ, name = line.split()[:2]
            out.append((typ.split("/")[-1], name))
    return out


def test_the_rosbags_definition_matches_the_built_package():
    d = defs.msg_dir()
    assert _fields(defs.ACKERMANN_DRIVE_MSG) == _fields((d / "AckermannDrive.msg").read_text())
    assert _fields(defs.ACKERMANN_DRIVE_STAMPED_MSG) == _fields(
        (d / "AckermannDriveStamped.msg").read_text()
    )
    assert _fields(defs.ACKERMANN_DRIVE_MSG) == [("float32", n) for n in (
        "steering_angle", "steering_angle_velocity", "speed", "acceleration", "jerk")]  # fmt: skip


def test_rclpy_and_rosbags_serialize_the_same_bytes():
    """Wire compatibility: the package built from tools/ackermann_msgs and the rosbags
    definition give the same CDR for the same message."""
    pytest.importorskip("rosbags")
    msgs = pytest.importorskip("ackermann_msgs.msg", reason="ackermann_msgs is not built")
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.typesys import Stores, get_typestore

    m = msgs.AckermannDriveStamped()
    m.header.stamp = time_msg(1_500_000_123)
    m.header.frame_id = "hero"
    m.drive.steering_angle, m.drive.speed, m.drive.jerk = -0.25, 6.5, 1.0
    store = get_typestore(Stores.ROS2_HUMBLE)
    defs.register_ackermann_types(store)
    defs.register_ackermann_types(store)  # idempotent
    T = store.types
    ours = T[defs.STAMPED_MSGTYPE](
        header=T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=500_000_123), frame_id="hero"
        ),
        drive=T[defs.DRIVE_MSGTYPE](
            steering_angle=-0.25, steering_angle_velocity=0.0, speed=6.5, acceleration=0.0, jerk=1.0
        ),
    )
    # each side reads the other's bytes (the alignment padding is not zeroed by rclpy,
    # so the bytes themselves may differ there)
    theirs = deserialize_message(bytes(store.serialize_cdr(ours, defs.STAMPED_MSGTYPE)),
                                 msgs.AckermannDriveStamped)  # fmt: skip
    assert theirs == m
    back = store.deserialize_cdr(bytes(serialize_message(m)), defs.STAMPED_MSGTYPE)
    assert back == ours
    assert len(store.serialize_cdr(ours, defs.STAMPED_MSGTYPE)) == len(serialize_message(m))


# -- the agent process -------------------------------------------------------------------

W, H = 96, 64
MAX_STEER_DEG = 40.0


def _frame(rgb: np.ndarray, ns: int):
    from sensor_msgs.msg import Image

    from steering_agent.data.imageconv import fill_image_msg

    msg = fill_image_msg(Image(), rgb, "bgra8")
    msg.header.stamp = time_msg(ns)
    return msg


@pytest.mark.ros
@pytest.mark.slow
def test_the_agent_publishes_the_road_wheel_angle_its_policy_computed(tmp_path, domain, checkpoint):
    msgs = pytest.importorskip("ackermann_msgs.msg", reason="ackermann_msgs is not built")
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from steering_agent.interfaces import topics
    from steering_agent.policy.policy import SteeringPolicy
    from steering_agent.ros.closed_loop import start_node, stop_process
    from steering_agent.ros.image_input import FrameDecoder

    log = tmp_path / "agent.log"
    params = {"checkpoint": str(checkpoint), "control_type": "ackermann", "backend": "torch",
              "max_steer_deg": MAX_STEER_DEG, "target_speed_mps": 7.5,
              "watchdog_timeout_s": 10.0}  # fmt: skip
    proc = start_node("agent", params, log)
    probe = Probe("ackermann_probe")
    try:
        got = probe.record(msgs.AckermannDriveStamped, topics.ACKERMANN)
        pub = probe.node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
        up = probe.spin_until(
            lambda: (pub.get_subscription_count() > 0
                     and probe.node.count_publishers(topics.ACKERMANN) > 0)
            or proc.poll() is not None,
            60.0,
        )  # fmt: skip
        assert up and proc.poll() is None, log_text(log)
        # The same policy in this process, as the node builds it (its default mount,
        # camera_fov_deg 90 at the frame's size, the 40 degree car).
        reference = SteeringPolicy.load(
            checkpoint, device="cpu", backend="torch", target_speed_mps=7.5,
            camera={"x_m": 2.0, "y_m": 0.0, "height_m": 2.0, "pitch_deg": 0.0,
                    "roll_deg": 0.0, "yaw_deg": 0.0, "fov_deg": 90.0},
            vehicle={"wheelbase_m": 2.875, "max_steer_deg": MAX_STEER_DEG},
        )  # fmt: skip
        decoder = FrameDecoder(None)
        rng = np.random.default_rng(3)
        steers = []
        for i in range(1, 6):
            ns = i * 50_000_000
            msg = _frame(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), ns)
            expected = reference.step(decoder.typed(msg), ns * 1e-9, None)
            steers.append(expected.steer)
            replies: list = []

            def answered(ns=ns, replies=replies):
                replies[:] = [m for m in got if stamp_ns(m.header.stamp) == ns]
                return bool(replies)

            for _ in range(4):  # best effort: re-sent (same stamp) if lost at the start
                pub.publish(msg)
                if probe.spin_until(answered, 3.0):
                    break
            assert replies, log_text(log)
            drive = replies[0].drive
            angle = -expected.steer * math.radians(MAX_STEER_DEG)  # + = left
            assert drive.steering_angle == pytest.approx(angle, abs=2e-4), (i, expected)
            assert drive.speed == pytest.approx(7.5)
        assert max(abs(s) for s in steers) > 1e-3, steers  # the sign was really tested
        assert re.search(r"publishing ackermann on /carla/ego_vehicle/ackermann_cmd", log_text(log))
    finally:
        stop_process(proc)
        probe.close()
