"""The one carla_msgs message this project uses, field for field as the CARLA ROS bridge
defines it, for the rosbags typestore (recording and reading bags without ROS)."""

from __future__ import annotations

from pathlib import Path

CONTROL_MSGTYPE = "carla_msgs/msg/CarlaEgoVehicleControl"

CARLA_EGO_VEHICLE_CONTROL_MSG = """\
std_msgs/Header header
float32 throttle
float32 steer
float32 brake
bool hand_brake
bool reverse
int32 gear
bool manual_gear_shift
"""


def msg_file() -> Path:
    """The .msg file built into the wire-compatible interface package (tools/carla_msgs)."""
    return Path(__file__).resolve().parents[2] / "tools/carla_msgs/msg/CarlaEgoVehicleControl.msg"


def register_carla_types(typestore) -> None:
    """Add CarlaEgoVehicleControl to a `rosbags` typestore (idempotent)."""
    from rosbags.typesys import get_types_from_msg

    if CONTROL_MSGTYPE in typestore.fielddefs:
        return
    typestore.register(get_types_from_msg(CARLA_EGO_VEHICLE_CONTROL_MSG, CONTROL_MSGTYPE))
