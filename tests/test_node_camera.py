"""The agent node's calibration: the mount from parameters, intrinsics from camera_info
when it arrives (before that from camera_fov_deg and the frame size), logged."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.ros_helpers import Probe, log_text, time_msg


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_calibrates_from_fov_then_from_camera_info(tmp_path, ros_domain, checkpoint):
    from carla_msgs.msg import CarlaEgoVehicleControl
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    from steering_agent.data.imageconv import camera_info_fields, fill_image_msg
    from steering_agent.interfaces import topics
    from steering_agent.ros.closed_loop import start_node, stop_process

    log = tmp_path / "agent.log"
    proc = start_node("agent", {"checkpoint": str(checkpoint), "control_type": "carla"}, log)
    probe = Probe("camera_probe")
    try:
        got = probe.record(CarlaEgoVehicleControl, topics.CONTROL)
        pub = probe.node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
        info_pub = probe.node.create_publisher(CameraInfo, topics.CAMERA_INFO, QoSProfile(depth=1))
        assert probe.spin_until(lambda: pub.get_subscription_count() > 0, 60.0), log_text(log)
        rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)

        def frame(i: int):
            """Send frame i; the command that answered it (its stamp)."""
            msg = fill_image_msg(Image(), rgb)
            msg.header.stamp = time_msg(i * 50_000_000)

            def answer():
                return next((m for m in got if m.header.stamp == msg.header.stamp), None)

            # best effort: a frame sent just as the agent's reader matches can be lost;
            # a re-sent frame (the same stamp) gets the same answer
            for _ in range(4):
                pub.publish(msg)
                if probe.spin_until(lambda: answer() is not None, 3.0):
                    break
            assert answer() is not None, log_text(log)
            return answer()

        frame(1)  # no camera_info yet: FOV 90 at 320x240 -> fx 160
        assert probe.spin_until(lambda: "fx=160.0" in log_text(log), 5.0), log_text(log)
        fields = camera_info_fields({"width": 320, "height": 240, "fx": 250.0, "fy": 250.0,
                                     "cx": 160.0, "cy": 120.0})  # fmt: skip
        info = CameraInfo(width=fields.pop("width"), height=fields.pop("height"))
        for k, v in fields.items():
            setattr(info, k, v if isinstance(v, str) else v.tolist())
        for _ in range(5):
            info_pub.publish(info)
            probe.spin_for(0.1)
        after_info = frame(2)
        assert probe.spin_until(lambda: "fx=250.0" in log_text(log), 5.0), log_text(log)
        lines = re.findall(
            r"calibration: camera 320x240 fx=([0-9.]+) at x=2 y=0 z=2", log_text(log)
        )
        assert lines == ["160.0", "250.0"]  # the bridge's mount by default; logged once each
        # the level bridge camera misses the ground just ahead: the node says it fills it
        assert re.search(r"z=2 m.*pixels of ground out of view filled", log_text(log))
        # the frame after the camera_info was answered with a driving command (a later
        # watchdog brake, while this test reads logs, is the watchdog doing its job)
        assert after_info.header.frame_id == "", log_text(log)
    finally:
        stop_process(proc)
        probe.close()


# -- the mount from /tf ----------------------------------------------------------------------

MOUNTS = [
    {"x_m": 2.0, "y_m": 0.0, "height_m": 2.0, "pitch_deg": 0.0, "roll_deg": 0.0, "yaw_deg": 0.0},
    {"x_m": 1.2, "y_m": -0.3, "height_m": 1.6, "pitch_deg": 12.0, "roll_deg": -3.0,
     "yaw_deg": 7.0},
    {"x_m": 0.4, "y_m": 0.5, "height_m": 1.3, "pitch_deg": -5.0, "roll_deg": 8.0,
     "yaw_deg": -20.0},
]  # fmt: skip


@pytest.mark.parametrize("optical", [False, True])
@pytest.mark.parametrize("mount", MOUNTS)
def test_a_transform_gives_back_the_mount_and_the_same_camera_axes(mount, optical):
    from steering_agent.policy.calibration import CameraSpec
    from steering_agent.ros.tf_mount import (
        mount_from_transform,
        quaternion_matrix,
        transform_of_mount,
    )

    t, q = transform_of_mount(mount, optical)
    got = mount_from_transform(t, q, optical)
    assert got == pytest.approx(mount, abs=1e-9)
    spec = CameraSpec.from_fov(64, 48, 90.0, **got)
    r = quaternion_matrix(*q)
    # columns: the optical x (right), y (down), z (forward) in a body frame (X fwd, Y left)
    optical_axes = r if optical else r @ np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0.0]])
    np.testing.assert_allclose(spec.rotation(), optical_axes, atol=1e-9)


def test_known_transforms_in_ros_conventions():
    import math

    from steering_agent.ros.tf_mount import is_optical, mount_from_transform

    half = math.radians(10.0) / 2
    # a body frame turned +10 degrees about Y (REP 103: nose down) is pitched 10 down
    down = mount_from_transform((2.0, 0.0, 1.5), (0.0, math.sin(half), 0.0, math.cos(half)))
    assert down["pitch_deg"] == pytest.approx(10.0) and down["height_m"] == 1.5
    # +10 about Z is a yaw to the left, +10 about X a roll (clockwise seen from behind)
    left = mount_from_transform((0, 0, 1), (0.0, 0.0, math.sin(half), math.cos(half)))
    assert left["yaw_deg"] == pytest.approx(10.0) and left["pitch_deg"] == pytest.approx(0.0)
    rolled = mount_from_transform((0, 0, 1), (math.sin(half), 0.0, 0.0, math.cos(half)))
    assert rolled["roll_deg"] == pytest.approx(10.0)
    # the standard optical frame of a level forward camera (q = -0.5, 0.5, -0.5, 0.5)
    level = mount_from_transform((1, 0, 1.4), (-0.5, 0.5, -0.5, 0.5), optical=True)
    assert [level[k] for k in ("pitch_deg", "roll_deg", "yaw_deg")] == pytest.approx([0, 0, 0])
    # vehicle_frame on the rear axle, 0.3 m above the ground
    assert mount_from_transform((1, 0, 1.2), (0, 0, 0, 1), vehicle_frame_height_m=0.3)[
        "height_m"
    ] == pytest.approx(1.5)
    assert is_optical("hero/rgb_front_optical_frame") and not is_optical("ego_vehicle/rgb_front")
    assert is_optical("cam", "optical") and not is_optical("cam_optical", "body")
    with pytest.raises(ValueError, match="not a rotation"):
        mount_from_transform((0, 0, 1), (0, 0, 0, 0))


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_reads_its_mount_from_a_static_transform(tmp_path, ros_domain, checkpoint):
    """A static transform published by another process becomes the calibration."""
    pytest.importorskip(
        "tf2_ros", reason="tf2_ros has no PyPI wheel: needs a sourced ROS 2 distribution"
    )
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image
    from tf2_ros.static_transform_broadcaster import StaticTransformBroadcaster

    from steering_agent.data.imageconv import fill_image_msg
    from steering_agent.interfaces import topics
    from steering_agent.ros.closed_loop import start_node, stop_process
    from steering_agent.ros.tf_mount import transform_of_mount

    mount = MOUNTS[1]
    log = tmp_path / "agent.log"
    params = {"checkpoint": str(checkpoint), "control_type": "carla",
              "camera_mount_source": "tf", "vehicle_frame": "hero",
              "camera_frame": "hero/front_optical"}  # fmt: skip
    proc = start_node("agent", params, log)
    probe = Probe("tf_probe")
    try:
        (x, y, z), (qx, qy, qz, qw) = transform_of_mount(mount, optical=True)
        t = TransformStamped()
        t.header.frame_id, t.child_frame_id = "hero", "hero/front_optical"
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = x, y, z
        r = t.transform.rotation
        r.x, r.y, r.z, r.w = qx, qy, qz, qw
        broadcaster = StaticTransformBroadcaster(probe.node)
        broadcaster.sendTransform(t)
        assert probe.spin_until(lambda: "camera mount from /tf: x_m=1.2" in log_text(log), 30.0), (
            log_text(log)
        )
        pub = probe.node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
        assert probe.spin_until(lambda: pub.get_subscription_count() > 0, 30.0)
        rgb = np.zeros((240, 320, 3), np.uint8)
        msg = fill_image_msg(Image(), rgb)
        msg.header.stamp = time_msg(50_000_000)
        pub.publish(msg)
        assert probe.spin_until(lambda: "pitch=12 roll=-3 yaw=7" in log_text(log), 10.0), log_text(
            log
        )
    finally:
        stop_process(proc)
        probe.close()
