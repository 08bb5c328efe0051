"""What ``ranksam bench`` takes: one options record and the check that rejects contradictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ranksam_ros.node_config import RELIABILITIES

MODES = ("looping", "timeline")


def _flag(default: Any, help: str | None = None, **meta: Any) -> Any:
    """A field whose ``ranksam bench`` flag shows ``help`` (see ranksam_ros/cli_options.py)."""
    return field(default=default, metadata={"help": help, **meta})


OFF_CLI = {"cli": False}  # set by callers (demo, scripts/bench_node.py), not by flags


@dataclass
class BenchOptions:
    """Everything ``ranksam bench`` takes (see ``ranksam bench --help``).

    The field metadata makes the command's flags (``ranksam_ros.cli_options``).
    """

    bag: str = field(metadata={"help": "rosbag2 directory, .mcap or .db3 file"})
    topic: str | None = _flag(None, "camera topic (default: the bag's only image topic)")
    label_topic: str | None = _flag(None, "mono8 label topic for --offline mIoU (default: *label*)")
    mode: str = _flag("looping", choices=MODES)
    rates: tuple[float, ...] = _flag((), "comma-separated input rates in Hz")
    search: bool = _flag(False, "search the peak sustained rate")
    search_min: float = _flag(0.5, "lowest rate searched (Hz)")
    search_max: float = _flag(60.0, "highest rate searched (Hz)")
    search_step: float = field(default=0.1, metadata=OFF_CLI)
    probe_duration: float = _flag(3.0, "seconds per search probe")
    duration: float = _flag(5.0, "seconds per measured run")
    runs: int = _flag(5, "runs per rate (best/worst dropped)")
    json: str | None = _flag(None, "write the report here")
    plots: str | None = _flag(None, "folder for latency and RSS plots")
    offline: bool = _flag(False, "pipeline in-process instead of DDS")
    record: str | None = _flag(None, "record the first run per rate (inputs, outputs) to .mcap")
    node_params: str | None = _flag(None, "ROS params file for the node")
    overrides: tuple[str, ...] = _flag(
        (), "node parameter(s)", flag="--set", action="extend", metavar="KEY=VALUE"
    )
    attach: bool = _flag(False, "use an already running node")
    node_pid: int | None = _flag(None, "with --attach: process to sample CPU/RSS of")
    fastdds_profile: bool = _flag(
        True, "keep Fast DDS defaults (small SHM)", flag="--no-fastdds-profile"
    )
    input_reliability: str | None = _flag(None, choices=RELIABILITIES)
    input_topic: str | None = _flag(None, "default /image or /image/compressed")
    output_topic: str = _flag("/ranksam/masks")
    max_frames: int = _flag(100, "frames loaded (0 = all)")
    startup_timeout: float = _flag(180.0, "seconds for the node")
    warmup_s: float = field(default=2.0, metadata=OFF_CLI)
    sample_every: int = field(default=1, metadata=OFF_CLI)
    node_log: str | None = field(default=None, metadata=OFF_CLI)
    quiet: bool = field(default=False, metadata=OFF_CLI)
    extra_metadata: dict = field(default_factory=dict, metadata=OFF_CLI)


def check_options(opts: BenchOptions) -> None:
    """Reject contradictory options before anything starts (ValueError)."""
    if opts.mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}")
    if opts.mode == "timeline" and (opts.rates or opts.search):
        raise ValueError("--rates and --search apply to --mode looping (timeline keeps bag timing)")
    if any(not r > 0 for r in opts.rates):
        raise ValueError(f"rates must be > 0, got {list(opts.rates)}")
    if opts.runs < 1 or opts.duration <= 0:
        raise ValueError("--runs must be >= 1 and --duration > 0")
    if opts.attach and (opts.node_params or opts.overrides):
        raise ValueError("--node-params/--set configure a node the benchmark starts, not --attach")
    if opts.offline and (opts.attach or opts.record):
        raise ValueError("--offline runs no node: it cannot --attach or --record")
