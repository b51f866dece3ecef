"""The agent alone, to drop into a running CARLA + ROS bridge setup.

ros2 launch steering_agent agent.launch.py [params_file:=my_agent.yaml] [lifecycle:=true]

lifecycle:=true starts the managed node (steering_agent.ros.lifecycle): it waits for a
lifecycle manager (or `ros2 lifecycle set /agent configure`, then `activate`).
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
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(config, "agent.yaml"),
                description="parameter file of the agent node",
            ),
            DeclareLaunchArgument(
                "lifecycle",
                default_value="false",
                description="true: the managed (lifecycle) agent node",
            ),
            Node(
                package="steering_agent",
                executable="agent",
                name="agent",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "lifecycle": ParameterValue(
                            LaunchConfiguration("lifecycle"), value_type=bool
                        )
                    },
                ],
                output="screen",
                emulate_tty=True,
            ),
        ]
    )
