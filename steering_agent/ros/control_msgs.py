"""Vehicle control messages: which type to speak, and Control <-> message conversion.

Three types carry a command (docs/interfaces.md):

- `carla_msgs/CarlaEgoVehicleControl` (steer, throttle, brake as CARLA means them), used
  wherever `carla_msgs` is importable;
- `geometry_msgs/Twist`, the fallback, in the convention of CARLA's
  `carla_twist_to_control` node: `linear.x = throttle * MAX_LON_ACCELERATION` (that node
  divides by 10), `angular.z = -steer * max_steer_angle_rad` (ROS yaw is left-positive,
  CARLA steer is right-positive; that node divides by the vehicle's maximum wheel angle),
  and braking is the all-zero Twist (that node turns it into full brake, zero throttle);
- `ackermann_msgs/AckermannDriveStamped` (`control_type: ackermann`; what CARLA's native
  `/carla/<role>/ackermann_control_cmd` and the bridge's carla_ackermann_control take):
  the vehicle-independent output, `drive.steering_angle` the road-wheel angle in
  radians with ackermann_msgs's sign (+ = left, so `-steer * max_steer_deg`: CARLA's
  steer is + = right), `drive.speed` the target speed (0 while braking), acceleration,
  jerk and steering-angle velocity 0 ("as fast as possible").

The ROS message modules are imported on first use, so this module imports without ROS.
"""

from __future__ import annotations

import math
from typing import Any

CONTROL_TYPES = ("auto", "carla", "twist", "ackermann")
# carla_twist_to_control's constant: throttle = linear.x / MAX_LON_ACCELERATION.
MAX_LON_ACCELERATION = 10.0
# CARLA's default vehicles turn the front wheels at most 70 degrees.
DEFAULT_MAX_STEER_ANGLE_RAD = math.radians(70.0)


def carla_msgs_available() -> bool:
    """Whether `carla_msgs.msg.CarlaEgoVehicleControl` can be imported here."""
    try:
        from carla_msgs.msg import CarlaEgoVehicleControl  # noqa: F401
    except ImportError:
        return False
    return True


def ackermann_msgs_available() -> bool:
    """Whether `ackermann_msgs.msg.AckermannDriveStamped` can be imported here."""
    try:
        from ackermann_msgs.msg import AckermannDriveStamped  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_control_type(requested: str) -> str:
    """Map `auto|carla|twist|ackermann` to the type actually used (`auto`: `carla` where
    carla_msgs imports, else `twist`).

    Raises:
        ValueError: `requested` is not one of CONTROL_TYPES, or is `carla` / `ackermann`
            where its message package cannot be imported.
    """
    if requested not in CONTROL_TYPES:
        raise ValueError(
            f"control_type {requested!r} is not one of {', '.join(CONTROL_TYPES)}; "
            "pick one of those"
        )
    if requested == "auto":
        return "carla" if carla_msgs_available() else "twist"
    if requested == "carla" and not carla_msgs_available():
        raise ValueError(
            "control_type 'carla' needs the carla_msgs package (not importable here); "
            "build it with tools/build_carla_msgs.sh or use control_type 'twist'"
        )
    if requested == "ackermann" and not ackermann_msgs_available():
        raise ValueError(
            "control_type 'ackermann' needs the ackermann_msgs package (not importable "
            "here); build it with tools/build_ackermann_msgs.sh, install "
            "ros-$ROS_DISTRO-ackermann-msgs, or use control_type 'carla'"
        )
    return requested


