"""``/diagnostics`` for the node: rate, drops, bad inputs, stage times, mean active rank.

With depth on, each camera also reports its depth input: images received and refused, bad
CameraInfo, frames with and without 3D and the age of the newest depth image. Refused depth
input or a depth stream silent for ``depth.timeout_s`` turns the status to WARN (colour output
goes on without 3D).

The mean active adapter rank is a camera-health signal: gated adapters open more rank-1
components on degraded frames (fog, low light, noise), so a rising rank flags a worsening view.
"""

from __future__ import annotations

import math

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ranksam_ros.ros.camera import CameraIO


def _value(key: str, value: object) -> KeyValue:
    if isinstance(value, float):
        value = "nan" if math.isnan(value) else f"{value:.3f}"
    return KeyValue(key=key, value=str(value))


def _depth_values(camera: CameraIO) -> list[KeyValue]:
    if camera.depth is None:
        return []
    d = camera.depth.counters
    return [
        _value("depth_topic", camera.depth.depth_topic),
        _value("depth_received", d.received),
        _value("depth_bad_input", d.bad_depth),
        _value("camera_info_received", d.info_received),
        _value("camera_info_bad", d.bad_info),
        _value("frames_with_depth", d.with_depth),
        _value("frames_without_depth", d.without_depth),
        _value("depth_age_s", d.age_s()),
        _value("depth_last_error", d.last_error),
    ]


def _depth_problem(camera: CameraIO, timeout_s: float) -> str:
    """Why the depth side needs attention ("" when it is fine or off)."""
    if camera.depth is None:
        return ""
    d = camera.depth.counters
    problems = []
    if camera.counters.received and d.age_s() > timeout_s:
        problems.append(f"no depth image for {d.age_s():.1f} s: frames go out without 3D")
    if d.bad_depth or d.bad_info:
        problems.append(
            f"{d.bad_depth} bad depth images, {d.bad_info} bad camera_info: {d.last_error}"
        )
    return "; ".join(problems)


def camera_status(
    node_name: str, camera: CameraIO, model_id: str, active: bool, timeout_s: float = 2.0
) -> DiagnosticStatus:
    """One status per camera.

    WARN on bad inputs, processing errors, refused depth input or a silent depth stream
    (``timeout_s``); STALE when inactive.
    """
    c = camera.counters
    stages = {}
    if c.stage_ms:
        for name in c.stage_ms[0]:
            stages[f"{name}_ms"] = float(np.mean([s.get(name, 0.0) for s in c.stage_ms]))
    rank = float(np.mean(c.active_ranks)) if c.active_ranks else float("nan")
    depth_problem = _depth_problem(camera, timeout_s)
    if not active:
        level, message = DiagnosticStatus.STALE, "inactive"
    elif c.errors or c.bad_input:
        level = DiagnosticStatus.WARN
        message = f"{c.bad_input} bad inputs, {c.errors} errors" + (
            f": {c.last_error}" if c.last_error else ""
        )
    elif depth_problem:
        level, message = DiagnosticStatus.WARN, depth_problem
    else:
        level, message = DiagnosticStatus.OK, f"{c.rate_hz():.2f} Hz"
    values = [
        _value("input_topic", camera.input_topic),
        _value("model_id", model_id),
        _value("received", c.received),
        _value("processed", c.processed),
        _value("dropped", c.dropped),
        _value("bad_input", c.bad_input),
        _value("stale", c.stale),
        _value("errors", c.errors),
        _value("rate_hz", c.rate_hz()),
        _value("mean_active_rank", rank),
        _value("tracks_live", c.tracks_live),
        _value("tracker_resets", c.tracker_resets),
        *_depth_values(camera),
        *(_value(k, v) for k, v in stages.items()),
    ]
    name = f"{node_name}: {camera.name or 'camera'}"
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=model_id, values=values
    )


def diagnostics_message(
    node, cameras: list[CameraIO], model_id: str, active: bool
) -> DiagnosticArray:
    """The array published on ``/diagnostics``."""
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    timeout = node.cfg.depth.timeout_s if getattr(node, "cfg", None) else 2.0
    msg.status = [camera_status(node.get_name(), cam, model_id, active, timeout) for cam in cameras]
    return msg
