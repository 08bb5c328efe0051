"""``ranksam bench``: replay a bag through the node (live) or the pipeline (offline) and report.

Live: start the node as its own process (or attach to a running one), wait until it is up,
warm it up, optionally search the peak sustained rate, then run each rate ``runs`` times and
conclude them R2B's way. Offline: the same frames through :class:`Pipeline` in this process.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ranksam_ros.bench import metrics as M
from ranksam_ros.bench.bags import (
    COMPRESSED,
    BagFrames,
    bag_digest,
    load_companions,
    load_frames,
    open_bag,
    pick_label_topic,
    read_topic,
    topic_table,
)
from ranksam_ros.bench.node_process import (
    PROFILE_ENV,
    NodeProcess,
    ResourceSampler,
    fastdds_profile,
    find_node_pid,
    node_config,
    node_parameters,
)
from ranksam_ros.bench.options import BenchOptions, check_options
from ranksam_ros.bench.report import (
    build_report,
    clean,
    host_metadata,
    plot_latencies,
    plot_rss,
    write_report,
)

ATTACH_PARAMETERS = ("model", "adapter", "backend", "precision", "threads", "benchmark_mode")
ATTACH_PARAMETERS += ("input.transport", "input.reliability", "output.reliability")


def _say(opts: BenchOptions, text: str) -> None:
    if not opts.quiet:
        print(f"[bench] {text}", flush=True)


def nominal_rate(frames: BagFrames) -> float:
    """The bag's frame rate from the median gap of its timestamps (10 Hz for one frame)."""
    gaps = np.diff(frames.log_ns)
    gaps = gaps[gaps > 0]
    return float(1e9 / np.median(gaps)) if len(gaps) else 10.0


def bag_metadata(opts: BenchOptions, frames: BagFrames) -> dict:
    digest, size = bag_digest(opts.bag)
    return {
        "bag": str(opts.bag),
        "bag_sha256": digest,
        "bag_size_bytes": size,
        "topic": frames.topic,
        "message_type": frames.msgtype,
        "frames": len(frames),
        "topic_messages": frames.topic_count,
        "bag_rate_hz": nominal_rate(frames),
        "stamps": frames.stamp_report(),
        **opts.extra_metadata,
    }


def load_labels(opts: BenchOptions) -> BagFrames | None:
    """The label topic's frames when the bag has one (given or found by name)."""
    with open_bag(opts.bag) as reader:
        topic = pick_label_topic(topic_table(reader), opts.label_topic)
    return read_topic(opts.bag, topic) if topic else None


def run_bench(opts: BenchOptions) -> dict:
    """Run the benchmark; writes JSON/plots when asked and returns the report."""
    check_options(opts)
    frames = load_frames(opts.bag, opts.topic, opts.max_frames)
    meta = bag_metadata(opts, frames)
    _say(opts, f"{len(frames)} frames of {frames.topic} ({frames.msgtype}) from {opts.bag}")
    if opts.offline:
        return run_offline_bench(opts, frames, meta)
    return run_live_bench(opts, frames, meta)


def run_offline_bench(opts: BenchOptions, frames: BagFrames, meta: dict) -> dict:
    """Model-only timing (and mIoU with labels) of the bag's frames in this process."""
    from ranksam_ros.bench.offline import run_offline

    values = node_parameters(opts.node_params, list(opts.overrides))
    cfg = node_config(values)
    offline = run_offline(frames, cfg, load_labels(opts))
    meta = {**meta, "mode": "offline", "node_params": values, "model_id": offline["model_id"]}
    report = clean({**offline, "metadata": {**meta, **host_metadata()}})
    if opts.json:
        write_report(opts.json, report)
    return report


@dataclass
class _Live:
    """The running pieces of a live benchmark."""

    opts: BenchOptions
    bench: object
    proc: NodeProcess | None
    sampler: ResourceSampler | None
    recorder: object | None
    latencies: dict = field(default_factory=dict)
    model_id: str | None = None

    def close(self) -> dict | None:
        """Stop everything that was started; returns the recording's verification."""
        summary = None
        try:
            if self.bench is not None:
                self.bench.close()
            if self.recorder is not None:
                try:
                    summary = self.recorder.close()
                except ValueError as exc:  # e.g. no output arrived while recording
                    summary = {
                        "path": str(self.recorder.path),
                        "verified": False,
                        "error": str(exc),
                    }
        finally:
            if self.sampler is not None:
                self.sampler.stop()
            if self.proc is not None:
                self.proc.stop()
        return summary

    def alive(self) -> None:
        if self.proc is not None and self.proc.exit_code() is not None:
            raise RuntimeError(
                f"the node exited with code {self.proc.exit_code()}; last log lines:\n"
                + self.proc.log_tail()
            )


