"""The `agent` node: front-camera frames in, vehicle control commands out.

`ros2 run steering_agent agent --ros-args --params-file config/agent.yaml`

The node converts messages and calls the agent core (`steering_agent.agent.DrivingAgent`),
which owns the per-frame rules: one command per frame stamped with the frame's stamp, the
same answer for a re-sent frame, a brake after `max_failures` unusable frames in a row,
and the watchdog (on wall time, also under `use_sim_time`) that brakes while no frame
gives a driving command. The camera subscription keeps only the newest frame (depth 1),
so a slow step drops frames instead of building a queue. Control message types and the
Twist convention: steering_agent.ros.control_msgs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from steering_agent.agent import BRAKE, DrivingAgent
from steering_agent.common.package_files import shipped_checkpoint
from steering_agent.interfaces import topics
from steering_agent.interfaces.stamps import stamp_to_s
from steering_agent.ros import control_msgs
from steering_agent.ros.params import declare_all, floating, integer, string
from steering_agent.ros.spin import run_node

NODE_NAME = "agent"
WATCHDOG_FRAME_ID = "watchdog"  # header.frame_id of the watchdog's brake commands


# name -> (default, descriptor); the defaults are the CARLA ROS bridge's names.
PARAMETERS = {
    "checkpoint": ("", string("checkpoint file; empty = the shipped checkpoints/cnn_lstm.pt")),
    "device": ("auto", string("torch device", ("auto", "cpu", "cuda"))),
    "backend": (
        "auto",
        string(
            "per-frame network runtime (auto: onnxruntime on the CPU where installed)",
            ("auto", "torch", "onnxruntime"),
        ),
    ),
    "image_topic": (topics.IMAGE, string("camera sensor_msgs/Image topic")),
    "image_transport": (
        "raw",
        string(
            "raw: Image on image_topic; compressed: <image_topic>/compressed", ("raw", "compressed")
        ),
    ),
    "image_reliability": (
        "best_effort",
        string(
            "camera QoS reliability, depth 1 either way (best_effort: sensor-data QoS; "
            "reliable: retransmits lost fragments of large frames)",
            ("best_effort", "reliable"),
        ),
    ),
    "camera_info_topic": (
        topics.CAMERA_INFO,
        string("sensor_msgs/CameraInfo of the camera (its intrinsics replace camera_fov_deg)"),
    ),
    "speed_topic": (topics.SPEEDOMETER, string("std_msgs/Float32 speed topic (m/s)")),
    "control_topic": (topics.CONTROL, string("carla_msgs/CarlaEgoVehicleControl topic")),
    "twist_topic": (topics.TWIST, string("geometry_msgs/Twist topic (fallback)")),
    "control_type": ("auto", string("control message type", control_msgs.CONTROL_TYPES)),
    "target_speed_mps": (
        0.0,
        floating("cruise speed (m/s) of the speed controller; 0 = the checkpoint's", 0.0, 40.0),
    ),
    "max_gap_s": (0.5, floating("frame gap (s) after which the LSTM state resets", 0.01, 10.0)),
    "watchdog_timeout_s": (
        0.5,
        floating("no frame for this long (s): publish full brake until frames return", 0.05, 10.0),
    ),
    "max_steer_angle_rad": (
        control_msgs.DEFAULT_MAX_STEER_ANGLE_RAD,
        floating("Twist only: wheel angle (rad) of steer = 1, as carla_twist_to_control", 0.1, 1.6),
    ),
    "error_log_period_s": (
        2.0,
        floating("bad frames: log at most one error per this many seconds", 0.0, 3600.0),
    ),
    # The camera's mount on the car (X forward, Y left, Z up from the ground under the
    # reference point; steering_agent.policy.calibration) and the car: defaults are the
    # CARLA ROS bridge's rgb_front and CARLA's default vehicle.
    **{
        name: (default, floating(text, low, high))
        for name, default, text, low, high in (
            ("camera_x_m", 2.0, "camera position ahead of the reference point (m)", -10.0, 10.0),
            ("camera_y_m", 0.0, "camera position left of the centre line (m)", -5.0, 5.0),
            ("camera_height_m", 2.0, "camera height above the ground (m)", 0.05, 20.0),
            ("camera_pitch_deg", 0.0, "camera pitch, down positive (deg)", -80.0, 80.0),
            ("camera_roll_deg", 0.0, "camera roll, clockwise seen from behind (deg)", -45.0, 45.0),
            ("camera_yaw_deg", 0.0, "camera yaw, left positive (deg)", -45.0, 45.0),
            (
                "camera_fov_deg",
                90.0,
                "horizontal FOV until camera_info arrives (deg)",
                5.0,
                175.0,
            ),
            ("wheelbase_m", 2.875, "wheelbase of the car (m)", 0.5, 10.0),
            ("max_steer_deg", 70.0, "road-wheel angle of steer = 1 (deg)", 1.0, 89.0),
        )
    },
    "max_failures": (
        3,
        integer("unusable frames in a row (undecodable, policy error) before braking", 1, 1000),
    ),
    "max_image_pixels": (
        4096 * 2304,
        integer("refuse frames of more pixels than this, before decoding them", 1, 2**31 - 1),
    ),
    "threads": (
        1,
        integer(
            "torch CPU threads (0: torch's default); 1 avoids fighting the simulator and DDS "
            "for the cores",
            0,
            256,
        ),
    ),
    "stats_file": ("", string("write per-frame timing JSON here at shutdown; empty = no")),
}


class SteeringAgentNode(Node):
    """Converts camera messages for `DrivingAgent` and publishes what it decides."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self._params = declare_all(self, PARAMETERS)
        self.control_type = control_msgs.resolve_control_type(p["control_type"])
        policy, problem = self._load_policy(p)
        self.agent = DrivingAgent(
            policy, p["watchdog_timeout_s"], p["max_failures"], policy_error=problem
        )
        self._speed: float | None = None
        self._rgb = None
        self._make_publisher(p)
        self._make_subscriptions(p)
        self.create_service(Trigger, "~/reset", self._on_reset)
        # The watchdog counts wall time, also under use_sim_time: a simulator that stops
        # together with its /clock must still be braked for.
        self.create_timer(
            p["watchdog_timeout_s"] / 4.0,
            self._on_watchdog,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self.get_logger().info(
            f"steering from {p['image_topic']} ({p['image_transport']}), "
            f"publishing {self.control_type} on {self._control_topic}"
        )

    @property
    def policy(self):
        return self.agent.policy

    def _load_policy(self, p: dict):
        """(policy, None), or (None, why) when it cannot be built: the node then stays up
        and brakes on every frame, saying why."""
        from steering_agent.policy.policy import SteeringPolicy
        from steering_agent.policy.threads import set_torch_threads

        if p["threads"] > 0:
            set_torch_threads(p["threads"])
        path = Path(p["checkpoint"]) if p["checkpoint"] else shipped_checkpoint()
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint {path} does not exist; pass -p checkpoint:=PATH (a file "
                "written by `steering-agent train`) or put the shipped checkpoints/cnn_lstm.pt"
            )
        try:
            policy = SteeringPolicy.load(
                path,
                device=p["device"],
                max_gap_s=p["max_gap_s"],
                target_speed_mps=p["target_speed_mps"] or None,
                backend=p["backend"],
                camera=self._camera_request(None),
                vehicle={"wheelbase_m": p["wheelbase_m"], "max_steer_deg": p["max_steer_deg"]},
            )
        except Exception as e:  # a checkpoint that loads but cannot run, a device missing...
            problem = f"policy from {path} could not be built: {type(e).__name__}: {e}"
            self.get_logger().error(f"{problem}; braking on every frame")
            return None, problem
        self.get_logger().info(f"loaded {path} ({policy.backend} on {policy.device})")
        return policy, None

    def _camera_request(self, info) -> dict:
        """The camera for the policy: the mount parameters, and the intrinsics of a
        CameraInfo once one arrived (before that, camera_fov_deg at each frame's size)."""
        p = self._params
        mount = ("x_m", "y_m", "height_m", "pitch_deg", "roll_deg", "yaw_deg")
        cam = {k: p[f"camera_{k}"] for k in mount}
        cam["fov_deg"] = p["camera_fov_deg"]
        if info is not None:
            k = info.k
            cam.update(width=int(info.width), height=int(info.height))
            cam.update(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]))
        return cam

    def _on_camera_info(self, msg) -> None:
        key = (msg.width, msg.height, *msg.k)
        if key == self._camera_info_key or self.policy is None:
            return
        if msg.width <= 0 or msg.height <= 0 or not (msg.k[0] > 0 and msg.k[4] > 0):
            self._log_error(f"camera_info ignored: {msg.width}x{msg.height} K={list(msg.k)}")
            return
        self._camera_info_key = key
        try:
            self.policy.set_camera(self._camera_request(msg))
        except ValueError as e:
            self._log_error(f"camera_info ignored: {e}")

    def _log_calibration(self) -> None:
        calib = None if self.policy is None else self.policy.calibration
        if calib is not self._logged_calibration:
            self._logged_calibration = calib
            text = calib.describe() if calib is not None else "the canonical camera (no remap)"
            self.get_logger().info(f"calibration: {text}")

    def _make_publisher(self, p: dict) -> None:
        reliable = QoSProfile(depth=10)  # what CARLA's bridge subscribes with
        if self.control_type == "carla":
            from carla_msgs.msg import CarlaEgoVehicleControl as msg_type

            self._control_topic = p["control_topic"]
        else:
            from geometry_msgs.msg import Twist as msg_type

            self._control_topic = p["twist_topic"]
        self._out = msg_type()
        self._pub = self.create_publisher(msg_type, self._control_topic, reliable)

    def _make_subscriptions(self, p: dict) -> None:
        # Sensor-data QoS with depth 1: newest frame only. Best effort takes a reliable
        # publisher such as CARLA's bridge; reliable suits large frames on lossy links.
        reliability = (
            ReliabilityPolicy.RELIABLE
            if p["image_reliability"] == "reliable"
            else qos_profile_sensor_data.reliability
        )
        newest = QoSProfile(
            depth=1,
            reliability=reliability,
            durability=qos_profile_sensor_data.durability,
            history=qos_profile_sensor_data.history,
        )
        if p["image_transport"] == "compressed":
            topic = p["image_topic"].rstrip("/") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_compressed, newest)
        else:
            self.create_subscription(Image, p["image_topic"], self._on_raw, newest)
        self.create_subscription(Float32, p["speed_topic"], self._on_speed, newest)
        self._camera_info_key = None
        self._logged_calibration = False  # not yet logged
        info_qos = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, info_qos)

    def _decode_raw(self, msg):
        from steering_agent.data.imageconv import image_to_rgb

        out = self._rgb  # reused while the frame size stays the same: no allocation
        if out is not None and out.shape != (msg.height, msg.width, 3):
            out = None
        self._rgb = image_to_rgb(msg, out=out, max_pixels=self._params["max_image_pixels"])
        return self._rgb

    def _decode_compressed(self, msg):
        from steering_agent.data.imageconv import compressed_to_rgb

        return compressed_to_rgb(msg, max_pixels=self._params["max_image_pixels"])

    def _on_speed(self, msg: Float32) -> None:
        speed = float(msg.data)
        self._speed = speed if speed == speed else None  # NaN: not measured

    def _on_raw(self, msg) -> None:
        self._on_image(msg, self._decode_raw)

    def _on_compressed(self, msg) -> None:
        self._on_image(msg, self._decode_compressed)

    def _on_image(self, msg, decode) -> None:
        t0 = time.perf_counter()
        stamp = msg.header.stamp
        key = (stamp.sec, stamp.nanosec)
        result = self.agent.on_frame(key, stamp_to_s(stamp), lambda: decode(msg), self._speed)
        self._act(result, stamp)
        self._log_calibration()
        if result.command is not None and result.command.kind == "drive":
            a = self.agent
            t_done = time.perf_counter()
            a.stats.add(a.last_decode_s, a.last_policy_s, t_done - t0 - a.last_decode_s
                        - a.last_policy_s)  # fmt: skip

    def _on_watchdog(self) -> None:
        self._act(self.agent.on_tick(), None)

    def _act(self, result, stamp) -> None:
        """Log what the agent said and publish its command (brakes stamped now)."""
        if result.error:
            self._log_error(result.error)
        if result.event:
            self.get_logger().warning(result.event)
        cmd = result.command
        if cmd is None:
            return
        braking = cmd.kind == BRAKE
        if braking:
            stamp = self.get_clock().now().to_msg()
        out = self._out
        if self.control_type == "carla":
            control_msgs.to_carla_msg(cmd.control, stamp, msg=out)
            out.header.frame_id = WATCHDOG_FRAME_ID if braking else ""
        else:
            control_msgs.to_twist(cmd.control, self._params["max_steer_angle_rad"], msg=out)
        self._pub.publish(out)

    def _log_error(self, text: str) -> None:
        """At most one error per `error_log_period_s` (0: every one)."""
        period = self._params["error_log_period_s"]
        if period > 0:
            self.get_logger().error(text, throttle_duration_sec=period)
        else:
            self.get_logger().error(text)

    def _on_reset(self, request, response):
        self.agent.reset()
        response.success = True
        response.message = "recurrent state reset"
        self.get_logger().info("recurrent state reset (service)")
        return response

    def summary(self) -> dict:
        """Per-frame time (decode + policy + publish) and counters, for logs and benches."""
        return {"control_type": self.control_type, **self.agent.stats.summary()}

    def write_summary(self) -> None:
        """Log the summary and write it to the `stats_file` parameter's path, if set."""
        summary = self.summary()
        if self.context.ok():
            self.get_logger().info(f"summary: {json.dumps(summary)}")
        else:  # after Ctrl-C/SIGTERM the context is down: rosout cannot take it
            print(f"[agent] summary: {json.dumps(summary)}", file=sys.stderr)
        if self._params["stats_file"]:
            Path(self._params["stats_file"]).write_text(json.dumps(summary, indent=1))


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run steering_agent agent`; exit code 0 on Ctrl-C/SIGTERM."""
    return run_node(
        "agent", SteeringAgentNode, SteeringAgentNode.write_summary, args, (FileNotFoundError,)
    )


if __name__ == "__main__":
    sys.exit(main())
