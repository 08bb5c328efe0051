"""What ``ranksam bench`` takes: one options record and the check that rejects contradictions."""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("looping", "timeline")


@dataclass
class BenchOptions:
    """Everything ``ranksam bench`` takes (see ``ranksam bench --help``)."""

    bag: str
    topic: str | None = None
    label_topic: str | None = None
    mode: str = "looping"
    rates: tuple[float, ...] = ()
    search: bool = False
    search_min: float = 0.5
    search_max: float = 60.0
    search_step: float = 0.1
    probe_duration: float = 3.0
    duration: float = 5.0
    runs: int = 5
    json: str | None = None
    plots: str | None = None
    offline: bool = False
    record: str | None = None
    node_params: str | None = None
    overrides: tuple[str, ...] = ()
    attach: bool = False
    node_pid: int | None = None
    fastdds_profile: bool = True
    input_reliability: str | None = None
    input_topic: str | None = None
    output_topic: str = "/ranksam/masks"
    max_frames: int = 100
    startup_timeout: float = 180.0
    warmup_s: float = 2.0
    sample_every: int = 1
    node_log: str | None = None
    quiet: bool = False
    extra_metadata: dict = field(default_factory=dict)


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
