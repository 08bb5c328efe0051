"""Benchmark reports: ros2_benchmark-style JSON, latency plots and a printed summary.

JSON layout (R2B's, extended): the headline rate's metrics at the top level, one
``"<rate>fps"`` sub-dict per measured rate (with its per-run values), ``custom`` (cold start,
model load, offline reference, recording) and ``metadata`` (bag, hash, node parameters, host).
"""

from __future__ import annotations

import datetime
import math
import platform
import socket
from pathlib import Path

import numpy as np

from ranksam_ros.reporting import machine_description, save_figure, write_json


def rate_key(rate: float) -> str:
    """R2B's sub-dict name for a rate: ``"12.5fps"``."""
    return f"{rate:g}fps"


def clean(value):
    """JSON-safe copy: NaN/inf become None, numpy scalars plain numbers, rounding to 4 places."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    return value


def host_metadata() -> dict:
    """Host name, machine description, platform and the current time."""
    return {
        "hostname": socket.gethostname(),
        "machine": machine_description(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "datetime": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def build_report(
    per_rate: dict[float, dict],
    headline: float,
    custom: dict,
    metadata: dict,
) -> dict:
    """Assemble the JSON document.

    Args:
        per_rate: Rate -> aggregated metrics (with ``runs``) of every measured rate.
        headline: The rate whose metrics go to the top level (search peak or first rate).
        custom: Extra results (cold start, offline, recording, search ...).
        metadata: Bag, node and run settings.
    """
    report: dict = {k: v for k, v in per_rate[headline].items() if k != "runs"}
    for rate, metrics in per_rate.items():
        report[rate_key(rate)] = metrics
    report["custom"] = custom
    report["metadata"] = {**metadata, **host_metadata(), "headline_rate_hz": headline}
    return clean(report)


def write_report(path: str | Path, report: dict) -> Path:
    """Write the report as pretty JSON (parents created)."""
    write_json(path, report)
    return Path(path)


def plot_latencies(latencies: dict[float, list[list[tuple[float, float]]]], out: str | Path):
    """Per rate, a latency histogram and a latency time series (one line per run).

    Args:
        latencies: Rate -> runs -> ``(send time s since the run started, latency ms)``.
        out: Folder for ``latency_hist_<rate>.png`` and ``latency_series_<rate>.png``.

    Returns:
        The written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rate, runs in latencies.items():
        values = [lat for run in runs for _, lat in run]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(values, bins=min(50, max(5, len(values) // 3)), color="#3a76af")
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            if values:
                ax.axvline(np.percentile(values, q), color="k", ls=style, lw=1, label=f"p{q}")
        ax.set(xlabel="end-to-end latency (ms)", ylabel="frames", title=f"{rate:g} Hz input")
        if values:
            ax.legend()
        written.append(save_figure(fig, out / f"latency_hist_{rate:g}hz.png", dpi=100))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for number, run in enumerate(runs, start=1):
            if run:
                t, lat = zip(*run)
                ax.plot(t, lat, ".-", ms=3, lw=0.8, label=f"run {number}")
        ax.set(xlabel="send time in run (s)", ylabel="latency (ms)", title=f"{rate:g} Hz input")
        if any(runs):
            ax.legend(fontsize="small")
        written.append(save_figure(fig, out / f"latency_series_{rate:g}hz.png", dpi=100))
    return written


def plot_rss(per_rate: dict[float, dict], out: str | Path, prefix: str = "rss") -> list[Path]:
    """Per rate, the node's RSS over each run, with the late-half slope in the legend.

    Args:
        per_rate: Rate -> aggregated metrics whose ``runs`` carry ``rss_series_mb``
            (``[[seconds since the run started, MB], ...]``); rates without it are skipped.
        out: Folder for ``<prefix>_<rate>hz.png``.
        prefix: File name prefix.

    Returns:
        The written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    written = []
    for rate, metrics in per_rate.items():
        runs = [r for r in metrics.get("runs", []) if r.get("rss_series_mb")]
        if not runs:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for number, run in enumerate(runs, start=1):
            t, mb = np.asarray(run["rss_series_mb"], np.float64).T
            slope = run.get("NODE_RSS_SLOPE_LAST_HALF_MB_PER_H")
            label = f"run {number}"
            if slope is not None:
                label += f", last half {slope:+.1f} MB/h"
            ax.plot(t / 60.0, mb, "-", lw=1, label=label)
        ax.set(xlabel="time in run (min)", ylabel="node RSS (MB)", title=f"{rate:g} Hz input")
        ax.legend(fontsize="small")
        written.append(save_figure(fig, out / f"{prefix}_{rate:g}hz.png", dpi=100))
    return written


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_summary(report: dict) -> str:
    """A short human-readable table of the measured rates."""
    lines = [
        f"{'rate':>8} {'fps in':>7} {'fps out':>8} {'sent':>5} {'missed':>6} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'cpu %':>6} {'rss MB':>7}"
    ]
    for key, value in report.items():
        if not key.endswith("fps") or not isinstance(value, dict):
            continue
        lines.append(
            f"{key:>8} {_ms(value.get('SENT_RATE_HZ')):>7} "
            f"{_ms(value.get('RECEIVED_RATE_HZ')):>8} {value.get('NUM_FRAMES_SENT', 0):>5.0f} "
            f"{value.get('NUM_MISSED_FRAMES', 0):>6.0f} {_ms(value.get('LATENCY_P50')):>7} "
            f"{_ms(value.get('LATENCY_P95')):>7} {_ms(value.get('LATENCY_P99')):>7} "
            f"{_ms(value.get('NODE_CPU_MEAN_PERCENT')):>6} {_ms(value.get('NODE_RSS_MAX_MB')):>7}"
        )
    custom = report.get("custom", {})
    search = custom.get("search")
    if search:
        flag = (
            "  (AT SEARCH BOUND: widen --search-min/--search-max)"
            if search["at_search_bound"]
            else ""
        )
        lines.append(f"peak sustained rate: {search['peak_hz']:.2f} Hz{flag}")
    for key, label in (("cold_start_s", "cold start"), ("model_load_s", "model load")):
        if custom.get(key) is not None:
            lines.append(f"{label}: {custom[key]:.2f} s")
    offline = custom.get("offline")
    if offline:
        text = f"offline model time: median {_ms(offline.get('MODEL_TIME_MEDIAN'))} ms"
        text += f", p95 {_ms(offline.get('MODEL_TIME_P95'))} ms"
        if offline.get("semantic_miou") is not None:
            text += f"; semantic mIoU {offline['semantic_miou']:.3f}"
        lines.append(text)
    return "\n".join(lines)
