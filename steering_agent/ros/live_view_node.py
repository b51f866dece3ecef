"""The `live_view` node: sim_bridge's topics and the agent's command, streamed to Foxglove.

Started by `steering-agent closed-loop --live` (`python -m steering_agent.ros.live_view`).
Per frame: the camera image and, published with it, the speedometer and the lateral
error (topics.LATERAL_ERROR); per command of the agent (CarlaEgoVehicleControl on
topics.CONTROL, or a Twist), the agent's steer beside the expert's label of the same
frame (topics.EXPERT_CONTROL, paired by header stamp). See steering_agent.ros.live_view.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from steering_agent.interfaces import topics
from steering_agent.interfaces.stamps import stamp_to_ns
from steering_agent.ros import control_msgs
from steering_agent.ros.live_view import LATERAL, SPEED, LiveView
from steering_agent.ros.params import declare_all, floating, integer

_CHANNELS = {"rgb8": 3, "bgr8": 3, "bgra8": 4, "rgba8": 4, "mono8": 1}
_RECENT = 64

PARAMETERS = {
    "port": (8765, integer("Foxglove WebSocket port on localhost", 0, 65535)),
    "max_steer_angle_rad": (
        control_msgs.DEFAULT_MAX_STEER_ANGLE_RAD,
        floating("Twist: wheel angle (rad) of steer = 1", 0.1, 1.6),
    ),
}


class LiveViewNode(Node):
    """Subscribes to the drive's topics and forwards them to a `LiveView`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("live_view", **kwargs)
        self.p = p = declare_all(self, PARAMETERS)
        self.view = LiveView(p["port"])
        self.get_logger().info(f"live view: open Foxglove, connect to {self.view.url}")
        self._expert: OrderedDict[int, float] = OrderedDict()  # frame stamp -> expert steer
        self._stamp_ns = 0  # of the newest image
        self._speed = self._lateral = float("nan")
        qos = QoSProfile(depth=10)
        self.create_subscription(Image, topics.IMAGE, self._on_image, QoSProfile(depth=1))
        self.create_subscription(Float32, topics.SPEEDOMETER, self._on_speed, qos)
        self.create_subscription(Float32, topics.LATERAL_ERROR, self._on_lateral, qos)
        if control_msgs.carla_msgs_available():
            from carla_msgs.msg import CarlaEgoVehicleControl

            self.create_subscription(
                CarlaEgoVehicleControl, topics.EXPERT_CONTROL, self._on_expert, qos
            )
            self.create_subscription(CarlaEgoVehicleControl, topics.CONTROL, self._on_agent, qos)
        from geometry_msgs.msg import Twist

        self.create_subscription(Twist, topics.TWIST, self._on_twist, qos)

    def _on_speed(self, msg: Float32) -> None:
        self._speed = float(msg.data)

    def _on_lateral(self, msg: Float32) -> None:
        self._lateral = float(msg.data)

    def _on_image(self, msg: Image) -> None:
        ns = stamp_to_ns(msg.header.stamp)
        self._stamp_ns = ns
        self.view.frames += 1
        channels = _CHANNELS.get(msg.encoding)
        if channels is not None and self.view.subscribed("/camera"):
            rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
            pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
            self.view.image(ns, pixels, msg.encoding)
        # the speedometer and the lateral error are published just before their frame
        self.view.value(SPEED, ns, self._speed)
        self.view.value(LATERAL, ns, self._lateral)

    def _on_expert(self, msg: Any) -> None:
        self._expert[stamp_to_ns(msg.header.stamp)] = float(msg.steer)
        while len(self._expert) > _RECENT:
            self._expert.popitem(last=False)

    def _on_agent(self, msg: Any) -> None:
        ns = stamp_to_ns(msg.header.stamp)
        self.view.steering(ns, float(msg.steer), self._expert.get(ns))

    def _on_twist(self, msg: Any) -> None:
        steer = control_msgs.from_twist(msg, self.p["max_steer_angle_rad"])[0]
        ns = self._stamp_ns  # a Twist answers the newest frame
        self.view.steering(ns, steer, self._expert.get(ns))

    def close(self) -> None:
        self.view.close()