def _clip(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def to_carla_msg(control: Any, stamp: Any = None, msg: Any = None) -> Any:
    """Fill a CarlaEgoVehicleControl from a Control (anything with steer/throttle/brake).

    Args:
        control: the command; values are clipped to CARLA's ranges.
        stamp: a `builtin_interfaces/Time` for the header (the camera frame's stamp).
        msg: a message to fill in place (saves an allocation per frame); new if None.
    """
    if msg is None:
        from carla_msgs.msg import CarlaEgoVehicleControl

        msg = CarlaEgoVehicleControl()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.steer = _clip(float(control.steer), -1.0, 1.0)
    msg.throttle = _clip(float(control.throttle), 0.0, 1.0)
    msg.brake = _clip(float(control.brake), 0.0, 1.0)
    msg.hand_brake = False
    msg.reverse = False
    msg.manual_gear_shift = False
    msg.gear = 1
    return msg


def to_twist(
    control: Any, max_steer_angle_rad: float = DEFAULT_MAX_STEER_ANGLE_RAD, msg: Any = None
) -> Any:
    """Fill a geometry_msgs/Twist from a Control, in carla_twist_to_control's convention.

    Any brake gives the all-zero Twist (full brake there); otherwise
    `linear.x = throttle * 10` and `angular.z = -steer * max_steer_angle_rad`.
    """
    if msg is None:
        from geometry_msgs.msg import Twist

        msg = Twist()
    msg.linear.y = msg.linear.z = msg.angular.x = msg.angular.y = 0.0
    if float(control.brake) > 0.0:
        msg.linear.x = msg.angular.z = 0.0
        return msg
    msg.linear.x = _clip(float(control.throttle), 0.0, 1.0) * MAX_LON_ACCELERATION
    msg.angular.z = -_clip(float(control.steer), -1.0, 1.0) * max_steer_angle_rad
    return msg


def steering_angle_rad(steer: float, max_steer_deg: float) -> float:
    """The road-wheel angle (rad, + = left as ROS and ackermann_msgs have it) of CARLA's
    normalised steer (+ = right) on a car whose steer 1 turns the wheels `max_steer_deg`."""
    return -_clip(float(steer), -1.0, 1.0) * math.radians(max_steer_deg)


def to_ackermann(
    control: Any, max_steer_deg: float, speed_mps: float, stamp: Any = None, msg: Any = None
) -> Any:
    """Fill an AckermannDriveStamped from a Control (module doc for the convention).

    Args:
        control: the command (steer in the vehicle's units, as the policy gives it).
        max_steer_deg: the vehicle's road-wheel angle at steer 1.
        speed_mps: the speed to ask for while driving (the target speed); any brake asks
            for 0 m/s (the steering angle is kept: stopping straight on is not implied).
        stamp: a `builtin_interfaces/Time` for the header (the camera frame's stamp).
        msg: a message to fill in place; new if None.
    """
    if msg is None:
        from ackermann_msgs.msg import AckermannDriveStamped

        msg = AckermannDriveStamped()
    if stamp is not None:
        msg.header.stamp = stamp
    d = msg.drive
    d.steering_angle = steering_angle_rad(control.steer, max_steer_deg)
    d.steering_angle_velocity = d.acceleration = d.jerk = 0.0
    d.speed = 0.0 if float(control.brake) > 0.0 else max(float(speed_mps), 0.0)
    return msg


def from_ackermann(msg: Any, max_steer_deg: float) -> tuple[float, float]:
    """(steer in CARLA's units, speed m/s) of an AckermannDrive(Stamped)."""
    d = getattr(msg, "drive", msg)
    steer = -float(d.steering_angle) / math.radians(max_steer_deg)
    return _clip(steer, -1.0, 1.0), float(d.speed)


def from_carla_msg(msg: Any) -> tuple[float, float, float]:
    """(steer, throttle, brake) of a CarlaEgoVehicleControl, clipped to CARLA's ranges."""
    return (
        _clip(float(msg.steer), -1.0, 1.0),
        _clip(float(msg.throttle), 0.0, 1.0),
        _clip(float(msg.brake), 0.0, 1.0),
    )


def from_twist(
    msg: Any, max_steer_angle_rad: float = DEFAULT_MAX_STEER_ANGLE_RAD
) -> tuple[float, float, float]:
    """(steer, throttle, brake) of a Twist, as carla_twist_to_control reads it.

    The all-zero Twist is full brake; a negative linear.x (reverse) is read as coasting,
    since the simulators here do not drive backwards.
    """
    lin, ang = msg.linear, msg.angular
    if not any((lin.x, lin.y, lin.z, ang.x, ang.y, ang.z)):
        return 0.0, 0.0, 1.0
    throttle = _clip(lin.x / MAX_LON_ACCELERATION, 0.0, 1.0)
    steer = _clip(-ang.z / max_steer_angle_rad, -1.0, 1.0)
    return steer, throttle, 0.0
