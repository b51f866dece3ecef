"""The embedded simulator behind CARLA's bridge topics, the agent, and optionally the recorder.

    ros2 launch steering_agent sim.launch.py [seed:=1000000] [mode:=sync|realtime]
        [checkpoint:=PATH] [record:=true record_dir:=runs/rec]

`steering-agent closed-loop` starts the same executables with the same parameter files
as plain processes where `ros2 launch` is not installed (tests/test_launch.py keeps the
two in agreement).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("steering_agent"), "config")
    arg = LaunchConfiguration
    arguments = [
        DeclareLaunchArgument("seed", default_value="1000000", description="road seed"),
        DeclareLaunchArgument("mode", default_value="sync", description="sync | realtime"),
        DeclareLaunchArgument("route_length_m", default_value="1000.0"),
        DeclareLaunchArgument("control_type", default_value="auto", description="auto|carla|twist"),
        DeclareLaunchArgument("checkpoint", default_value="", description="empty: shipped one"),
        DeclareLaunchArgument("record", default_value="false", description="run the recorder"),
        DeclareLaunchArgument("record_dir", default_value="recording"),
    ]
    sim_bridge = Node(
        package="steering_agent",
        executable="sim_bridge",
        name="sim_bridge",
        parameters=[
            os.path.join(config, "sim_bridge.yaml"),
            {
                "seed": arg("seed"),
                "mode": arg("mode"),
                "route_length_m": arg("route_length_m"),
                "control_type": arg("control_type"),
            },
        ],
        output="screen",
    )
    agent = Node(
        package="steering_agent",
        executable="agent",
        name="agent",
        parameters=[
            os.path.join(config, "agent.yaml"),
            {"control_type": arg("control_type"), "checkpoint": arg("checkpoint")},
        ],
        output="screen",
    )
    recorder = Node(
        package="steering_agent",
        executable="recorder",
        name="recorder",
        parameters=[os.path.join(config, "recorder.yaml"), {"output": arg("record_dir")}],
        condition=IfCondition(arg("record")),
        output="screen",
    )
    return LaunchDescription([*arguments, sim_bridge, agent, recorder])
