"""ROS names: the CARLA ROS bridge's names for role `ego_vehicle` (docs/carla.md)."""

ROLE = "ego_vehicle"
IMAGE = f"/carla/{ROLE}/rgb_front/image"
CAMERA_INFO = f"/carla/{ROLE}/rgb_front/camera_info"
SPEEDOMETER = f"/carla/{ROLE}/speedometer"
ODOMETRY = f"/carla/{ROLE}/odometry"
CONTROL = f"/carla/{ROLE}/vehicle_control_cmd"
TWIST = f"/carla/{ROLE}/twist"
# std_msgs/Bool, latched: true while a human drives (carla_manual_control publishes it)
MANUAL_OVERRIDE = f"/carla/{ROLE}/vehicle_control_manual_override"
CLOCK = "/clock"
# Ours, not the bridge's: the expert's clean label in recordings, and closed-loop metrics.
EXPERT_CONTROL = "/steering_agent/expert_control_cmd"
METRICS = "/steering_agent/metrics"

CONTROL_TYPE = "carla_msgs/msg/CarlaEgoVehicleControl"
