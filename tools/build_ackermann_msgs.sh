#!/usr/bin/env bash
# Builds the wire-compatible ackermann_msgs interface package (tools/ackermann_msgs) into
# a venv that has the ROS 2 wheels, as tools/build_carla_msgs.sh does for carla_msgs
# (run that one first: it also fixes the wheels' cmake include paths).
# Usage: tools/build_ackermann_msgs.sh VENV
set -euo pipefail
venv=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
export PATH="$venv/bin:$PATH"
CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv" cmake -S "$here/ackermann_msgs" -B "$build" \
  -G Ninja -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF \
  >"$build.log" 2>&1 || { cat "$build.log"; exit 1; }
cmake --build "$build" --target install >>"$build.log" 2>&1 || { cat "$build.log"; exit 1; }
rm -f "$build.log"
AMENT_PREFIX_PATH="$venv" "$py" -c 'from ackermann_msgs.msg import AckermannDriveStamped as M
m = M(); m.drive.steering_angle = 0.5' \
  || { echo "ackermann_msgs built but does not import" >&2; exit 1; }
echo "ackermann_msgs built into $venv"
