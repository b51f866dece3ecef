"""What the `agent` node does, as a mixin of the plain node (steering_agent.ros.agent_node)
and the managed one (steering_agent.ros.lifecycle), in four steps:

- `_declare()`: the parameters, their runtime callback, the reset service;
- `_configure()`: load the checkpoint, build the calibration (mount from the parameters
  or from /tf), start /diagnostics;
- `_activate()`: the control publisher, the camera/speed/override/camera_info
  subscriptions and the watchdog;
- `_deactivate()`: one full brake, then no more subscriptions, watchdog or commands;
- `_cleanup()`: drop the policy and every entity `_configure` made.

The per-frame rules are `steering_agent.agent.DrivingAgent`'s; this module converts
messages and publishes. Frame and camera handling: steering_agent.ros.agent_frames.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_srvs.srv import Trigger

from steering_agent.agent import BRAKE, FULL_BRAKE, Command, DrivingAgent
from steering_agent.common.package_files import shipped_checkpoint
from steering_agent.ros import control_msgs
from steering_agent.ros.agent_frames import AgentFrames
from steering_agent.ros.agent_params import (
    PARAMETERS,
    RUNTIME,
    finite_number,
    float_range,
    ints_to_floats,
    refused,
)
from steering_agent.ros.diagnostics import HealthMonitor
from steering_agent.ros.params import declare_all

NODE_NAME = "agent"
WATCHDOG_FRAME_ID = "watchdog"  # header.frame_id of the watchdog's brake commands
DEACTIVATE_FRAME_ID = "deactivated"  # ... of the one brake of a lifecycle deactivate
DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_NAME = "steering_agent: agent"
DIAGNOSTICS_PERIOD_S = 1.0


class AgentCore(AgentFrames):
    """The node's behaviour (module doc); mixed into an rclpy Node or LifecycleNode."""

    agent: DrivingAgent | None = None
    state = "unconfigured"  # unconfigured | inactive | active (the lifecycle's names)

    @property
    def policy(self):
        return None if self.agent is None else self.agent.policy

    # -- declare ------------------------------------------------------------------------

    def _declare(self) -> None:
        p = self._params = declare_all(self, PARAMETERS)
        self.control_type = control_msgs.resolve_control_type(p["control_type"])
        self._checkpoint_speed_mps = 0.0  # the checkpoint's cruise speed, once loaded
        self._pub = None
        self._diagnostics = self._diagnostics_timer = self._watchdog = None
        self._subscriptions: list = []
        self._tf = self._tf_timer = None
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_service(Trigger, "~/reset", self._on_reset)
        add_pre_set = getattr(self, "add_pre_set_parameters_callback", None)
        if add_pre_set is not None:  # rclpy of Iron and newer; not on Humble
            add_pre_set(ints_to_floats)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # -- configure / cleanup ------------------------------------------------------------

    def _configure(self) -> None:
        """Load the policy, build the calibration, start /diagnostics.

        Raises:
            FileNotFoundError: the checkpoint does not exist.
            ValueError: the mount cannot be read as configured (tf2_ros missing).
        """
        p = self._params
        self._init_frames(p)  # the mount (from parameters, or /tf when it comes)
        policy, problem = self._load_policy(p)
        self.agent = DrivingAgent(
            policy, p["watchdog_timeout_s"], p["max_failures"], policy_error=problem
        )
        self.health = HealthMonitor(self.agent, state=lambda: self.state)
        # The watchdog and the diagnostics count wall time, also under use_sim_time: a
        # simulator that stops together with its /clock must still be braked for.
        self._diagnostics = self.create_publisher(
            DiagnosticArray, DIAGNOSTICS_TOPIC, QoSProfile(depth=10)
        )
        self._diagnostics_timer = self.create_timer(
            DIAGNOSTICS_PERIOD_S, self._publish_diagnostics, clock=self._steady
        )
        self._make_publisher(p)
        self.state = "inactive"

    def _cleanup(self) -> None:
        """Free what `_configure` made (the policy and its calibration included)."""
        self._close_frames()
        for timer in (self._diagnostics_timer,):
            if timer is not None:
                self.destroy_timer(timer)
        for pub in (self._diagnostics, self._pub):
            if pub is not None:
                self.destroy_publisher(pub)
        self._diagnostics = self._diagnostics_timer = self._pub = None
        self.agent = None
        self.state = "unconfigured"

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
                camera=self._camera_request(),
                vehicle={"wheelbase_m": p["wheelbase_m"], "max_steer_deg": p["max_steer_deg"]},
            )
        except Exception as e:  # a checkpoint that loads but cannot run, a device missing...
            problem = f"policy from {path} could not be built: {type(e).__name__}: {e}"
            self.get_logger().error(f"{problem}; braking on every frame")
            return None, problem
        self.get_logger().info(f"loaded {path} ({policy.backend} on {policy.device})")
        return policy, None

    def _make_publisher(self, p: dict) -> None:
        reliable = QoSProfile(depth=10)  # what CARLA's bridge subscribes with
        if self.control_type == "carla":
            from carla_msgs.msg import CarlaEgoVehicleControl as msg_type

            self._control_topic = p["control_topic"]
        elif self.control_type == "ackermann":
            from ackermann_msgs.msg import AckermannDriveStamped as msg_type

            self._control_topic = p["ackermann_topic"]
        else:
            from geometry_msgs.msg import Twist as msg_type

            self._control_topic = p["twist_topic"]
        self._out = msg_type()
        self._pub = self.create_publisher(msg_type, self._control_topic, reliable)

    # -- activate / deactivate ----------------------------------------------------------

    def _activate(self) -> None:
        """Subscribe and publish; the agent starts afresh (state reset, watchdog unarmed
        until the first frame)."""
        p = self._params
        self.agent.restart()
        self._subscriptions = self._make_subscriptions(p)
        self._watchdog = self.create_timer(
            p["watchdog_timeout_s"] / 4.0, self._on_watchdog, clock=self._steady
        )
        self.state = "active"
        self.get_logger().info(
            f"steering from {p['image_topic']} ({p['image_transport']}), "
            f"publishing {self.control_type} on {self._control_topic}"
        )

    def _deactivate(self) -> None:
        """One full brake, then nothing: no subscriptions, no watchdog, no commands."""
        for sub in self._subscriptions:
            self.destroy_subscription(sub)
        self._subscriptions = []
        if self._watchdog is not None:
            self.destroy_timer(self._watchdog)
            self._watchdog = None
        self.state = "inactive"
        self._publish(Command(FULL_BRAKE, BRAKE), None, DEACTIVATE_FRAME_ID)
        self.get_logger().info("deactivated: braked once, publishing nothing")

    # -- runtime parameters -------------------------------------------------------------

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
            if self.agent is not None:
                self.agent.set_watchdog_timeout(value)
            if self._watchdog is not None:
                self._watchdog.timer_period_ns = int(value / 4.0 * 1e9)
            self.get_logger().info(f"watchdog timeout {value:g} s")
        elif name == "error_log_period_s":
            self.get_logger().info(f"error log period {value:g} s")

    # -- publishing ---------------------------------------------------------------------

    def _on_watchdog(self) -> None:
        if self.agent is not None and self.state == "active":
            self._act(self.agent.on_tick(), None)

    def _publish_diagnostics(self) -> None:
        if self._diagnostics is None:
            return
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
        if result.command is not None and self.state == "active":
            self._publish(result.command, stamp, WATCHDOG_FRAME_ID)

    def _publish(self, cmd: Command, stamp, brake_frame_id: str) -> None:
        if self._pub is None:
            return
        braking = cmd.kind == BRAKE
        if braking or stamp is None:
            stamp = self.get_clock().now().to_msg()
        out, p = self._out, self._params
        if self.control_type == "carla":
            control_msgs.to_carla_msg(cmd.control, stamp, msg=out)
            out.header.frame_id = brake_frame_id if braking else ""
        elif self.control_type == "ackermann":
            control_msgs.to_ackermann(
                cmd.control, p["max_steer_deg"], self._target_speed_mps(), stamp, msg=out
            )
            out.header.frame_id = brake_frame_id if braking else ""
        else:
            control_msgs.to_twist(cmd.control, p["max_steer_angle_rad"], msg=out)
        self._pub.publish(out)

    def _target_speed_mps(self) -> float:
        controller = getattr(self.policy, "speed_controller", None)
        speed = getattr(controller, "target_speed_mps", None)
        return float(speed) if finite_number(speed) else self._checkpoint_speed_mps

    def _log_error(self, text: str) -> None:
        """At most one error per `error_log_period_s` (0: every one)."""
        period = self._params["error_log_period_s"]
        if period > 0:
            self.get_logger().error(text, throttle_duration_sec=period)
        else:
            self.get_logger().error(text)

    def _on_reset(self, request, response):
        if self.agent is None:
            response.success = False
            response.message = "not configured: no recurrent state"
            return response
        self.agent.reset()
        response.success = True
        response.message = "recurrent state reset"
        self.get_logger().info("recurrent state reset (service)")
        return response

    def summary(self) -> dict:
        """Per-frame time (decode + policy + publish) and counters, for logs and benches."""
        stats = {} if self.agent is None else self.agent.stats.summary()
        return {"control_type": self.control_type, **stats}

    def write_summary(self) -> None:
        """Log the summary and write it to the `stats_file` parameter's path, if set."""
        summary = self.summary()
        if self.context.ok():
            self.get_logger().info(f"summary: {json.dumps(summary)}")
        else:  # after Ctrl-C/SIGTERM the context is down: rosout cannot take it
            print(f"[agent] summary: {json.dumps(summary)}", file=sys.stderr)
        if self._params["stats_file"]:
            Path(self._params["stats_file"]).write_text(json.dumps(summary, indent=1))
