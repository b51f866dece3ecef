"""ament_python package `steering_agent` (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "steering_agent"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="CNN+LSTM driving agent for ROS 2 and CARLA, with an embedded simulator",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["steering_agent", "steering_agent.*", "sim", "sim.*"]),
    package_data={"steering_agent": ["msg/*.msg"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/checkpoints", glob("checkpoints/*.pt")),
    ],
    # rclpy and the message packages come from a ROS 2 install or the ROS 2 wheels
    # (see Makefile); they are not listed here so a sourced distribution is never shadowed.
    install_requires=[
        "numpy>=1.24,<3",
        "opencv-python-headless>=4.8,<6",
        "gymnasium>=1.0,<2",
        "rosbags>=0.10,<1",
        "torch>=2.1",
        "tqdm>=4.60",
        "PyYAML>=6",
    ],
    extras_require={
        "carla": ["carla==0.9.16"],
        "report": ["matplotlib>=3.7"],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "test": ["pytest>=7"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "steering-agent = steering_agent.cli:entry",
            "agent = steering_agent.ros.agent_node:main",
            "sim_bridge = steering_agent.ros.sim_bridge:main",
            "recorder = steering_agent.ros.recorder_node:main",
        ],
    },
)
