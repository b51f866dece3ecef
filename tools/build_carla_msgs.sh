#!/usr/bin/env bash
# Builds the wire-compatible carla_msgs interface package (tools/carla_msgs) into a venv
# that has the ROS 2 wheels, so the CarlaEgoVehicleControl path runs for real without
# a ROS install. Usage: tools/build_carla_msgs.sh VENV
set -euo pipefail
venv=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"
pyinc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
npinc=$("$py" -c 'import numpy; print(numpy.get_include())')
# The wheels' cmake exports carry the include paths of the machine they were built on.
{ grep -rlE '/opt/python/cp[0-9]+-cp[0-9]+' "$venv/share" --include='*.cmake' || true; } | while read -r f; do
  sed -i -E "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python[0-9.]+#${pyinc}#g; s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python[0-9.]+/site-packages/numpy/_core/include#${npinc}#g" "$f"
done
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
export PATH="$venv/bin:$PATH"
CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv" cmake -S "$here/carla_msgs" -B "$build" -G Ninja \
  -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$py" -DBUILD_TESTING=OFF >"$build.log" 2>&1 \
  || { cat "$build.log"; exit 1; }
cmake --build "$build" --target install >>"$build.log" 2>&1 || { cat "$build.log"; exit 1; }
rm -f "$build.log"
"$py" -c 'from carla_msgs.msg import CarlaEgoVehicleControl as M; M(steer=0.5)' \
  || { echo "carla_msgs built but does not import" >&2; exit 1; }
echo "carla_msgs built into $venv"
