#!/usr/bin/env bash
# Sets up .venv for `make test` / `make demo`; idempotent: the dependencies are
# installed once per content of the files that define them (a stamp in the venv),
# the project itself is reinstalled (non-editable, so data_files land) every run.
#
# Where a ROS 2 distribution is sourced (ROS_DISTRO set and rclpy importable), the
# venv sees its packages and no ROS wheels are installed over it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "bootstrap: $python is older than 3.10; set PYTHON=python3.10 (or newer)" >&2
  exit 1
fi

ros_sourced=0
if [ -n "${ROS_DISTRO:-}" ] && "$python" -c 'import rclpy' 2>/dev/null; then
  ros_sourced=1
fi

key=$(cat constraints.txt requirements.txt tools/ros_wheels.txt tools/bootstrap.sh \
      tools/build_carla_msgs.sh tools/carla_msgs/msg/*.msg \
      tools/build_ackermann_msgs.sh tools/ackermann_msgs/msg/*.msg | sha256sum | cut -c1-16)
stamp="$venv/.deps-$key-ros$ros_sourced"

if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing dependencies into $venv (first run takes a few minutes)"
  rm -f "$venv"/.deps-*
  if [ $ros_sourced = 1 ]; then
    "$python" -m venv --system-site-packages "$venv"
  else
    "$python" -m venv "$venv"
  fi
  pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q -c constraints.txt)
  if [ $ros_sourced = 1 ]; then
    "${pip[@]}" -r requirements.txt
  else
    "${pip[@]}" -r requirements.txt -r tools/ros_wheels.txt
    tools/build_carla_msgs.sh "$venv"
    tools/build_ackermann_msgs.sh "$venv"  # after carla_msgs: that one fixes the cmake paths
  fi
  touch "$stamp"
fi

"$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
  --no-build-isolation --force-reinstall . >/dev/null
