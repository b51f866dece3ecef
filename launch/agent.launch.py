"""The agent alone, to drop into a running CARLA + ROS bridge setup.

ros2 launch steering_agent agent.launch.py [params_file:=my_agent.yaml]
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("steering_agent"), "config")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(config, "agent.yaml"),
                description="parameter file of the agent node",
            ),
            Node(
                package="steering_agent",
                executable="agent",
                name="agent",
                parameters=[LaunchConfiguration("params_file")],
                output="screen",
                emulate_tty=True,
            ),
        ]
    )
