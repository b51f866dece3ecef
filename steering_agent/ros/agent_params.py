"""The `agent` node's parameters: name -> (default, descriptor), with ranges and choices
(steering_agent.ros.params), and the checks of the ones that can be set while it runs."""

from __future__ import annotations

import math

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from steering_agent.interfaces import topics
from steering_agent.ros import control_msgs
from steering_agent.ros.params import flag, floating, integer, string
from steering_agent.ros.tf_mount import CONVENTIONS

# The parameters that can be set while the node runs (read_only=False).
RUNTIME = ("target_speed_mps", "watchdog_timeout_s", "error_log_period_s")
_RUNTIME_NOTE = (
    "settable while running; a float: pass 5.0 (Humble's rclpy refuses an integer such as 5)"
)


def _runtime(descriptor):
    """A float parameter's descriptor made settable while running."""
    descriptor.read_only = False
    descriptor.additional_constraints = _RUNTIME_NOTE
    return descriptor


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
    "speed_source": (
        "float32",
        string(
            "where the speed comes from: float32 (std_msgs/Float32 m/s on speed_topic, the "
            "bridge's speedometer), odometry (|twist.linear| of nav_msgs/Odometry on "
            "odometry_topic; CARLA's native ROS 2 has no speedometer), none (cruise throttle)",
            ("float32", "odometry", "none"),
        ),
    ),
    "speed_topic": (topics.SPEEDOMETER, string("std_msgs/Float32 speed topic (m/s)")),
    "odometry_topic": (topics.ODOMETRY, string("nav_msgs/Odometry topic (speed_source odometry)")),
    "control_topic": (topics.CONTROL, string("carla_msgs/CarlaEgoVehicleControl topic")),
    "twist_topic": (topics.TWIST, string("geometry_msgs/Twist topic (fallback)")),
    "ackermann_topic": (
        topics.ACKERMANN,
        string(
            "ackermann_msgs/AckermannDriveStamped topic (control_type ackermann; steering_angle "
            "= road-wheel angle in rad, + left; speed = the target speed)"
        ),
    ),
    "control_type": ("auto", string("control message type", control_msgs.CONTROL_TYPES)),
    "manual_override_topic": (
        topics.MANUAL_OVERRIDE,
        string("std_msgs/Bool: while true, publish nothing (the network keeps stepping)"),
    ),
    "target_speed_mps": (
        0.0,
        _runtime(
            floating("cruise speed (m/s) of the speed controller; 0 = the checkpoint's", 0.0, 40.0)
        ),
    ),
    "max_gap_s": (0.5, floating("frame gap (s) after which the LSTM state resets", 0.01, 10.0)),
    "watchdog_timeout_s": (
        0.5,
        _runtime(
            floating(
                "no frame for this long (s): publish full brake until frames return", 0.05, 10.0
            )
        ),
    ),
    "max_steer_angle_rad": (
        control_msgs.DEFAULT_MAX_STEER_ANGLE_RAD,
        floating("Twist only: wheel angle (rad) of steer = 1, as carla_twist_to_control", 0.1, 1.6),
    ),
    "error_log_period_s": (
        2.0,
        _runtime(floating("bad frames: log at most one error per this many seconds", 0.0, 3600.0)),
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
    "camera_mount_source": (
        "params",
        string(
            "the camera mount: params (camera_x_m ... camera_yaw_deg) or tf (the transform "
            "vehicle_frame -> camera_frame on /tf; needs tf2_ros)",
            ("params", "tf"),
        ),
    ),
    "vehicle_frame": ("ego_vehicle", string("tf frame of the car (X forward, Y left, Z up)")),
    "camera_frame": ("ego_vehicle/rgb_front", string("tf frame of the camera")),
    "camera_frame_convention": (
        "auto",
        string(
            "camera_frame's axes: body (X forward, Y left, Z up), optical (x right, y down, "
            "z forward), auto (optical where the name ends in _optical or _optical_frame)",
            CONVENTIONS,
        ),
    ),
    "vehicle_frame_height_m": (
        0.0,
        floating("height of vehicle_frame's origin above the ground (m)", -5.0, 10.0),
    ),
    "lifecycle": (
        False,
        flag("true: a managed (lifecycle) node that waits for configure and activate"),
    ),
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


def ints_to_floats(params: list) -> list:
    """Pre-set callback: an integer given for a float parameter, as a float (`ros2 param
    set agent target_speed_mps 5`); rclpy would refuse it as the wrong type."""
    return [
        Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
        if p.type_ == Parameter.Type.INTEGER and isinstance(PARAMETERS.get(p.name, (0,))[0], float)
        else p
        for p in params
    ]


def float_range(name: str) -> tuple[float, float]:
    r = PARAMETERS[name][1].floating_point_range[0]
    return r.from_value, r.to_value


def refused(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
