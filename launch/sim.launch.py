"""The embedded simulator behind CARLA's bridge topics, the agent, and optionally the recorder.

    ros2 launch steering_agent sim.launch.py [seed:=1000000] [mode:=sync|realtime]
        [checkpoint:=PATH] [record:=true record_dir:=runs/rec] [local_dds:=true|false]

All nodes run on one host, so by default (local_dds:=true) Fast DDS gets the project's
one-host profile config/fastdds_local.xml (shared memory with an 8 MB segment, UDPv4, no
TCP), as `steering-agent closed-loop` does: with the default transports 800x600 camera
frames lost fragments on loopback. An environment that already chooses transports or a
profile file (FASTDDS_BUILTIN_TRANSPORTS, FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE) wins.

`steering-agent closed-loop` starts the same executables with the same parameter files
as plain processes where `ros2 launch` is not installed (tests/test_launch.py keeps the
two in agreement).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from steering_agent.ros.closed_loop import SIM_AGENT_CAMERA
from steering_agent.ros.dds import local_transport_env


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
        DeclareLaunchArgument(
            "local_dds", default_value="true", description="one-host Fast DDS profile"
        ),
    ]
    # the variables closed-loop would add to this environment (none if it chooses already)
    env = dict(os.environ)
    local_dds = [
        SetEnvironmentVariable(name, value, condition=IfCondition(arg("local_dds")))
        for name, value in local_transport_env(env).items()
        if env.get(name) != value
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
            SIM_AGENT_CAMERA,  # the embedded simulator's camera and car
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
    return LaunchDescription([*arguments, *local_dds, sim_bridge, agent, recorder])
