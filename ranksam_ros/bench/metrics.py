"""Replay-benchmark arithmetic: per-run metrics, run aggregation and the rate search (numpy only).

Key names follow ros2_benchmark (R2B) so results compare: ``MEAN_PLAYBACK_FRAME_RATE`` (sent
count / sent span), ``MEAN_FRAME_RATE`` (received count / received span), ``NUM_FRAMES_SENT``,
``NUM_MISSED_FRAMES``, ``FIRST/LAST_SENT_RECEIVED_LATENCY`` and jitter as the absolute second
difference of receive times. On top of R2B, outputs are matched to inputs by header stamp, which
gives per-frame latency percentiles (``LATENCY_P50`` ...). R2B's rates divide a count of N by the
span of N - 1 intervals, which reads N / (N - 1) high in short runs (2.4 fps for six frames at
2 Hz); ``SENT_RATE_HZ`` and ``RECEIVED_RATE_HZ`` are the unbiased (N - 1) / span and drive the
rate search. Times in milliseconds, rates in Hz.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

NS_PER_MS = 1e6
LATENCY_KEYS = ("LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "LATENCY_MAX", "LATENCY_MEAN")
JITTER_KEYS = ("MAX_JITTER", "MIN_JITTER", "MEAN_JITTER", "STD_DEV_JITTER")
# R2B's conclusion rule after dropping best and worst: these take the max / min of the rest
# (R2B counts MEAN_JITTER among the max metrics; kept for comparable numbers), others the mean.
MAX_KEYS = ("MAX_JITTER", "MEAN_JITTER", "LATENCY_MAX", "NODE_CPU_MAX_PERCENT", "NODE_RSS_MAX_MB")
MIN_KEYS = ("MIN_JITTER",)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    """Linear-interpolated percentiles (NaN for no values)."""
    if len(values) == 0:
        return [math.nan for _ in qs]
    return [float(v) for v in np.percentile(np.asarray(values, np.float64), qs)]


def jitter(receive_ms: Sequence[float]) -> dict[str, float]:
    """R2B frame-to-frame jitter: ``|diff(diff(t))|`` of receive times (needs 3 or more)."""
    if len(receive_ms) < 3:
        return {}
    values = np.abs(np.diff(np.diff(np.sort(np.asarray(receive_ms, np.float64)))))
    return {
        "MAX_JITTER": float(values.max()),
        "MIN_JITTER": float(values.min()),
        "MEAN_JITTER": float(values.mean()),
        "STD_DEV_JITTER": float(values.std()),
    }


def _rate(count: int, span_ms: float) -> float:
    return count / (span_ms / 1000.0) if span_ms > 0 else math.nan


def _rates(times_ms: np.ndarray) -> tuple[float, float]:
    """R2B's count / span and the unbiased (count - 1) / span of sorted times."""
    if len(times_ms) < 2:
        return (0.0 if len(times_ms) == 0 else math.nan), math.nan
    span = times_ms[-1] - times_ms[0]
    return _rate(len(times_ms), span), _rate(len(times_ms) - 1, span)


def matched_latencies(
    sent_ns: Mapping[int, int], received_ns: Mapping[int, int]
) -> dict[int, float]:
    """Stamp -> end-to-end latency (ms) of every sent frame whose output arrived."""
    return {
        key: (received_ns[key] - start) / NS_PER_MS
        for key, start in sent_ns.items()
        if key in received_ns
    }


def run_metrics(sent_ns: Mapping[int, int], received_ns: Mapping[int, int]) -> dict[str, float]:
    """Metrics of one run.

    Args:
        sent_ns: Stamp -> send time (monotonic ns) of every frame sent in the run.
        received_ns: Stamp -> arrival time (same clock) of outputs; outputs whose stamp was not
            sent in this run (e.g. late results of an earlier run) are ignored.

    Returns:
        R2B keys, ``NUM_FRAMES_RECEIVED`` and the latency percentiles (NaN when undefined).
    """
    latencies = matched_latencies(sent_ns, received_ns)
    sends = np.sort(np.asarray(list(sent_ns.values()), np.float64)) / NS_PER_MS
    arrivals = np.sort(np.asarray([received_ns[k] for k in latencies], np.float64)) / NS_PER_MS
    playback, sent_rate = _rates(sends)
    frame_rate, received_rate = _rates(arrivals)
    out: dict[str, float] = {
        "NUM_FRAMES_SENT": len(sends),
        "NUM_FRAMES_RECEIVED": len(arrivals),
        "NUM_MISSED_FRAMES": len(sends) - len(arrivals),
        "MEAN_PLAYBACK_FRAME_RATE": playback,
        "MEAN_FRAME_RATE": frame_rate,
        "SENT_RATE_HZ": sent_rate,
        "RECEIVED_RATE_HZ": received_rate,
        "FIRST_SENT_RECEIVED_LATENCY": float(arrivals[0] - sends[0]) if len(arrivals) else math.nan,
        "LAST_SENT_RECEIVED_LATENCY": float(arrivals[-1] - sends[-1])
        if len(arrivals)
        else math.nan,
    }
    values = list(latencies.values())
    p50, p95, p99 = percentiles(values)
    out.update(
        {
            "LATENCY_P50": p50,
            "LATENCY_P95": p95,
            "LATENCY_P99": p99,
            "LATENCY_MAX": max(values) if values else math.nan,
            "LATENCY_MEAN": float(np.mean(values)) if values else math.nan,
        }
    )
    out.update({key: math.nan for key in JITTER_KEYS})
    out.update(jitter(arrivals))
    return out


