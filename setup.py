"""ament_python package `steering_agent` (also installable with plain pip).

The version is package.xml's, read from there (ROS tooling reads it there too). The
extras are those of `steering_agent.common.extras`, which says what each one adds.
"""

import shutil
import xml.etree.ElementTree as ET
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PACKAGE = "steering_agent"
HERE = Path(__file__).resolve().parent
TOP_LEVEL = ("steering_agent", "sim")


def package_xml_version() -> str:
    """`<version>` of package.xml, the project's one version number."""
    version = ET.parse(HERE / "package.xml").getroot().findtext("version")
    if not version or not version.strip():
        raise SystemExit("package.xml has no <version>")
    return version.strip()


class FreshBuildPy(build_py):
    """build_py that empties its copy of the packages first.

    setuptools reuses build/lib between builds, so a module since deleted or moved in the
    source tree would still be copied into the wheel (and installed) without this.
    """

    def run(self):
        build_lib = Path(self.build_lib).resolve()
        if not getattr(self, "editable_mode", False) and build_lib != HERE:
            for top in TOP_LEVEL:
                shutil.rmtree(build_lib / top, ignore_errors=True)
        super().run()


setup(
    name=PACKAGE,
    version=package_xml_version(),
    description="CNN+LSTM driving agent for ROS 2 and CARLA, with an embedded simulator",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[f"{top}{sub}" for top in TOP_LEVEL for sub in ("", ".*")]),
    cmdclass={"build_py": FreshBuildPy},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/checkpoints", glob("checkpoints/*.pt")),
    ],
    # rclpy and the message packages come from a ROS 2 install or the ROS 2 wheels
    # (see Makefile); they are not listed here so a sourced distribution is never shadowed.
    # Lower bounds are the oldest releases the code is known to work with:
    install_requires=[
        "numpy>=1.24,<3",
        "opencv-python-headless>=4.8,<6",
        "gymnasium>=1.0,<2",
        # 0.11: its Reader opens a bare .mcap (no metadata.yaml), as loading a killed
        # recorder's bag needs (0.10.10-11 cannot; 0.10.9 drops frames, older lack MCAP).
        "rosbags>=0.11,<1",
        "ruamel.yaml>=0.17",  # bagio writes metadata.yaml with it (rosbags needs it too)
        # 2.5: the first torch.onnx.export with the `dynamo` keyword (onnx_export passes
        # dynamo=False; 2.4 raises TypeError on it).
        "torch>=2.5",
        "tqdm>=4.60",
    ],
    extras_require={
        "plots": ["matplotlib>=3.7"],
        # H.264 MP4 report videos through the ffmpeg binary the wheel ships (without it:
        # VP8 WebM through OpenCV, slower; steering_agent/evaluation/video.py)
        "video": ["imageio-ffmpeg>=0.4.9"],
        "tensorboard": ["tensorboard>=1.15"],  # torch.utils.tensorboard's own floor
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "carla": ["carla==0.9.16"],  # the client must match the CARLA server's version
        "ray": ["ray>=2.60"],  # the release tested (2.60.0); older ones not checked
        # the Foxglove live view of `drive --live` / `closed-loop --live` (0.30.3 tested;
        # the SDK's API changed between 0.x releases)
        "live": ["foxglove-sdk>=0.30,<0.31"],
        "test": ["pytest>=7", "PyYAML>=6"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "steering-agent = steering_agent.cli:entry",
            "agent = steering_agent.ros.agent_node:main",
            "sim_bridge = steering_agent.ros.sim_bridge:main",
            "recorder = steering_agent.ros.recorder_node:main",
        ],
    },
)
