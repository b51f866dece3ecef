"""The `agent` node: front-camera frames in, vehicle control commands out.

`ros2 run steering_agent agent --ros-args --params-file config/agent.yaml`

Each camera frame is decoded (steering_agent.data.imageconv), run through the stateful
`SteeringPolicy` (CNN per frame, LSTM across frames) and answered with one control
command whose header stamp is the frame's stamp. The camera subscription keeps only
the newest frame (depth 1), so a slow step drops frames instead of building a queue.
A watchdog brakes fully while frames stay away; bad frames are logged and skipped.
Control message types and the Twist convention: steering_agent.ros.control_msgs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from steering_agent.common.package_files import shipped_checkpoint
from steering_agent.interfaces import topics
from steering_agent.ros import control_msgs

NODE_NAME = "agent"
WATCHDOG_FRAME_ID = "watchdog"  # header.frame_id of the watchdog's brake commands


def _string(description: str, choices: tuple[str, ...] = ()) -> ParameterDescriptor:
    extra = f" (one of: {', '.join(choices)})" if choices else ""
    return ParameterDescriptor(description=description + extra, read_only=True)


def _float(description: str, low: float, high: float, read_only: bool = True):
    return ParameterDescriptor(
        description=description,
        read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)],
    )


# name -> (default, descriptor); the defaults are the CARLA ROS bridge's names.
PARAMETERS = {
    "checkpoint": ("", _string("checkpoint file; empty = the shipped checkpoints/cnn_lstm.pt")),
    "device": ("auto", _string("torch device", ("auto", "cpu", "cuda"))),
    "backend": (
        "auto",
        _string(
            "per-frame network runtime (auto: onnxruntime on the CPU where installed)",
            ("auto", "torch", "onnxruntime"),
        ),
    ),
    "image_topic": (topics.IMAGE, _string("camera sensor_msgs/Image topic")),
    "image_transport": (
        "raw",
        _string(
            "raw: Image on image_topic; compressed: <image_topic>/compressed", ("raw", "compressed")
        ),
    ),
    "image_reliability": (
        "best_effort",
        _string(
            "camera QoS reliability, depth 1 either way (best_effort: sensor-data QoS; "
            "reliable: retransmits lost fragments of large frames)",
            ("best_effort", "reliable"),
        ),
    ),
    "speed_topic": (topics.SPEEDOMETER, _string("std_msgs/Float32 speed topic (m/s)")),
    "control_topic": (topics.CONTROL, _string("carla_msgs/CarlaEgoVehicleControl topic")),
    "twist_topic": (topics.TWIST, _string("geometry_msgs/Twist topic (fallback)")),
    "control_type": ("auto", _string("control message type", control_msgs.CONTROL_TYPES)),
    "target_speed_mps": (
        0.0,
        _float("cruise speed (m/s) of the speed controller; 0 = the checkpoint's", 0.0, 40.0),
    ),
    "max_gap_s": (0.5, _float("frame gap (s) after which the LSTM state resets", 0.01, 10.0)),
    "watchdog_timeout_s": (
        0.5,
        _float("no frame for this long (s): publish full brake until frames return", 0.05, 10.0),
    ),
    "max_steer_angle_rad": (
        control_msgs.DEFAULT_MAX_STEER_ANGLE_RAD,
        _float("Twist only: wheel angle (rad) of steer = 1, as carla_twist_to_control", 0.1, 1.6),
    ),
    "error_log_period_s": (
        2.0,
        _float("bad frames: log at most one error per this many seconds", 0.0, 3600.0),
    ),
    "threads": (
        1,
        ParameterDescriptor(
            description="torch CPU threads (0: torch's default); 1 avoids fighting the "
            "simulator and DDS for the cores",
            read_only=True,
            integer_range=[IntegerRange(from_value=0, to_value=256, step=1)],
        ),
    ),
    "stats_file": ("", _string("write per-frame timing JSON here at shutdown; empty = no")),
}


class FrameTimer:
    """Per-frame time inside the node, split into decode, policy and publish (seconds)."""

    def __init__(self) -> None:
        self._rows: list[tuple[float, float, float]] = []
        self.skipped = 0
        self.watchdog_events = 0
        self.resets = 0

    def add(self, t0: float, t1: float, t2: float, t3: float) -> None:
        self._rows.append((t1 - t0, t2 - t1, t3 - t2))

    def summary(self) -> dict:
        """Counts and median/p90/p99/max in milliseconds (total = decode+policy+publish)."""
        out = {
            "frames": len(self._rows),
            "skipped_frames": self.skipped,
            "watchdog_events": self.watchdog_events,
            "resets": self.resets,
        }
        if not self._rows:
            return out
        parts = np.asarray(self._rows) * 1e3
        columns = {"decode": parts[:, 0], "policy": parts[:, 1], "publish": parts[:, 2]}
        columns["total"] = parts.sum(axis=1)
        for name, ms in columns.items():
            q = np.percentile(ms, [50, 90, 99])
            out[f"{name}_ms"] = {
                "median": round(float(q[0]), 3),
                "p90": round(float(q[1]), 3),
                "p99": round(float(q[2]), 3),
                "max": round(float(ms.max()), 3),
            }
        return out


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class SteeringAgentNode(Node):
    """Runs a SteeringPolicy on camera frames and publishes vehicle control commands."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, descriptor) in PARAMETERS.items():
            self.declare_parameter(name, default, descriptor)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._params = p
        self._check_choices(p)
        self.control_type = control_msgs.resolve_control_type(p["control_type"])
        self.policy = self._load_policy(p)
        self.timer_stats = FrameTimer()
        self._speed: float | None = None
        self._last_frame_wall: float | None = None  # watchdog armed by the first frame
        self._braking = False
        self._last_stamp = None
        self._last_msg = None
        self._rgb = None
        self._make_publisher(p)
        self._make_subscriptions(p)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(p["watchdog_timeout_s"] / 4.0, self._on_watchdog)
        self.get_logger().info(
            f"steering from {p['image_topic']} ({p['image_transport']}), "
            f"publishing {self.control_type} on {self._control_topic}"
        )

    def _check_choices(self, p: dict) -> None:
        for name in ("device", "backend", "image_transport", "image_reliability", "control_type"):
            choices = PARAMETERS[name][1].description.rsplit("one of: ", 1)[1].rstrip(")")
            if p[name] not in choices.split(", "):
                raise ValueError(f"parameter {name}={p[name]!r} is not one of: {choices}")

    def _load_policy(self, p: dict):
        import torch

        from steering_agent.policy.policy import SteeringPolicy

        if p["threads"] > 0:
            torch.set_num_threads(p["threads"])

        path = Path(p["checkpoint"]) if p["checkpoint"] else shipped_checkpoint()
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint {path} does not exist; pass -p checkpoint:=PATH (a file "
                "written by `steering-agent train`) or put the shipped checkpoints/cnn_lstm.pt"
            )
        policy = SteeringPolicy.load(
            path,
            device=p["device"],
            max_gap_s=p["max_gap_s"],
            target_speed_mps=p["target_speed_mps"] or None,
            backend=p["backend"],
        )
        self.get_logger().info(f"loaded {path} ({policy.backend} on {policy.device})")
        return policy

    def _make_publisher(self, p: dict) -> None:
        reliable = QoSProfile(depth=10)  # what CARLA's bridge subscribes with
        if self.control_type == "carla":
            from carla_msgs.msg import CarlaEgoVehicleControl

            self._control_topic = p["control_topic"]
            self._out = CarlaEgoVehicleControl()
            self._pub = self.create_publisher(CarlaEgoVehicleControl, self._control_topic, reliable)
        else:
            from geometry_msgs.msg import Twist

            self._control_topic = p["twist_topic"]
            self._out = Twist()
            self._pub = self.create_publisher(Twist, self._control_topic, reliable)

    def _make_subscriptions(self, p: dict) -> None:
        from steering_agent.data import imageconv

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
        self._error_types = (imageconv.ImageDecodeError,)
        if p["image_transport"] == "compressed":
            self._decode = imageconv.compressed_to_rgb
            topic = p["image_topic"].rstrip("/") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_image, newest)
        else:
            self._decode = self._decode_raw
            self.create_subscription(Image, p["image_topic"], self._on_image, newest)
        self.create_subscription(Float32, p["speed_topic"], self._on_speed, newest)

    def _decode_raw(self, msg):
        from steering_agent.data.imageconv import image_to_rgb

        out = self._rgb  # reused while the frame size stays the same: no allocation
        if out is not None and out.shape != (msg.height, msg.width, 3):
            out = None
        self._rgb = image_to_rgb(msg, out=out)
        return self._rgb

    def _on_speed(self, msg: Float32) -> None:
        self._speed = float(msg.data)

    def _on_image(self, msg) -> None:
        t0 = time.perf_counter()
        self._last_frame_wall = time.monotonic()
        if self._braking:
            self._braking = False
            self.get_logger().info("frames are back: driving again")
        stamp = msg.header.stamp
        if stamp == self._last_stamp:
            # The same frame again (a synchronous simulator re-sending it): same answer,
            # without stepping the LSTM twice.
            self._pub.publish(self._last_msg)
            return
        try:
            rgb = self._decode(msg)
        except self._error_types as e:
            self._frame_error(f"frame skipped: {e}")
            return
        t1 = time.perf_counter()
        try:
            control = self.policy.step(rgb, _stamp_s(stamp), self._speed)
        except (ValueError, RuntimeError) as e:  # never let one frame stop the car
            self._frame_error(f"frame skipped: policy failed on a {rgb.shape} frame: {e}")
            return
        t2 = time.perf_counter()
        self._publish(control, stamp, frame_id="")
        self._last_stamp = stamp
        self.timer_stats.add(t0, t1, t2, time.perf_counter())

    def _frame_error(self, text: str) -> None:
        """Count a skipped frame; log it, at most once per `error_log_period_s`."""
        self.timer_stats.skipped += 1
        period = self._params["error_log_period_s"]
        if period > 0:
            self.get_logger().error(text, throttle_duration_sec=period)
        else:
            self.get_logger().error(text)

    def _publish(self, control, stamp, frame_id: str) -> None:
        out = self._out
        if self.control_type == "carla":
            control_msgs.to_carla_msg(control, stamp, msg=out)
            out.header.frame_id = frame_id
        else:
            control_msgs.to_twist(control, self._params["max_steer_angle_rad"], msg=out)
        self._pub.publish(out)
        self._last_msg = out

    def _on_watchdog(self) -> None:
        last = self._last_frame_wall
        if last is None or time.monotonic() - last < self._params["watchdog_timeout_s"]:
            return
        if not self._braking:
            self._braking = True
            self.policy.reset()
            self.timer_stats.watchdog_events += 1
            self.get_logger().warning(
                f"no camera frame for {self._params['watchdog_timeout_s']} s: braking, state reset"
            )
        self._last_stamp = None
        self._publish(_FULL_BRAKE, self.get_clock().now().to_msg(), WATCHDOG_FRAME_ID)

    def _on_reset(self, request, response):
        self.policy.reset()
        self._last_stamp = None
        self.timer_stats.resets += 1
        response.success = True
        response.message = "recurrent state reset"
        self.get_logger().info("recurrent state reset (service)")
        return response

    def summary(self) -> dict:
        """Per-frame time (decode + policy + publish) and counters, for logs and benches."""
        return {"control_type": self.control_type, **self.timer_stats.summary()}

    def write_summary(self) -> None:
        """Log the summary and write it to the `stats_file` parameter's path, if set."""
        summary = self.summary()
        if self.context.ok():
            self.get_logger().info(f"summary: {json.dumps(summary)}")
        else:  # after Ctrl-C/SIGTERM the context is down: rosout cannot take it
            print(f"[agent] summary: {json.dumps(summary)}", file=sys.stderr)
        if self._params["stats_file"]:
            Path(self._params["stats_file"]).write_text(json.dumps(summary, indent=1))


class _Brake:
    steer, throttle, brake = 0.0, 0.0, 1.0


_FULL_BRAKE = _Brake()


def spin_until_shutdown(node: Node) -> None:
    """Spin `node` until Ctrl-C or SIGTERM; a signal racing the executor is no error."""
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # rclpy's signal handler may shut the context down while the executor builds
        # its wait set (RCLError "context is not valid"): that is a shutdown, not a crash.
        if node.context.ok():
            raise


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run steering_agent agent`; exit code 0 on Ctrl-C/SIGTERM."""
    rclpy.init(args=args)
    node = None
    try:
        node = SteeringAgentNode()
        spin_until_shutdown(node)
    except KeyboardInterrupt:
        pass
    except (ValueError, FileNotFoundError, ParameterException) as e:
        print(f"agent: {e}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.write_summary()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
