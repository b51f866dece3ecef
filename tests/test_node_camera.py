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

        def frame(i: int) -> None:
            msg = fill_image_msg(Image(), rgb)
            msg.header.stamp = time_msg(i * 50_000_000)
            pub.publish(msg)
            n = len(got)
            assert probe.spin_until(lambda: len(got) > n, 10.0), log_text(log)

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
        frame(2)
        assert probe.spin_until(lambda: "fx=250.0" in log_text(log), 5.0), log_text(log)
        lines = re.findall(
            r"calibration: camera 320x240 fx=([0-9.]+) at x=2 y=0 z=2", log_text(log)
        )
        assert lines == ["160.0", "250.0"]  # the bridge's mount by default; logged once each
        assert got[-1].header.frame_id == ""  # still driving
    finally:
        stop_process(proc)
        probe.close()