def overhead_metrics(latency_ms: Mapping[int, float], model_ms: Mapping[int, float]) -> dict:
    """Node overhead per frame: end-to-end latency minus the model stages the node reported.

    Args:
        latency_ms: Stamp -> end-to-end latency.
        model_ms: Stamp -> the node's model stages (preprocess .. postprocess) for that frame.
    """
    keys = [k for k in model_ms if k in latency_ms]
    if not keys:
        return {}
    model = [model_ms[k] for k in keys]
    overhead = [latency_ms[k] - model_ms[k] for k in keys]
    return {
        "MODEL_TIME_P50": percentiles(model, (50,))[0],
        "NODE_OVERHEAD_P50": percentiles(overhead, (50,))[0],
        "NODE_OVERHEAD_P95": percentiles(overhead, (95,))[0],
        "NUM_TIMING_SAMPLES": len(keys),
    }


def resource_metrics(
    samples: Sequence[tuple[float, float, float]], series_bin_s: float = 10.0
) -> dict[str, object]:
    """CPU (% of one core) and RSS (MB) of the node from ``(time_s, cpu_percent, rss_bytes)``.

    Besides the scalar metrics, ``rss_series_mb`` keeps the RSS as ``[[s, MB], ...]`` medians
    per ``series_bin_s`` (for plots; run aggregation leaves it in the runs).
    """
    if not samples:
        return {}
    data = np.asarray(samples, np.float64)
    cpu, rss = data[:, 1], data[:, 2] / 2**20
    series = rss_series(data[:, 0], rss, series_bin_s)
    return {
        "NODE_CPU_MEAN_PERCENT": float(cpu.mean()),
        "NODE_CPU_MAX_PERCENT": float(cpu.max()),
        "NODE_RSS_MEAN_MB": float(rss.mean()),
        "NODE_RSS_MAX_MB": float(rss.max()),
        "NODE_RSS_GROWTH_MB": float(rss[-1] - rss[0]),
        **rss_trend(data[:, 0], rss),
        "rss_series_mb": [[round(t, 1), round(mb, 2)] for t, mb in series.tolist()],
    }


def rss_trend(
    times_s: Sequence[float], rss_mb: Sequence[float], bin_s: float = 60.0
) -> dict[str, float]:
    """RSS slope in MB per hour over the first and the last half of a run.

    A leak grows at a steady rate to the end; allocator and thread-pool warm-up flattens out.
    Telling them apart needs the late slope, so RSS is first reduced to per-bin medians (robust
    to short peaks while a frame is in flight), then each half gets a least-squares line.
    Runs too short for two bins per half return nothing.

    Args:
        times_s: Sample times (s, any origin), shape (N,).
        rss_mb: RSS at those times (MB), shape (N,).
        bin_s: Bin width (s).
    """
    series = rss_series(times_s, rss_mb, bin_s)
    if len(series) < 4:
        return {}
    t_h, mb = series[:, 0] / 3600.0, series[:, 1]
    half = len(series) // 2
    return {
        "NODE_RSS_SLOPE_FIRST_HALF_MB_PER_H": float(np.polyfit(t_h[:half], mb[:half], 1)[0]),
        "NODE_RSS_SLOPE_LAST_HALF_MB_PER_H": float(np.polyfit(t_h[half:], mb[half:], 1)[0]),
    }


def rss_series(times_s: Sequence[float], rss_mb: Sequence[float], bin_s: float) -> np.ndarray:
    """Per-bin median RSS, shape (bins, 2): bin centre (s since the first sample), MB.

    Times must be ascending (as sampled). Only full bins are kept, so the last, partial one
    cannot tilt a slope.
    """
    t = np.asarray(times_s, np.float64)
    mb = np.asarray(rss_mb, np.float64)
    if t.size == 0:
        return np.zeros((0, 2))
    t = t - t[0]
    bins = int(t[-1] // bin_s)
    edges = np.searchsorted(t, np.arange(bins + 1) * bin_s)  # one pass instead of a mask per bin
    rows = [
        ((b + 0.5) * bin_s, float(np.median(mb[lo:hi])))
        for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))
        if hi > lo
    ]
    return np.asarray(rows, np.float64).reshape(-1, 2)


