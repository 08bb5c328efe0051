"""Replay-benchmark arithmetic without ROS: percentiles, jitter, misses, aggregation, search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranksam_ros.bench import metrics as M

MS = 1_000_000  # ns


def _run(send_ms, latency_ms):
    """Sent/received maps (stamp = index) from send times and latencies (None = missed)."""
    sent = {k: int(t * MS) for k, t in enumerate(send_ms)}
    received = {
        k: int((t + lat) * MS)
        for k, (t, lat) in enumerate(zip(send_ms, latency_ms))
        if lat is not None
    }
    return sent, received


def test_percentiles_and_latency_keys():
    assert M.percentiles([1, 2, 3, 4, 5], (50, 100)) == [3.0, 5.0]
    assert all(math.isnan(v) for v in M.percentiles([]))
    sent, received = _run(np.arange(10) * 100.0, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    out = M.run_metrics(sent, received)
    assert out["LATENCY_P50"] == pytest.approx(55.0)
    assert out["LATENCY_P95"] == pytest.approx(95.5)
    assert out["LATENCY_P99"] == pytest.approx(99.1)
    assert (out["LATENCY_MAX"], out["LATENCY_MEAN"]) == (100.0, 55.0)
    assert out["FIRST_SENT_RECEIVED_LATENCY"] == 10.0
    assert out["LAST_SENT_RECEIVED_LATENCY"] == 100.0


def test_missed_frames_rates_and_unmatched_outputs():
    sent, received = _run([0, 100, 200, 300, 400], [10, None, 10, None, 10])
    received[999] = 5 * MS  # an output of an earlier run: ignored
    out = M.run_metrics(sent, received)
    assert (out["NUM_FRAMES_SENT"], out["NUM_FRAMES_RECEIVED"], out["NUM_MISSED_FRAMES"]) == (
        5,
        3,
        2,
    )
    assert out["MEAN_PLAYBACK_FRAME_RATE"] == pytest.approx(12.5)  # R2B: 5 / 0.4 s
    assert out["SENT_RATE_HZ"] == pytest.approx(10.0)  # 4 intervals / 0.4 s
    assert out["RECEIVED_RATE_HZ"] == pytest.approx(5.0)
    empty = M.run_metrics(sent, {})
    assert empty["NUM_MISSED_FRAMES"] == 5 and math.isnan(empty["LATENCY_P50"])
    assert math.isnan(empty["MAX_JITTER"])


def test_jitter_is_the_absolute_second_difference():
    assert M.jitter([0, 100]) == {}
    out = M.jitter([0, 100, 210, 300, 400])  # gaps 100, 110, 90, 100 -> jitter 10, 20, 10
    assert out["MAX_JITTER"] == pytest.approx(20.0)
    assert out["MIN_JITTER"] == pytest.approx(10.0)
    assert out["MEAN_JITTER"] == pytest.approx(40 / 3)
    assert out["STD_DEV_JITTER"] == pytest.approx(np.std([10, 20, 10]))


def test_overhead_and_resources():
    out = M.overhead_metrics({1: 30.0, 2: 50.0, 3: 40.0}, {1: 20.0, 2: 20.0, 9: 1.0})
    assert out["MODEL_TIME_P50"] == 20.0 and out["NODE_OVERHEAD_P50"] == 20.0
    assert out["NUM_TIMING_SAMPLES"] == 2
    res = M.resource_metrics([(0.0, 50.0, 100 * 2**20), (0.1, 150.0, 110 * 2**20)])
    assert res["NODE_CPU_MEAN_PERCENT"] == 100.0 and res["NODE_CPU_MAX_PERCENT"] == 150.0
    assert res["NODE_RSS_GROWTH_MB"] == pytest.approx(10.0)
    assert M.resource_metrics([]) == {}


def test_rss_trend_tells_a_leak_from_warm_up():
    t = np.arange(0.0, 1800.0, 0.1)  # 30 min at 10 Hz
    leak = 800 + 20.0 * t / 3600  # steady +20 MB/h
    warm = 800 + 30.0 * (1 - np.exp(-t / 120))  # +30 MB within minutes, then flat
    res_leak, res_warm = M.rss_trend(t, leak), M.rss_trend(t, warm)
    assert res_leak["NODE_RSS_SLOPE_LAST_HALF_MB_PER_H"] == pytest.approx(20.0, rel=1e-6)
    assert res_leak["NODE_RSS_SLOPE_FIRST_HALF_MB_PER_H"] == pytest.approx(20.0, rel=1e-6)
    assert abs(res_warm["NODE_RSS_SLOPE_LAST_HALF_MB_PER_H"]) < 0.5
    assert res_warm["NODE_RSS_SLOPE_FIRST_HALF_MB_PER_H"] > 20.0
    assert M.rss_trend(t[:2000], leak[:2000]) == {}  # 200 s: under two bins per half


def test_rss_series_keeps_full_bins_only():
    t = np.arange(0.0, 25.0, 1.0)
    series = M.rss_series(t, 100.0 + t, bin_s=10.0)
    assert series.tolist() == [[5.0, 104.5], [15.0, 114.5]]  # the 5 s tail is dropped
    assert M.rss_series([], [], 10.0).shape == (0, 2)


def test_aggregation_drops_best_and_worst():
    runs = [
        {"MEAN_FRAME_RATE": v, "MAX_JITTER": j, "MIN_JITTER": j, "LATENCY_P50": v}
        for v, j in ((10, 1), (20, 5), (30, 2), (40, 9), (1000, 50))
    ]
    out = M.aggregate_runs(runs)
    assert out["MEAN_FRAME_RATE"] == pytest.approx(30.0)  # mean of 20, 30, 40
    assert out["MAX_JITTER"] == 9 and out["MIN_JITTER"] == 2  # max / min of the middle three
    two = M.aggregate_runs([{"LATENCY_P50": 1.0}, {"LATENCY_P50": 3.0}])
    assert two["LATENCY_P50"] == 2.0  # fewer than three runs: nothing dropped
    nan = M.aggregate_runs([{"LATENCY_P50": math.nan}, {"LATENCY_P50": 4.0}])
    assert nan["LATENCY_P50"] == 4.0
    series = M.aggregate_runs([{"LATENCY_P50": 1.0, "rss_series_mb": [[5.0, 800.0]]}])
    assert series == {"LATENCY_P50": 1.0}  # series stay in the runs


def test_probe_pass_rule():
    ok = {
        "NUM_FRAMES_SENT": 100,
        "NUM_MISSED_FRAMES": 5,
        "SENT_RATE_HZ": 10.0,
        "RECEIVED_RATE_HZ": 9.0,
    }
    assert M.probe_passes(ok)
    assert not M.probe_passes({**ok, "NUM_MISSED_FRAMES": 6})
    assert not M.probe_passes({**ok, "RECEIVED_RATE_HZ": 8.9})
    assert not M.probe_passes({**ok, "NUM_FRAMES_SENT": 0})


def _search(capacity: float, **kwargs) -> M.RateSearch:
    search = M.RateSearch(**kwargs)
    while (rate := search.next_rate()) is not None:
        search.report(rate, rate <= capacity)
        assert len(search.history) < 100
    return search


def test_search_brackets_the_peak_within_half_a_step():
    search = _search(7.3, lower=1.0, upper=60.0, step=0.1)
    assert 7.3 / 1.05 <= search.peak <= 7.3 and not search.at_bound
    quick = _search(7.3, lower=1.0, upper=60.0, step=0.1, start=6.0)  # from a capacity estimate
    assert 7.3 / 1.05 <= quick.peak <= 7.3 and len(quick.history) < len(search.history)
    down = _search(7.3, lower=1.0, upper=60.0, step=0.1, start=20.0)  # estimate too high
    assert 7.3 / 1.05 <= down.peak <= 7.3 and not down.at_bound


@pytest.mark.parametrize(
    ("capacity", "peak"),
    [(0.3, 1.0), (1.04, 1.0), (100.0, 20.0), (19.9, None)],
    ids=["below-lower", "on-lower", "above-upper", "near-upper"],
)
def test_search_flags_results_on_a_bound(capacity, peak):
    search = _search(capacity, lower=1.0, upper=20.0, step=0.1)
    summary = search.summary()
    if peak is None:  # inside the range: bracketed, not on the bound
        assert not search.at_bound and search.peak <= capacity
    else:
        assert search.at_bound and summary["at_search_bound"] and search.peak == peak
    assert summary["none_passed"] == (capacity < 1.0)


def test_search_rejects_bad_settings():
    with pytest.raises(ValueError, match="lower <= upper"):
        M.RateSearch(5.0, 2.0)
    with pytest.raises(ValueError, match="step"):
        M.RateSearch(1.0, 2.0, step=1.5)


def test_rss_plot_per_rate(tmp_path):
    from ranksam_ros.bench.report import plot_rss

    run = {"rss_series_mb": [[5.0, 800.0], [15.0, 801.0]], "NODE_RSS_SLOPE_LAST_HALF_MB_PER_H": 2.0}
    written = plot_rss({30.0: {"runs": [run]}, 2.0: {"runs": [{"rss_series_mb": []}]}}, tmp_path)
    assert [p.name for p in written] == ["rss_30hz.png"]  # the rate without a series is skipped
    assert written[0].stat().st_size > 1000
