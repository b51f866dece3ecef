"""ackermann_msgs/AckermannDriveStamped, field for field as the ackermann_msgs package
defines it, for the rosbags typestore (recording and reading bags without ROS); the same
definitions are built into the wire-compatible interface package tools/ackermann_msgs.

Conventions (ackermann_msgs): `drive.steering_angle` is the road-wheel angle of a virtual
wheel at the middle of the front axle in radians, positive to the LEFT (CARLA's `steer`
is positive to the right); `speed` in m/s; an acceleration, jerk or steering-angle
velocity of 0 asks for the change as fast as possible."""

from __future__ import annotations

from pathlib import Path

DRIVE_MSGTYPE = "ackermann_msgs/msg/AckermannDrive"
STAMPED_MSGTYPE = "ackermann_msgs/msg/AckermannDriveStamped"

ACKERMANN_DRIVE_MSG = """\
float32 steering_angle
float32 steering_angle_velocity
float32 speed
float32 acceleration
float32 jerk
"""

ACKERMANN_DRIVE_STAMPED_MSG = """\
std_msgs/Header header
ackermann_msgs/AckermannDrive drive
"""


def msg_dir() -> Path:
    """The .msg files of the wire-compatible interface package (tools/ackermann_msgs)."""
    return Path(__file__).resolve().parents[2] / "tools/ackermann_msgs/msg"


def register_ackermann_types(typestore) -> None:
    """Add AckermannDrive and AckermannDriveStamped to a `rosbags` typestore (idempotent)."""
    from rosbags.typesys import get_types_from_msg

    if STAMPED_MSGTYPE in typestore.fielddefs:
        return
    types = get_types_from_msg(ACKERMANN_DRIVE_MSG, DRIVE_MSGTYPE)
    types.update(get_types_from_msg(ACKERMANN_DRIVE_STAMPED_MSG, STAMPED_MSGTYPE))
    typestore.register(types)
