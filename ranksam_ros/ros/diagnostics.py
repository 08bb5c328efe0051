"""``/diagnostics`` for the node: rate, drops, bad inputs, stage times, mean active rank.

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


def camera_status(
    node_name: str, camera: CameraIO, model_id: str, active: bool
) -> DiagnosticStatus:
    """One status per camera; WARN on bad inputs or processing errors, STALE when inactive."""
    c = camera.counters
    stages = {}
    if c.stage_ms:
        for name in c.stage_ms[0]:
            stages[f"{name}_ms"] = float(np.mean([s.get(name, 0.0) for s in c.stage_ms]))
    rank = float(np.mean(c.active_ranks)) if c.active_ranks else float("nan")
    if not active:
        level, message = DiagnosticStatus.STALE, "inactive"
    elif c.errors or c.bad_input:
        level = DiagnosticStatus.WARN
        message = f"{c.bad_input} bad inputs, {c.errors} errors" + (
            f": {c.last_error}" if c.last_error else ""
        )
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
    msg.status = [camera_status(node.get_name(), cam, model_id, active) for cam in cameras]
    return msg
