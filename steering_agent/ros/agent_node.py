"""The `agent` node: front-camera frames in, vehicle control commands out.

`ros2 run steering_agent agent --ros-args --params-file config/agent.yaml`

The node converts messages and calls the agent core (`steering_agent.agent.DrivingAgent`),
which owns the per-frame rules: one command per frame stamped with the frame's stamp, the
same answer for a re-sent frame, a brake after `max_failures` unusable frames in a row,
and the watchdog (on wall time, also under `use_sim_time`) that brakes while no frame
gives a driving command. The camera subscription keeps only the newest frame (depth 1),
so a slow step drops frames instead of building a queue. Raw images are taken serialized
and their pixels read in place (steering_agent.ros.image_input: one copy per frame, the
middleware's). Control message types and the Twist convention: steering_agent.ros
.control_msgs.

For the integrator:

- `/diagnostics` (diagnostic_msgs/DiagnosticArray), once a second on wall time: one
  status "steering_agent: agent" (hardware_id: the node's name), OK / WARN (braking, no
  frames yet, many frames dropped) / ERROR (no policy), with the frame rate, the frame
  drop, the policy's step time p50/p99, the watchdog and override states and the
  calibration as key-values. The content is `steering_agent.ros.diagnostics.HealthMonitor`'s
  (no ROS; tested in-process); the frame callback only counts.
- manual override: while `manual_override_topic` (std_msgs/Bool, reliable, transient
  local, depth 1, as the CARLA ROS bridge subscribes to it) is true, the node publishes
  nothing, no drive commands and no watchdog brakes, but keeps stepping the network on
  the frames, so on release it drives from a state that saw the road (no cold start);
  the release re-arms the watchdog (`DrivingAgent.set_override`).
- `target_speed_mps`, `watchdog_timeout_s` and `error_log_period_s` can be set while the
  node runs (`ros2 param set agent target_speed_mps 5.0`), within the ranges of their
  descriptors. An integer (`... target_speed_mps 5`) is taken as a float where rclpy
  has pre-set parameter callbacks (Iron and newer: Jazzy, Kilted); Humble's rclpy refuses
  it before any node callback runs ("Wrong parameter type"), so there pass 5.0.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Bool, Float32
from std_srvs.srv import Trigger

from steering_agent.agent import BRAKE, DRIVE, DrivingAgent
from steering_agent.common.package_files import shipped_checkpoint
from steering_agent.interfaces.stamps import stamp_to_s
from steering_agent.ros import control_msgs
from steering_agent.ros.agent_params import (
    PARAMETERS,
    RUNTIME,
    finite_number,
    float_range,
    ints_to_floats,
    refused,
)
from steering_agent.ros.diagnostics import HealthMonitor
from steering_agent.ros.image_input import FrameDecoder, serialized_stamp
from steering_agent.ros.params import declare_all
from steering_agent.ros.spin import run_node

NODE_NAME = "agent"
WATCHDOG_FRAME_ID = "watchdog"  # header.frame_id of the watchdog's brake commands
DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_NAME = "steering_agent: agent"
DIAGNOSTICS_PERIOD_S = 1.0
# Subscription callbacks that take the message info (publication sequence numbers, from
# which the superseded frames are counted) came after Humble; there the count is unknown.
_WITH_MESSAGE_INFO = hasattr(Subscription, "CallbackType")


class SteeringAgentNode(Node):
    """Converts camera messages for `DrivingAgent` and publishes what it decides."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self._params = declare_all(self, PARAMETERS)
        self.control_type = control_msgs.resolve_control_type(p["control_type"])
        self._checkpoint_speed_mps = 0.0  # the checkpoint's cruise speed, once loaded
        policy, problem = self._load_policy(p)
        self.agent = DrivingAgent(
            policy, p["watchdog_timeout_s"], p["max_failures"], policy_error=problem
        )
        self.health = HealthMonitor(self.agent)
        self._speed: float | None = None
        self._frames = FrameDecoder(p["max_image_pixels"])
        self._make_publisher(p)
        self._make_subscriptions(p)
        self.create_service(Trigger, "~/reset", self._on_reset)
        # The watchdog and the diagnostics count wall time, also under use_sim_time: a
        # simulator that stops together with its /clock must still be braked for.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._watchdog = self.create_timer(
            p["watchdog_timeout_s"] / 4.0, self._on_watchdog, clock=steady
        )
        self._diagnostics = self.create_publisher(
            DiagnosticArray, DIAGNOSTICS_TOPIC, QoSProfile(depth=10)
        )
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics, clock=steady)
        self._runtime_parameters()
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
            from steering_agent.policy.checkpoint import load_checkpoint
            from steering_agent.policy.control import DEFAULT_TARGET_SPEED_MPS

            ckpt = load_checkpoint(path)
            speed = ckpt.provenance.get("target_speed_mps")
            # what target_speed_mps 0 means (as BatchedSteeringPolicy resolves None)
            self._checkpoint_speed_mps = (
                float(speed) if finite_number(speed) else DEFAULT_TARGET_SPEED_MPS
            )
            policy = SteeringPolicy.from_checkpoint(
                ckpt,
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

    def _runtime_parameters(self) -> None:
        """Accept integers for the float parameters (where rclpy can), then validate and
        apply the runtime parameters (`RUNTIME`) when they are set."""
        add_pre_set = getattr(self, "add_pre_set_parameters_callback", None)
        if add_pre_set is not None:  # rclpy of Iron and newer; not on Humble
            add_pre_set(ints_to_floats)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Check every runtime parameter of the request (the descriptor's range, as rclpy
        does too, and the type), then apply them all or none."""
        changes = {}
        for param in params:
            if param.name not in RUNTIME:
                continue  # read-only ones were refused by rclpy before this callback
            value, low, high = param.value, *float_range(param.name)
            if param.type_ == Parameter.Type.INTEGER:
                return refused(
                    f"{param.name} is a float: pass {float(value)!r}, not {value!r} "
                    f"(ros2 param set {self.get_name()} {param.name} {float(value)!r})"
                )
            if param.type_ != Parameter.Type.DOUBLE or not low <= value <= high:
                return refused(f"{param.name}={value!r} is outside {low:g}..{high:g}")
            changes[param.name] = float(value)
        for name, value in changes.items():
            self._apply(name, value)
        return SetParametersResult(successful=True)

    def _apply(self, name: str, value: float) -> None:
        self._params[name] = value
        if name == "target_speed_mps":
            if self.policy is not None:
                target = value or self._checkpoint_speed_mps
                self.policy.speed_controller.target_speed_mps = target
                self.get_logger().info(f"target speed {target:g} m/s")
        elif name == "watchdog_timeout_s":
            self.agent.set_watchdog_timeout(value)
            self._watchdog.timer_period_ns = int(value / 4.0 * 1e9)
            self.get_logger().info(f"watchdog timeout {value:g} s")
        elif name == "error_log_period_s":
            self.get_logger().info(f"error log period {value:g} s")

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
            on_frame = self._on_compressed_info if _WITH_MESSAGE_INFO else self._on_compressed
            self.create_subscription(CompressedImage, topic, on_frame, newest)
        else:
            on_frame = self._on_raw_info if _WITH_MESSAGE_INFO else self._on_raw
            self.create_subscription(Image, p["image_topic"], on_frame, newest, raw=True)
        self.create_subscription(Float32, p["speed_topic"], self._on_speed, newest)
        # As the CARLA ROS bridge subscribes to it (a latched value): the last state is
        # received also when the agent starts after the publisher. A volatile publisher
        # does not match this subscription.
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.create_subscription(Bool, p["manual_override_topic"], self._on_override, latched)
        self._camera_info_key = None
        self._logged_calibration = False  # not yet logged
        info_qos = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, info_qos)

    def _on_speed(self, msg: Float32) -> None:
        speed = float(msg.data)
        self._speed = speed if speed == speed else None  # NaN: not measured

    def _on_override(self, msg: Bool) -> None:
        event = self.agent.set_override(msg.data)
        if event:
            self.get_logger().info(event)

    def _on_raw(self, buf: bytes) -> None:
        self._on_serialized(buf, None)

    def _on_compressed(self, msg) -> None:
        self._on_image(msg, self._frames.compressed)

    def _on_raw_info(self, buf: bytes, info) -> None:
        self._on_serialized(buf, info)

    def _on_compressed_info(self, msg, info) -> None:
        self._on_image(msg, self._frames.compressed, info)

    def _on_serialized(self, buf: bytes, info) -> None:
        """A serialized Image: the stamp read first (a message too short for one is
        refused by the decoder, as any unusable frame), the pixels as a view."""
        sec_ns = serialized_stamp(buf)
        stamp = None if sec_ns is None else Time(sec=sec_ns[0], nanosec=sec_ns[1])
        self._on_image(buf, self._frames.serialized, info, stamp)

    def _on_image(self, msg, decode, info=None, stamp=False) -> None:
        t0 = time.perf_counter()
        if info is None:
            self.health.frame_received()
        else:
            self.health.frame_received(*_publication(info))
        if stamp is False:
            stamp = msg.header.stamp
        if stamp is None:  # not even a stamp: one unusable frame, the agent brakes
            key, stamp_s = None, float("nan")
        else:
            key, stamp_s = (stamp.sec, stamp.nanosec), stamp_to_s(stamp)
        result = self.agent.on_frame(key, stamp_s, lambda: decode(msg), self._speed)
        self._act(result, stamp)
        self._log_calibration()
        if result.command is not None and result.command.kind == DRIVE:
            a = self.agent
            t_done = time.perf_counter()
            a.stats.add(a.last_decode_s, a.last_policy_s, t_done - t0 - a.last_decode_s
                        - a.last_policy_s)  # fmt: skip

    def _on_watchdog(self) -> None:
        self._act(self.agent.on_tick(), None)

    def _publish_diagnostics(self) -> None:
        health = self.health.report()
        status = DiagnosticStatus(
            level=bytes([health.level]),
            name=DIAGNOSTICS_NAME,
            message=health.message,
            hardware_id=self.get_name(),
        )
        status.values = [KeyValue(key=k, value=v) for k, v in health.values]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

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


def _publication(message_info) -> tuple:
    """(publication sequence number, publisher) of a message's info; (None, None) where
    the middleware gives no sequence numbers."""
    seq = message_info.get("publication_sequence_number")
    if seq is None or seq >= 2**63:  # unsupported: None, or rmw's UINT64_MAX
        return None, None
    gid = message_info.get("publisher_gid")
    return seq, (bytes(gid["data"]) if gid else None)


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run steering_agent agent`; exit code 0 on Ctrl-C/SIGTERM."""
    return run_node(
        "agent", SteeringAgentNode, SteeringAgentNode.write_summary, args, (FileNotFoundError,)
    )


if __name__ == "__main__":
    sys.exit(main())
