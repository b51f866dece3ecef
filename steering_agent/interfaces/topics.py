"""ROS names: the CARLA ROS bridge's names for role `ego_vehicle`, and CARLA 0.9.16's
native ROS 2 names for role `hero` (docs/carla.md)."""

ROLE = "ego_vehicle"
IMAGE = f"/carla/{ROLE}/rgb_front/image"
CAMERA_INFO = f"/carla/{ROLE}/rgb_front/camera_info"
SPEEDOMETER = f"/carla/{ROLE}/speedometer"
ODOMETRY = f"/carla/{ROLE}/odometry"
CONTROL = f"/carla/{ROLE}/vehicle_control_cmd"
TWIST = f"/carla/{ROLE}/twist"
# ackermann_msgs/AckermannDrive(Stamped): what the bridge's carla_ackermann_control reads
ACKERMANN = f"/carla/{ROLE}/ackermann_cmd"
# std_msgs/Bool, latched: true while a human drives (carla_manual_control publishes it)
MANUAL_OVERRIDE = f"/carla/{ROLE}/vehicle_control_manual_override"
CLOCK = "/clock"
# Ours, not the bridge's: the expert's clean label in recordings, and closed-loop metrics.
EXPERT_CONTROL = "/steering_agent/expert_control_cmd"
METRICS = "/steering_agent/metrics"
# std_msgs/Header, one per intervention of the evaluation (the car > 1 m off the lane
# centre or off the road): stamp = the frame whose command led there, frame_id = what
# followed ("recenter": put back on the centre line; "end": the episode ended there).
INTERVENTION = "/steering_agent/intervention"
# std_msgs/Float32 per frame: the car's signed distance (m) from the lane centre (as the
# speedometer, no header: it belongs to the frame published with it).
LATERAL_ERROR = "/steering_agent/lateral_error"

CONTROL_TYPE = "carla_msgs/msg/CarlaEgoVehicleControl"
ACKERMANN_TYPE = "ackermann_msgs/msg/AckermannDriveStamped"

# CARLA 0.9.16's native ROS 2 interface (server started with --ros2):
# /carla/<vehicle role_name>/<sensor ros_name>/...; role `hero` (other roles are
# reported to give /carla//<sensor>/..., carla#9278).
NATIVE_ROLE = "hero"


def native(sensor_ros_name: str = "rgb_front", role: str = NATIVE_ROLE) -> dict[str, str]:
    """The native interface's topic names for a role and a camera's ros_name."""
    base = f"/carla/{role}"
    return {
        "image": f"{base}/{sensor_ros_name}/image",
        "camera_info": f"{base}/{sensor_ros_name}/camera_info",
        "control": f"{base}/vehicle_control_cmd",
        "ackermann": f"{base}/ackermann_control_cmd",
        "odometry": f"{base}/odometry",
    }