def _node_setup(opts: BenchOptions, frames: BagFrames) -> tuple[dict, object]:
    """Node parameters (with benchmark mode and the bag's transport) and their config."""
    from ranksam_ros.node_config import NodeConfig

    if opts.attach:
        return {}, NodeConfig()
    transport = "compressed" if frames.msgtype == COMPRESSED else "raw"
    explicit = node_parameters(None, list(opts.overrides))
    if explicit.get("input.transport", transport) != transport:
        raise ValueError(
            f"input.transport={explicit['input.transport']} but {frames.topic} is {frames.msgtype}"
        )
    values = node_parameters(opts.node_params, list(opts.overrides))
    if values.get("input.transport", transport) != transport:  # from the params file
        _say(opts, f"input.transport set to {transport} to match {frames.topic}")
    values.update({"benchmark_mode": True, "input.transport": transport})
    return values, node_config(values)


def _log_path(opts: BenchOptions) -> Path:
    if opts.node_log:
        return Path(opts.node_log)
    if opts.json:
        return Path(opts.json).with_suffix(".node.log")
    if opts.plots:
        return Path(opts.plots) / "node.log"
    return Path(tempfile.mkdtemp(prefix="ranksam-bench-")) / "node.log"


def _sampler(opts: BenchOptions, pid: int | None) -> ResourceSampler | None:
    """CPU/RSS sampling of the node when psutil is installed and the process is known."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        _say(opts, "psutil is not installed: no node CPU/RSS (pip install psutil)")
        return None
    pid = pid or opts.node_pid or find_node_pid()
    if pid is None:
        _say(opts, "node process not found: no CPU/RSS (pass --node-pid)")
        return None
    sampler = ResourceSampler(pid)
    sampler.start()
    return sampler


def _start(opts: BenchOptions, frames: BagFrames, values: dict, cfg) -> _Live:
    """Recorder and bench node first, then the node process; undone if anything fails."""
    from ranksam_ros.bench.replay import BenchNode

    profile = fastdds_profile() if opts.fastdds_profile else None
    if profile is not None:  # this process publishes the frames: it needs the profile too
        os.environ.setdefault(PROFILE_ENV, str(profile))
    compressed = frames.msgtype == COMPRESSED
    input_topic = opts.input_topic or ("/image/compressed" if compressed else "/image")
    live = _Live(opts, None, None, None, None)
    try:
        if opts.record:
            from ranksam_ros.bench.record import BagRecorder

            live.recorder = BagRecorder(opts.record, input_topic, frames.msgtype)
        reliability = opts.input_reliability or (None if opts.attach else cfg.input.reliability)
        companions = load_companions(opts.bag, frames)
        for companion in companions:
            _say(opts, f"replaying {companion.available()} {companion.msgtype} on "
                 f"{companion.node_topic} with the frames")  # fmt: skip
        live.bench = BenchNode(
            frames, input_topic, opts.output_topic, reliability,
            sample_every=opts.sample_every, recorder=live.recorder,
            adapt_qos=opts.attach and opts.input_reliability is None, companions=companions,
        )  # fmt: skip
        if not opts.attach:
            forced = {k: values[k] for k in ("benchmark_mode", "input.transport")}
            params = {**node_parameters(None, list(opts.overrides)), **forced}  # file stays
            live.proc = NodeProcess(opts.node_params, params, _log_path(opts), profile)
            live.proc.start()
            _say(opts, f"started the node (pid {live.proc.pid}), log: {live.proc.log_path}")
        live.sampler = _sampler(opts, live.proc.pid if live.proc else None)
    except BaseException:
        live.close()
        raise
    return live


def _measure(live: _Live, rate: float, duration: float) -> dict:
    """One run: metrics (with node overhead and resources); keeps the latency series."""
    from ranksam_msgs.msg import SegmentationMasks
    from rclpy.serialization import deserialize_message

    record = live.bench.run(rate, duration, live.opts.mode)
    result = M.run_metrics(record.sent, record.received)
    latency = M.matched_latencies(record.sent, record.received)
    model = record.model_ms(lambda raw: deserialize_message(raw, SegmentationMasks))
    result.update(M.overhead_metrics(latency, model))
    if live.sampler is not None:
        result.update(M.resource_metrics(live.sampler.window(record.started, record.ended)))
    result["LATE_SENDS"] = record.late_sends
    t0 = min(record.sent.values(), default=0)
    series = sorted(((record.sent[k] - t0) / 1e9, lat) for k, lat in latency.items())
    live.latencies.setdefault(rate, []).append(series)
    if record.samples and live.model_id is None:
        first = next(iter(record.samples.values()))
        live.model_id = deserialize_message(first, SegmentationMasks).model_id
    return result


def _search(live: _Live) -> M.RateSearch:
    """Peak sustained rate: a saturating probe estimates capacity, then relative steps."""
    opts = live.opts
    probe = M.run_metrics(*_sent_received(live, opts.search_max, opts.probe_duration))
    capacity = probe["RECEIVED_RATE_HZ"]
    start = 0.8 * capacity if math.isfinite(capacity) and capacity > 0 else None
    _say(opts, f"saturating probe at {opts.search_max:g} Hz: {capacity:.2f} fps out")
    search = M.RateSearch(opts.search_min, opts.search_max, opts.search_step, start)
    while (rate := search.next_rate()) is not None:
        duration = max(opts.probe_duration, 10.0 / rate)
        result = M.run_metrics(*_sent_received(live, rate, duration))
        passed = M.probe_passes(result)
        search.report(rate, passed)
        _say(
            opts,
            f"probe {rate:.2f} Hz: {result['RECEIVED_RATE_HZ']:.2f} fps out, "
            f"{result['NUM_MISSED_FRAMES']}/{result['NUM_FRAMES_SENT']} missed -> "
            + ("pass" if passed else "fail"),
        )
    return search


def _sent_received(live: _Live, rate: float, duration: float) -> tuple[dict, dict]:
    record = live.bench.run(rate, duration, live.opts.mode)
    return record.sent, record.received


def _measure_rate(live: _Live, rate: float) -> dict:
    opts = live.opts
    runs = []
    for number in range(opts.runs):
        if live.recorder is not None:  # the first run of each rate is enough to look at
            live.recorder.active = number == 0
        runs.append(_measure(live, rate, opts.duration))
    if live.recorder is not None:
        live.recorder.active = False
    result = M.aggregate_runs(runs)
    result["TARGET_RATE"] = rate
    result["runs"] = runs
    _say(
        opts,
        f"{rate:g} Hz x {opts.runs}: {result['RECEIVED_RATE_HZ']:.2f} fps out, latency p50 "
        f"{result['LATENCY_P50']:.1f} ms, p95 {result['LATENCY_P95']:.1f} ms",
    )
    return result


def _rates(opts: BenchOptions, frames: BagFrames, search: M.RateSearch | None) -> list[float]:
    if opts.mode == "timeline":
        return [round(nominal_rate(frames), 3)]
    rates = [round(search.peak, 2)] if search else []
    rates += [r for r in opts.rates if search is None or r <= 1.05 * search.peak]
    return rates or [round(nominal_rate(frames), 3)]


def run_live_bench(opts: BenchOptions, frames: BagFrames, meta: dict) -> dict:
    """Start or attach to the node, measure every rate, write the report."""
    values, cfg = _node_setup(opts, frames)
    live = _start(opts, frames, values, cfg)
    custom: dict = {}
    try:
        live.bench.wait_ready(opts.startup_timeout, live.alive)
        first = live.bench.warm_up(opts.startup_timeout, live.alive)
        if opts.attach:  # what the running node was configured with
            values = live.bench.remote_parameters(list(ATTACH_PARAMETERS))
        if live.proc is not None:
            custom["cold_start_s"] = first - live.proc.started
            load = live.proc.model_load()
            custom["model_load_s"] = load["seconds"] if load else None
            _say(opts, f"first output {custom['cold_start_s']:.1f} s after start")
        live.bench.run(max(opts.rates or (2.0,)), opts.warmup_s, opts.mode)  # warm-up, ignored
        search = _search(live) if opts.search else None
        if search is not None:
            custom["search"] = search.summary()
            skipped = [r for r in opts.rates if r > 1.05 * search.peak]
            if skipped:  # R2B's rule: fixed rates above the measured peak are not run
                custom["skipped_rates_above_peak"] = skipped
        per_rate = {rate: _measure_rate(live, rate) for rate in _rates(opts, frames, search)}
    finally:
        record_summary = live.close()
    if record_summary is not None:
        custom["record"] = record_summary
        _say(opts, f"recorded {record_summary['path']}: {record_summary['topics']}")
    return _finish(live, per_rate, custom, meta, values, cfg, search)


def _finish(live: _Live, per_rate, custom, meta, values, cfg, search) -> dict:
    opts = live.opts
    headline = next(iter(per_rate))  # the search peak when searched
    meta = {
        **meta,
        "mode": opts.mode,
        "model_id": live.model_id,
        "backend": values.get("backend") if opts.attach else cfg.backend,
        "precision": values.get("precision") if opts.attach else cfg.precision,
        "node_params": values,
        "params_file": opts.node_params,
        "attach": opts.attach,
        "duration_s": opts.duration,
        "runs": opts.runs,
        "input_topic": live.bench.input_topic,
        "input_reliability": live.bench.input_reliability,
        "output_topic": opts.output_topic,
        "stamps_rewritten": True,
        "fastdds_profile": _shown_path(os.environ.get(PROFILE_ENV)),
        "node_log": str(live.proc.log_path) if live.proc else None,
        "search_settings": {
            "enabled": opts.search,
            "lower_hz": opts.search_min,
            "upper_hz": opts.search_max,
            "relative_step": opts.search_step,
            "probe_duration_s": opts.probe_duration,
            "pass_rule": "missed <= ceil(5% of sent) and fps out >= 0.9 x fps in",
        },
    }
    report = build_report(per_rate, headline, custom, meta)
    if search is not None:
        report["PEAK_THROUGHPUT_PREDICTION"] = search.peak
        report["at_search_bound"] = search.at_bound
    if opts.json:
        write_report(opts.json, report)
    if opts.plots:
        plots = plot_latencies(live.latencies, opts.plots) + plot_rss(per_rate, opts.plots)
        report["custom"]["plots"] = [str(p) for p in plots]
        if opts.json:
            write_report(opts.json, report)
    return report


def _shown_path(path: str | None) -> str | None:
    """``path`` relative to the working directory when inside it (reports name no machine)."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path