def aggregate_runs(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Conclude several runs R2B's way: per metric drop the best and the worst, then combine.

    With fewer than three runs nothing is dropped. ``MAX_KEYS`` take the maximum of the rest,
    ``MIN_KEYS`` the minimum, everything else the mean. NaNs are left out; a metric that is
    NaN in every run stays NaN.
    """
    if not runs:
        return {}
    out: dict[str, float] = {}
    for key in runs[0]:
        if not isinstance(runs[0][key], (int, float)):
            continue  # per-run series stay in the runs, not in the conclusion
        values = sorted(
            float(r[key])
            for r in runs
            if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])
        )
        if len(values) >= 3:
            values = values[1:-1]
        if not values:
            out[key] = math.nan
        elif key in MAX_KEYS:
            out[key] = max(values)
        elif key in MIN_KEYS:
            out[key] = min(values)
        else:
            out[key] = float(np.mean(values))
        if key.startswith(("NUM_", "LATE_")) and float(out[key]).is_integer():
            out[key] = int(out[key])  # counts stay counts when the mean is whole
    return out


def probe_passes(
    metrics: Mapping[str, float], max_missed: float = 0.05, min_fps_ratio: float = 0.9
) -> bool:
    """Whether a probe sustained its rate.

    It did when at most ``ceil(max_missed * sent)`` frames were missed and the output rate kept
    up with ``min_fps_ratio`` of the playback rate.
    """
    sent = metrics["NUM_FRAMES_SENT"]
    if sent == 0:
        return False
    fps_in, fps_out = metrics["SENT_RATE_HZ"], metrics["RECEIVED_RATE_HZ"]
    if math.isnan(fps_out) or math.isnan(fps_in):
        return False
    missed_ok = metrics["NUM_MISSED_FRAMES"] <= math.ceil(max_missed * sent)
    return missed_ok and fps_out >= min_fps_ratio * fps_in


class RateSearch:
    """Peak sustained rate with a relative step, flagging results on a search bound.

    From ``start`` (default: the lower bound) the rate grows by ``step`` (10%) while probes
    pass, or shrinks by it while they fail, until a passing and a failing rate are found; the
    gap is then halved (geometrically) until it is below ``step / 2``. The peak is the highest
    passing rate. It sits on a bound when the lower bound failed or was the best pass, or the
    upper bound passed: the true peak lies outside the searched range or within one step of it.

    Args:
        lower: Lowest rate probed (Hz).
        upper: Highest rate probed (Hz).
        step: Relative step (0.1 = 10%).
        start: First rate probed (clamped into the bounds), e.g. from a capacity estimate.
    """

    def __init__(
        self, lower: float, upper: float, step: float = 0.1, start: float | None = None
    ) -> None:
        if not 0 < lower <= upper:
            raise ValueError(f"search bounds must satisfy 0 < lower <= upper, got {lower}, {upper}")
        if not 0 < step < 1:
            raise ValueError(f"search step must be in (0, 1), got {step}")
        self.lower, self.upper, self.step = float(lower), float(upper), float(step)
        self.start = min(max(float(start or lower), self.lower), self.upper)
        self.history: list[tuple[float, bool]] = []

    @property
    def best_pass(self) -> float | None:
        passed = [rate for rate, ok in self.history if ok]
        return max(passed) if passed else None

    def _lowest_fail_above(self, rate: float) -> float | None:
        failed = [r for r, ok in self.history if not ok and r > rate]
        return min(failed) if failed else None

    def next_rate(self) -> float | None:
        """The next rate to probe, or None when the search is finished."""
        if not self.history:
            return self.start
        grow = 1.0 + self.step
        best = self.best_pass
        if best is None:  # everything failed so far: step down
            lowest = min(rate for rate, _ in self.history)
            return None if lowest <= self.lower else max(lowest / grow, self.lower)
        fail = self._lowest_fail_above(best)
        if fail is None:  # everything passed so far: step up
            return None if best >= self.upper else min(best * grow, self.upper)
        if fail / best <= 1.0 + self.step / 2 + 1e-9:
            return None
        return math.sqrt(best * fail)

    def report(self, rate: float, passed: bool) -> None:
        """Record the outcome of a probe at ``rate``."""
        self.history.append((float(rate), bool(passed)))

    @property
    def peak(self) -> float:
        """Highest passing rate (the lower bound if none passed)."""
        best = self.best_pass
        return self.lower if best is None else best

    @property
    def at_bound(self) -> bool:
        """True when the peak is not bracketed inside the bounds (see the class docstring)."""
        best = self.best_pass
        tolerance = 1e-9 * self.upper
        return best is None or best <= self.lower + tolerance or best >= self.upper - tolerance

    def summary(self) -> dict:
        """Settings, probes and verdict for the report."""
        return {
            "lower_hz": self.lower,
            "upper_hz": self.upper,
            "relative_step": self.step,
            "start_hz": self.start,
            "probes": [{"rate_hz": round(r, 4), "passed": ok} for r, ok in self.history],
            "peak_hz": self.peak,
            "at_search_bound": self.at_bound,
            "none_passed": self.best_pass is None,
        }
