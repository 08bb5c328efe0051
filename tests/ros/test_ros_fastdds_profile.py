"""The shipped Fast DDS profile loads without XML errors and creates the large SHM segment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

pytestmark = pytest.mark.ros

PROFILE = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_frames.xml"
SEGMENT_BYTES = 32 * 1024 * 1024

# Creates a node, publishes once, and prints the size of the largest Fast DDS shared-memory
# segment that appeared meanwhile (0 when /dev/shm is not used).
CHILD = """
import glob, os, time
import rclpy
from std_msgs.msg import String
def segments():
    return {p: os.path.getsize(p) for p in glob.glob('/dev/shm/fastrtps_*') if '_port' not in p}
before = segments()
rclpy.init()
node = rclpy.create_node('ranksam_profile_check')
node.create_publisher(String, 'ranksam_profile_check', 1).publish(String(data='x'))
time.sleep(0.3)
new = [size for path, size in segments().items() if path not in before]
node.destroy_node()
rclpy.shutdown()
print('largest_segment', max(new, default=0))
"""


def _run_with_profile(profile: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FASTRTPS_DEFAULT_PROFILES_FILE=str(profile))
    return subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60
    )


def test_profile_loads_without_errors():
    done = _run_with_profile(PROFILE)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr  # Fast DDS logs to stdout, rcl to stderr
    assert "Error" not in log and "XMLPARSER" not in log, log
    largest = int(done.stdout.split("largest_segment")[-1])
    if largest:  # Fast DDS maps its segments under /dev/shm on Linux
        assert largest >= SEGMENT_BYTES


def test_a_broken_profile_is_reported(tmp_path):
    """Guards the check above: Fast DDS does log XML errors to stderr."""
    broken = tmp_path / "broken.xml"
    broken.write_text(PROFILE.read_text().replace("segment_size>", "segment_sise>"))
    done = _run_with_profile(broken)
    log = done.stdout + done.stderr
    assert "XMLPARSER" in log and "Error" in log, log
