"""The agent against CARLA 0.9.16's native ROS 2 interface (server started with --ros2).

ros2 launch steering_agent carla_native.launch.py [ros_name:=rgb_front] [role:=hero]
    [control_type:=carla|ackermann] [lifecycle:=true] [params_file:=...]

The topics are CARLA's native names for the role and the camera's ros_name:
/carla/<role>/<ros_name>/image and camera_info in, /carla/<role>/vehicle_control_cmd
(carla) or /carla/<role>/ackermann_control_cmd (ackermann) out, the speed from
nav_msgs/Odometry on /carla/<role>/odometry (config/carla_native_ros2.yaml, docs/carla.md).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    config = os.path.join(get_package_share_directory("steering_agent"), "config")
    role, ros_name = LaunchConfiguration("role"), LaunchConfiguration("ros_name")
    base = ["/carla/", role]
    topics = {
        "image_topic": [*base, "/", ros_name, "/image"],
        "camera_info_topic": [*base, "/", ros_name, "/camera_info"],
        "control_topic": [*base, "/vehicle_control_cmd"],
        "ackermann_topic": [*base, "/ackermann_control_cmd"],
        "odometry_topic": [*base, "/odometry"],
        "manual_override_topic": [*base, "/vehicle_control_manual_override"],
    }
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(config, "carla_native_ros2.yaml"),
                description="parameter file of the agent node",
            ),
            DeclareLaunchArgument("role", default_value="hero", description="ego role_name"),
            DeclareLaunchArgument(
                "ros_name", default_value="rgb_front", description="the camera's ros_name"
            ),
            DeclareLaunchArgument(
                "control_type", default_value="carla", description="carla | ackermann"
            ),
            DeclareLaunchArgument(
                "lifecycle", default_value="false", description="true: the managed node"
            ),
            Node(
                package="steering_agent",
                executable="agent",
                name="agent",
                parameters=[
                    LaunchConfiguration("params_file"),
                    dict(
                        topics,
                        control_type=LaunchConfiguration("control_type"),
                        lifecycle=ParameterValue(LaunchConfiguration("lifecycle"), value_type=bool),
                    ),
                ],
                output="screen",
                emulate_tty=True,
            ),
        ]
    )
