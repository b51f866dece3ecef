"""The `agent` node's inputs (a mixin of steering_agent.ros.agent_core.AgentCore): camera
frames, the speed, the manual override, camera_info, and the camera's mount (from the
parameters, or from /tf).

The camera subscription keeps only the newest frame (depth 1), so a slow step drops
frames instead of building a queue. Raw images are taken serialized and their pixels
read in place (steering_agent.ros.image_input: one copy per frame, the middleware's).

Speed (`speed_source`): `float32`, a std_msgs/Float32 in m/s on `speed_topic` (the CARLA
ROS bridge's speedometer); `odometry`, the norm of the linear twist of a nav_msgs/Odometry
on `odometry_topic` (CARLA's native ROS 2 interface has no speedometer: any localisation
or a ground-truth odometry publisher gives one); `none`, no speed (the speed controller
then holds a cruise throttle).
"""

from __future__ import annotations

import math
import time

from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Bool, Float32

from steering_agent.agent import DRIVE
from steering_agent.interfaces.stamps import stamp_to_s
from steering_agent.ros.image_input import FrameDecoder, serialized_stamp

MOUNT_KEYS = ("x_m", "y_m", "height_m", "pitch_deg", "roll_deg", "yaw_deg")
TF_POLL_S = 0.5  # how often /tf is asked for the mount until it is there
# Subscription callbacks that take the message info (publication sequence numbers, from
# which the superseded frames are counted) came after Humble; there the count is unknown.
_WITH_MESSAGE_INFO = hasattr(Subscription, "CallbackType")


class AgentFrames:
    """Input handling of the agent node (module doc)."""

    def _init_frames(self, p: dict) -> None:
        self._speed: float | None = None
        self._frames = FrameDecoder(p["max_image_pixels"])
        self._mount = {k: p[f"camera_{k}"] for k in MOUNT_KEYS}
        self._camera_info = None
        self._camera_info_key = None
        self._logged_calibration = False  # not yet logged
        self._tf = self._tf_timer = None
        if p["camera_mount_source"] == "tf":
            from steering_agent.ros.tf_mount import TfMount

            self._tf = TfMount(
                self,
                p["vehicle_frame"],
                p["camera_frame"],
                p["camera_frame_convention"],
                p["vehicle_frame_height_m"],
            )
            self._tf_timer = self.create_timer(TF_POLL_S, self._poll_tf, clock=self._steady)
            self.get_logger().info(
                f"camera mount from /tf ({p['vehicle_frame']} -> {p['camera_frame']}, "
                f"{'optical' if self._tf.optical else 'body'} frame); until it is there, "
                "from the camera_* parameters"
            )

    def _close_frames(self) -> None:
        if self._tf_timer is not None:
            self.destroy_timer(self._tf_timer)
        if self._tf is not None:
            self._tf.close()
        self._tf = self._tf_timer = None

    def _poll_tf(self) -> None:
        try:
            mount = self._tf.poll()
        except Exception as e:  # a lookup error: keep asking
            self._log_error(f"camera mount from /tf: {type(e).__name__}: {e}")
            return
        if mount is None:
            return
        self.destroy_timer(self._tf_timer)  # a mount is static: read once
        self._tf_timer = None
        text = ", ".join(f"{k}={v:.3g}" for k, v in mount.items())
        self.get_logger().info(f"camera mount from /tf: {text}")
        previous, self._mount = self._mount, mount
        if self.policy is None:
            return
        try:
            self.policy.set_camera(self._camera_request())
        except ValueError as e:  # outside the calibration's ranges
            self._mount = previous
            self._log_error(f"camera mount from /tf refused: {e}")

    def _camera_request(self) -> dict:
        """The camera for the policy: the mount, and the intrinsics of the latest usable
        CameraInfo (before one arrived, camera_fov_deg at each frame's size)."""
        cam = dict(self._mount, fov_deg=self._params["camera_fov_deg"])
        info = self._camera_info
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
        previous, self._camera_info = self._camera_info, msg
        try:
            self.policy.set_camera(self._camera_request())
        except ValueError as e:
            self._camera_info = previous
            self._log_error(f"camera_info ignored: {e}")

    def _log_calibration(self) -> None:
        calib = None if self.policy is None else self.policy.calibration
        if calib is not self._logged_calibration:
            self._logged_calibration = calib
            text = calib.describe() if calib is not None else "the canonical camera (no remap)"
            memory = getattr(self.policy, "ground_memory", None)
            if memory is not None:
                text += (
                    f"; {int(memory.mask.sum())} input pixels of ground out of view filled "
                    "from earlier frames (needs the vehicle's speed)"
                )
            self.get_logger().info(f"calibration: {text}")

    def _make_subscriptions(self, p: dict) -> list:
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
        subs = []
        if p["image_transport"] == "compressed":
            topic = p["image_topic"].rstrip("/") + "/compressed"
            on_frame = self._on_compressed_info if _WITH_MESSAGE_INFO else self._on_compressed
            subs.append(self.create_subscription(CompressedImage, topic, on_frame, newest))
        else:
            on_frame = self._on_raw_info if _WITH_MESSAGE_INFO else self._on_raw
            subs.append(
                self.create_subscription(Image, p["image_topic"], on_frame, newest, raw=True)
            )
        if p["speed_source"] == "float32":
            subs.append(self.create_subscription(Float32, p["speed_topic"], self._on_speed, newest))
        elif p["speed_source"] == "odometry":
            from nav_msgs.msg import Odometry

            subs.append(
                self.create_subscription(Odometry, p["odometry_topic"], self._on_odometry, newest)
            )
        # As the CARLA ROS bridge subscribes to it (a latched value): the last state is
        # received also when the agent starts after the publisher. A volatile publisher
        # does not match this subscription.
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        subs.append(
            self.create_subscription(Bool, p["manual_override_topic"], self._on_override, latched)
        )
        info_qos = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability)
        subs.append(
            self.create_subscription(
                CameraInfo, p["camera_info_topic"], self._on_camera_info, info_qos
            )
        )
        return subs

    def _on_speed(self, msg: Float32) -> None:
        speed = float(msg.data)
        self._speed = speed if speed == speed else None  # NaN: not measured

    def _on_odometry(self, msg) -> None:
        v = msg.twist.twist.linear
        speed = math.sqrt(v.x * v.x + v.y * v.y + v.z * v.z)
        self._speed = speed if math.isfinite(speed) else None

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
        if self.state != "active":  # a callback already queued at deactivate
            return
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


def _publication(message_info) -> tuple:
    """(publication sequence number, publisher) of a message's info; (None, None) where
    the middleware gives no sequence numbers."""
    seq = message_info.get("publication_sequence_number")
    if seq is None or seq >= 2**63:  # unsupported: None, or rmw's UINT64_MAX
        return None, None
    gid = message_info.get("publisher_gid")
    return seq, (bytes(gid["data"]) if gid else None)
