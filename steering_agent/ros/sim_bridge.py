"""The `sim_bridge` node: the embedded simulator behind CARLA's ROS bridge interface.

`ros2 run steering_agent sim_bridge --ros-args --params-file config/sim_bridge.yaml`

Publishes what the CARLA ROS bridge publishes for `ego_vehicle` (steering_agent.interfaces.topics):
the front camera (sensor_msgs/Image, bgra8) and its CameraInfo, the speedometer
(std_msgs/Float32), odometry and /clock, all stamped with simulation time; it takes
control commands as carla_msgs/CarlaEgoVehicleControl (where importable) and as
geometry_msgs/Twist (carla_twist_to_control's convention, steering_agent.ros.control_msgs).

Modes:
- `sync` (as CARLA's synchronous mode): one world step per command. A frame is
  published; the command whose header stamp equals that frame's stamp steps the world
  (a Twist has no stamp: the first one after the frame counts); then the next frame.
  Results do not depend on machine speed. A frame unanswered for `sync_resend_s` is
  sent again (a best-effort subscriber may lose one).
- `realtime`: a timer at `rate_hz` steps the world with the latest command.

Metrics go to topics.METRICS as std_msgs/String holding one JSON object (reliable,
transient local: a late subscriber still gets the last one). Keys: `seed`, `mode`,
`step`, `sim_time_s`, `progress_m`, `route_completion`, `lateral_error_m`,
`max_abs_lateral_m`, `interventions`, `off_road_steps`, `frames_published`,
`frames_resent`, `frames_answered` (frames with at least one command for their
stamp), `frames_without_control`, `controls_received`, `duplicate_controls` (a
second command for one frame), `unmatched_controls` (a stamp of no recent frame),
`watchdog_controls`, `done`, `reason` (`running`, `route_complete`, `off_road`,
`max_steps`, `truncated`), and, every `metrics_every` steps and at the end,
`summary` (steering_agent.evaluation.metrics.summarize_episode). Once done, the world stops.
Data for training from the drive (docs/ros_data.md): with each frame, the expert's clean
label for that frame on topics.EXPERT_CONTROL (CarlaEgoVehicleControl with the frame's
stamp; only where carla_msgs is importable) and the signed lateral error on
topics.LATERAL_ERROR (std_msgs/Float32); each intervention of the evaluation on
topics.INTERVENTION (std_msgs/Header: the stamp of the frame whose command led there,
frame_id `recenter` or `end`).

With the `metrics_file` parameter set, each of these objects also replaces that file
(what `steering-agent closed-loop` watches: no DDS participant in the harness).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import OrderedDict, namedtuple

import numpy as np
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32, Header, String

from sim.limits import MOUNT_LIMITS
from steering_agent.common.files import write_text_atomic
from steering_agent.evaluation.episodes import EpisodeRules, EpisodeRun
from steering_agent.interfaces import topics
from steering_agent.interfaces.stamps import ns_to_sec_nanosec, stamp_to_ns
from steering_agent.policy.calibration import CANONICAL_MOUNT
from steering_agent.ros import control_msgs
from steering_agent.ros.params import declare_all, flag, floating, integer, string
from steering_agent.ros.spin import run_node

NODE_NAME = "sim_bridge"
MODES = ("sync", "realtime")
# header.frame_id of the agent's brake commands (steering_agent.ros.agent_node)
WATCHDOG_FRAME_ID = "watchdog"
_RECENT_FRAMES = 64
MOUNT_KEYS = tuple(k for k in MOUNT_LIMITS if k != "fov_deg")  # camera_x_m, ...


PARAMETERS = {
    "seed": (1_000_000, integer("road seed (>= 1000000: evaluation seeds)", 0, 2**31 - 1)),
    "width": (200, integer("camera width (px)", 16, 4096)),
    "height": (66, integer("camera height (px)", 16, 4096)),
    "fov_deg": (90.0, floating("camera horizontal field of view (deg)", 10.0, 170.0)),
    # the camera's mount (sim.limits' ranges); defaults: the training camera's
    **{
        key: (
            float(CANONICAL_MOUNT[key[len("camera_") :]]),
            floating(f"camera mount: {unit}", lo, hi),
        )
        for key, (lo, hi, unit) in MOUNT_LIMITS.items()
        if key != "fov_deg"
    },
    "route_length_m": (1000.0, floating("route length (m)", 10.0, 100_000.0)),
    "mode": ("sync", string("world stepping: one step per command, or a timer at rate_hz", MODES)),
    "rate_hz": (20.0, floating("realtime mode: world steps per second", 1.0, 200.0)),
    "control_type": ("auto", string("commands to take (auto: both)", control_msgs.CONTROL_TYPES)),
    "max_steer_angle_rad": (
        control_msgs.DEFAULT_MAX_STEER_ANGLE_RAD,
        floating("Twist: wheel angle (rad) of steer = 1", 0.1, 1.6),
    ),
    "sync_resend_s": (1.0, floating("sync: re-send an unanswered frame after (s)", 0.05, 60.0)),
    "startup_timeout_s": (
        30.0,
        floating("wait this long (s) for an agent before the first frame", 0.0, 600.0),
    ),
    "recenter_on_intervention": (
        True,
        flag("put the car back on the centre line when it is > 1.0 m off (autonomy metric)"),
    ),
    "max_steps": (0, integer("stop after this many steps (0: at the route's end)", 0, 10**9)),
    "metrics_every": (20, integer("publish the episode summary every N steps", 1, 10**6)),
    "metrics_file": (
        "",
        string("also write each metrics JSON to this file (replaced atomically); empty: no"),
    ),
}


_Control = namedtuple("_Control", "steer throttle brake")  # what to_carla_msg reads


def _time_msg(ns: int) -> Time:
    sec, nanosec = ns_to_sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


class SimBridgeNode(Node):
    """Runs the embedded simulator and speaks CARLA's ROS bridge topics."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.p = p = declare_all(self, PARAMETERS)
        self._make_env(p)
        self._make_publishers()
        self._make_subscriptions(p["control_type"])
        self.counts = dict.fromkeys(
            ("frames_published", "frames_resent", "frames_answered", "controls_received",
             "duplicate_controls", "unmatched_controls", "watchdog_controls",
             "nonfinite_controls"),
            0,
        )  # fmt: skip
        self._answers: OrderedDict[int, int] = OrderedDict()  # frame stamp (ns) -> commands
        self._latest = (0.0, 0.0, 0.0)
        self._waiting = False  # sync: the current frame awaits its command
        self._started = False
        self._t_created = time.monotonic()
        self._frame_wall = 0.0
        self.create_timer(0.05, self._on_housekeeping)
        if p["mode"] == "realtime":
            self.create_timer(1.0 / p["rate_hz"], self._on_realtime_tick)

    def _make_env(self, p: dict) -> None:
        import gymnasium

        import sim  # noqa: F401  (registers the environments)

        self.env = gymnasium.make(
            "SteeringAgent/Drive-v0",
            width=p["width"],
            height=p["height"],
            fov_deg=p["fov_deg"],
            route_length_m=p["route_length_m"],
            **{k: p[k] for k in MOUNT_KEYS},
        )
        rules = EpisodeRules(
            route_length_m=p["route_length_m"],
            recenter=p["recenter_on_intervention"],
            max_steps=p["max_steps"],
        )
        self.episode = EpisodeRun(self.env, p["seed"], rules)
        self.dt_ns = round(self.env.unwrapped.dt * 1e9)

    def _make_publishers(self) -> None:
        reliable = QoSProfile(depth=1)  # as CARLA's bridge: reliable; only the newest matters
        self._pub_image = self.create_publisher(Image, topics.IMAGE, reliable)
        self._pub_info = self.create_publisher(CameraInfo, topics.CAMERA_INFO, reliable)
        self._pub_speed = self.create_publisher(Float32, topics.SPEEDOMETER, reliable)
        self._pub_odom = self.create_publisher(Odometry, topics.ODOMETRY, reliable)
        self._pub_clock = self.create_publisher(Clock, topics.CLOCK, QoSProfile(depth=1))
        latched = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pub_metrics = self.create_publisher(String, topics.METRICS, latched)
        labels = QoSProfile(depth=10)  # reliable, and no label dropped for a newer one
        self._pub_lateral = self.create_publisher(Float32, topics.LATERAL_ERROR, labels)
        self._pub_intervention = self.create_publisher(Header, topics.INTERVENTION, labels)
        self._pub_expert = self._expert_msg = None
        if control_msgs.carla_msgs_available():
            from carla_msgs.msg import CarlaEgoVehicleControl

            self._expert_msg = CarlaEgoVehicleControl()
            self._pub_expert = self.create_publisher(
                CarlaEgoVehicleControl, topics.EXPERT_CONTROL, labels
            )
        else:
            self.get_logger().warning(
                f"carla_msgs is not importable: no expert labels on {topics.EXPERT_CONTROL}"
            )
        self._camera_info = self._camera_info_msg()
        self._cdr = None  # the serialized Image of the current frame size
        self._cdr_pub = None  # its RawPublisher

    def _camera_info_msg(self) -> CameraInfo:
        from steering_agent.data.imageconv import camera_info_fields

        fields = camera_info_fields(self.env.unwrapped.camera_info())
        msg = CameraInfo(width=fields.pop("width"), height=fields.pop("height"))
        for name, value in fields.items():
            setattr(msg, name, value if isinstance(value, str) else value.tolist())
        msg.header.frame_id = f"{topics.ROLE}/rgb_front"
        return msg

    def _make_subscriptions(self, control_type: str) -> None:
        if control_type not in control_msgs.CONTROL_TYPES:
            raise ValueError(
                f"parameter control_type={control_type!r} is not one of: "
                f"{', '.join(control_msgs.CONTROL_TYPES)}"
            )
        qos = QoSProfile(depth=10)
        self.accepts = []
        if control_type in ("auto", "carla") and (
            control_type == "carla" or control_msgs.carla_msgs_available()
        ):
            control_msgs.resolve_control_type("carla")  # clear error where it is missing
            from carla_msgs.msg import CarlaEgoVehicleControl

            self.create_subscription(CarlaEgoVehicleControl, topics.CONTROL, self._on_carla, qos)
            self.accepts.append("carla")
        if control_type in ("auto", "twist"):
            from geometry_msgs.msg import Twist

            self.create_subscription(Twist, topics.TWIST, self._on_twist, qos)
            self.accepts.append("twist")

    # -- frames -------------------------------------------------------------------------

    def _agent_present(self) -> bool:
        listening = self.count_subscribers(topics.IMAGE) > 0
        talking = self.count_publishers(topics.CONTROL) + self.count_publishers(topics.TWIST)
        return listening and talking > 0

    def _publish_frame(self, resend: bool = False) -> None:
        stamp = _time_msg(self.step_idx * self.dt_ns)
        if not resend:
            self._answers[self.step_idx * self.dt_ns] = 0
            while len(self._answers) > _RECENT_FRAMES:
                self._answers.popitem(last=False)
            self.counts["frames_published"] += 1
            self._publish_labels(stamp)
        else:
            self.counts["frames_resent"] += 1
        self._pub_clock.publish(Clock(clock=stamp))
        speed = float(self._info.get("speed_mps", float(np.ravel(self._obs["speed"])[0])))
        self._pub_speed.publish(Float32(data=speed))
        self._pub_odom.publish(self._odometry(stamp, speed))
        self._camera_info.header.stamp = stamp
        self._pub_info.publish(self._camera_info)
        self._frame_publisher(stamp).publish()
        self._frame_wall = time.monotonic()
        self._waiting = self.p["mode"] == "sync"

    def _publish_labels(self, stamp: Time) -> None:
        """The expert's label and the lateral error of the frame about to be published
        (once per frame: a re-sent frame keeps the label already sent for its stamp)."""
        info = self._info
        self._pub_lateral.publish(Float32(data=float(info.get("lateral_error_m", 0.0))))
        expert = info.get("expert_action")
        if self._pub_expert is not None and expert is not None:
            label = _Control(*(float(v) for v in expert))
            self._pub_expert.publish(control_msgs.to_carla_msg(label, stamp, self._expert_msg))

    def _frame_publisher(self, stamp: Time):
        """The observation as a serialized bgra8 Image, ready to publish: the colour
        conversion writes the pixels straight into the one buffer kept per frame size
        (steering_agent.ros.image_cdr), which DDS copies once into its sample
        (steering_agent.ros.serialized_publish). Returns the buffer's RawPublisher."""
        import cv2

        from steering_agent.ros.image_cdr import ImageCdr
        from steering_agent.ros.serialized_publish import RawPublisher

        rgb = self._obs["image"]
        h, w = rgb.shape[:2]
        cdr = self._cdr
        if cdr is None or (cdr.height, cdr.width) != (h, w):
            cdr = self._cdr = ImageCdr(h, w, "bgra8", 4, self._camera_info.header.frame_id)
            self._cdr_pub = RawPublisher(self._pub_image, cdr.buffer)
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA, dst=cdr.pixels)
        cdr.set_stamp(stamp.sec, stamp.nanosec)
        return self._cdr_pub

    def _odometry(self, stamp: Time, speed: float) -> Odometry:
        msg = Odometry()
        msg.header.stamp = stamp
        msg.header.frame_id = "map"
        msg.child_frame_id = topics.ROLE
        x, y, yaw = (float(v) for v in self._info.get("pose", (0.0, 0.0, 0.0)))
        msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
        msg.pose.pose.orientation.z = math.sin(yaw / 2.0)
        msg.pose.pose.orientation.w = math.cos(yaw / 2.0)
        msg.twist.twist.linear.x = speed
        return msg

    # -- commands -----------------------------------------------------------------------

    def _count_answer(self, stamp_ns: int) -> bool:
        """Book a command for the frame stamped `stamp_ns`; True if it is that frame's first."""
        if stamp_ns not in self._answers:
            self.counts["unmatched_controls"] += 1
            return False
        self._answers[stamp_ns] += 1
        if self._answers[stamp_ns] > 1:
            self.counts["duplicate_controls"] += 1
            return False
        self.counts["frames_answered"] += 1
        return True

    def _on_carla(self, msg) -> None:
        self.counts["controls_received"] += 1
        if self._done:
            return
        if msg.header.frame_id == WATCHDOG_FRAME_ID:
            self.counts["watchdog_controls"] += 1
            if self.p["mode"] == "realtime":
                self._latest = (0.0, 0.0, 1.0)
            return
        action = control_msgs.from_carla_msg(msg)
        if not self._finite((msg.steer, msg.throttle, msg.brake), "CarlaEgoVehicleControl"):
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        first = self._count_answer(stamp_ns)
        if self.p["mode"] == "realtime":
            self._latest = action
        elif first and self._waiting and stamp_ns == self.step_idx * self.dt_ns:
            self._advance(action)

    def _on_twist(self, msg) -> None:
        self.counts["controls_received"] += 1
        if self._done or not self._started:
            return
        action = control_msgs.from_twist(msg, self.p["max_steer_angle_rad"])
        if not self._finite((msg.linear.x, msg.angular.z), "Twist"):
            return
        # No stamp: the command answers the newest frame.
        first = self._count_answer(self.step_idx * self.dt_ns)
        if self.p["mode"] == "realtime":
            self._latest = action
        elif first and self._waiting:
            self._advance(action)

    # -- world --------------------------------------------------------------------------

    def _advance(self, action: tuple[float, float, float]) -> None:
        """One world step with `action`, judged by the one episode runner."""
        self._waiting = False
        before = self.episode.interventions
        done = self.episode.step(action)
        if self.episode.interventions > before:  # the frame just answered led there
            kind = "end" if done else "recenter"
            stamp = _time_msg((self.step_idx - 1) * self.dt_ns)
            self._pub_intervention.publish(Header(stamp=stamp, frame_id=kind))
        if done:
            self.get_logger().info(
                f"episode over after {self.step_idx} steps: {self.episode.reason}"
            )
        if done or self.step_idx % self.p["metrics_every"] == 0:
            self.publish_metrics()
        if not done:
            self._publish_frame()

    @property
    def step_idx(self) -> int:
        return self.episode.trace.steps

    @property
    def _done(self) -> bool:
        return self.episode.done

    @property
    def _obs(self) -> dict:
        return self.episode.obs

    @property
    def _info(self) -> dict:
        return self.episode.info

    def _finite(self, values: tuple[float, ...], source: str) -> bool:
        """False (and a rate-limited warning) for a command holding NaN or infinity: it is
        dropped and the car keeps the last good command."""
        if all(math.isfinite(v) for v in values):
            return True
        self.counts["nonfinite_controls"] += 1
        self.get_logger().warning(
            f"dropped a {source} command with a non-finite value {values}; keeping the last "
            "good command",
            throttle_duration_sec=2.0,
        )
        return False

    def _on_housekeeping(self) -> None:
        if self._done:
            return
        now = time.monotonic()
        if not self._started:
            waited = now - self._t_created
            if self._agent_present() or waited > self.p["startup_timeout_s"]:
                self._started = True
                self.publish_metrics()
                self._publish_frame()
            return
        if self._waiting and now - self._frame_wall > self.p["sync_resend_s"]:
            self._publish_frame(resend=True)

    def _on_realtime_tick(self) -> None:
        if self._started and not self._done:
            self._advance(self._latest)

    # -- metrics ------------------------------------------------------------------------

    def metrics(self, with_summary: bool = False) -> dict:
        """The JSON object published on topics.METRICS (keys in the module doc)."""
        c = self.counts
        out = {
            "seed": self.p["seed"],
            "mode": self.p["mode"],
            "accepts": self.accepts,
            "step": self.step_idx,
            "sim_time_s": self.step_idx * self.dt_ns * 1e-9,
            "progress_m": float(self._info.get("progress_m", 0.0)),
            "route_completion": float(self._info.get("route_completion", 0.0)),
            "lateral_error_m": float(self._info.get("lateral_error_m", 0.0)),
            "max_abs_lateral_m": self.episode.max_abs_lateral_m,
            **c,
            "interventions": self.episode.interventions,
            "off_road_steps": self.episode.off_road_steps,
            "frames_without_control": c["frames_published"] - c["frames_answered"],
            "done": self._done,
            "reason": self.episode.reason,
        }
        if with_summary and self.episode.trace.steps:
            out["summary"] = self.episode.summary().as_dict()
        return out

    def finish(self) -> None:
        """At exit: the final metrics (stderr and `metrics_file`), the env closed."""
        final = json.dumps(self.metrics(with_summary=True))
        print(f"[sim_bridge] final metrics: {final}", file=sys.stderr)
        if self.p["metrics_file"]:
            write_text_atomic(self.p["metrics_file"], final)
        self.env.close()

    def publish_metrics(self) -> None:
        data = json.dumps(self.metrics(with_summary=True))
        if self.p["metrics_file"]:  # first: who saw the message finds the file as new
            write_text_atomic(self.p["metrics_file"], data)
        self._pub_metrics.publish(String(data=data))


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run steering_agent sim_bridge`; exit code 0 on Ctrl-C/SIGTERM."""
    return run_node("sim_bridge", SimBridgeNode, SimBridgeNode.finish, args)


if __name__ == "__main__":
    sys.exit(main())
