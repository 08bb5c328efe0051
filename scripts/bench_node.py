"""Replay benchmarks of the node on the demo bag, written into docs/benchmarks.md.

    python scripts/bench_node.py replay      # demo bag: rate search + fixed rates, torch and ORT
    python scripts/bench_node.py overhead    # node overhead with and without the Fast DDS profile
    python scripts/bench_node.py overload    # 30 Hz into a slower model, 10 min (--seconds N)

Every run goes through `ranksam bench` (the node in its own process, frames over DDS, matched
by header stamp); JSON reports land in docs/results/.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ranksam_ros.bench.bag_writer import make_bag
from ranksam_ros.bench.options import BenchOptions
from ranksam_ros.bench.report import plot_rss
from ranksam_ros.bench.runner import run_bench
from ranksam_ros.data.folder import BUNDLED_FRAMES
from ranksam_ros.reporting import machine_description, update_section, write_json

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BASE = ("model=camvid-tiny", "adapter=gated", "threads=2")
DEFAULT_OVERLOAD_S = 600.0


def demo_bag(folder: Path) -> Path:
    bag = folder / "demo.mcap"
    make_bag(
        BUNDLED_FRAMES / "images", bag, rate=10.0, labels=BUNDLED_FRAMES / "labels", storage="mcap"
    )
    return bag


def _row(name: str, r: dict) -> str:
    return (
        f"| {name} | {r['SENT_RATE_HZ']:.1f} | {r['RECEIVED_RATE_HZ']:.2f} | {r['NUM_MISSED_FRAMES']}/{r['NUM_FRAMES_SENT']} | "
        f"{r['LATENCY_P50']:.0f} | {r['LATENCY_P95']:.0f} | {r['LATENCY_P99']:.0f} | {r['LATENCY_MAX']:.0f} | "
        f"{r.get('MODEL_TIME_P50', float('nan')):.0f} | {r.get('NODE_OVERHEAD_P50', float('nan')):.1f} | "
        f"{r.get('NODE_CPU_MEAN_PERCENT', float('nan')):.0f} | {r.get('NODE_RSS_MAX_MB', float('nan')):.0f} |"
    )


HEADER = (
    "| run | in Hz | out Hz | missed/sent | p50 ms | p95 ms | p99 ms | max ms | model ms (p50) | node overhead ms (p50) | node CPU % | RSS MB |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def per_rate(report: dict) -> dict[str, dict]:
    return {k: v for k, v in report.items() if k.endswith("fps") and isinstance(v, dict)}


def replay(folder: Path) -> str:
    bag = demo_bag(folder)
    sections, offline = [], None
    for backend in ("torch", "onnxruntime"):
        opts = BenchOptions(
            bag=str(bag),
            search=True,
            search_min=1.0,
            search_max=40.0,
            rates=(5.0, 10.0),
            duration=10.0,
            runs=5,
            overrides=(*BASE, f"backend={backend}"),
            plots=str(DOCS / "figures" / f"replay_{backend}"),
        )
        report = run_bench(opts)
        write_json(DOCS / "results" / f"replay_{backend}.json", report, relative_to=ROOT)
        search = report.get("custom", {}).get("search", {})
        peak = report.get("PEAK_THROUGHPUT_PREDICTION", float("nan"))
        bound = " (at a search bound!)" if search.get("at_search_bound") else ""
        rows = [_row(name, r) for name, r in per_rate(report).items()]
        custom = report.get("custom", {})
        sections.append(
            f"**backend `{backend}`**: peak sustainable rate {peak:.1f} Hz{bound}; cold start "
            f"{custom.get('cold_start_s', float('nan')):.1f} s, model load {custom.get('model_load_s', float('nan')):.1f} s.\n\n"
            + HEADER
            + "\n"
            + "\n".join(rows)
        )
    opts = BenchOptions(bag=str(bag), offline=True, overrides=BASE)
    offline = run_bench(opts)
    write_json(DOCS / "results" / "replay_offline.json", offline, relative_to=ROOT)
    return (
        f"Demo bag: the ten bundled CamVid val frames (480x360 rgb8) at 10 Hz, replayed in a loop by "
        f"`python scripts/bench_node.py replay` (equivalently `ranksam bench --bag out/demo/demo.mcap --search --search-min 1 --search-max 40 "
        f"--rates 5,10 --runs 5 --duration 10 --set model=camvid-tiny adapter=gated backend=...`) on "
        f"{machine_description()}. Latency is camera frame published -> SegmentationMasks received, per frame, "
        "matched by header stamp, across two processes over Fast DDS (shared-memory profile); 5 runs per "
        "rate, best and worst dropped; fixed rates above the measured peak are not run (ros2_benchmark's "
        "rule), and the search passes a rate if the probe misses at most 5% of its frames (rounded "
        "up) and delivers at least 0.9x the input rate. Offline (model only, same frames, in-process): "
        f"{offline.get('MODEL_TIME_MEDIAN', float('nan')):.0f} ms median per frame, semantic mIoU "
        f"{offline.get('semantic_miou', float('nan')):.3f} on these ten frames.\n\n"
        + "\n\n".join(sections)
        + "\n"
    )


def overhead(folder: Path) -> str:
    bag = demo_bag(folder)
    rows = []
    for profile in (True, False):
        opts = BenchOptions(
            bag=str(bag),
            rates=(2.0,),
            duration=15.0,
            runs=3,
            overrides=BASE,
            fastdds_profile=profile,
        )
        report = run_bench(opts)
        write_json(
            DOCS / "results" / f"overhead_{'shm' if profile else 'default'}.json",
            report,
            relative_to=ROOT,
        )
        r = next(iter(per_rate(report).values()))
        share = r["NODE_OVERHEAD_P50"] / r["MODEL_TIME_P50"]
        rows.append(
            f"| {'32 MiB SHM profile' if profile else 'Fast DDS defaults'} | {r['MODEL_TIME_P50']:.1f} | "
            f"{r['NODE_OVERHEAD_P50']:.1f} | {r['NODE_OVERHEAD_P95']:.1f} | **{100 * share:.1f}%** | "
            f"{r['NUM_MISSED_FRAMES']}/{r['NUM_FRAMES_SENT']} |"
        )
    return (
        "Node overhead = end-to-end latency minus the model stages the node reports in "
        "`SegmentationMasks.timing` (preprocess, encoder, prompts, decoder, postprocess): image "
        "conversion, message building (RLE), publishing and both DDS hops. Demo bag at 2 Hz (well below the "
        f"peak, so no queueing), 3 runs of 15 s, `python scripts/bench_node.py overhead`, {machine_description()}.\n\n"
        "| transport | model ms (p50) | overhead ms (p50) | overhead ms (p95) | overhead / model | missed/sent |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def overload(folder: Path, seconds: float) -> str:
    bag = demo_bag(folder)
    opts = BenchOptions(
        bag=str(bag), rates=(30.0,), duration=seconds, runs=1, overrides=BASE, warmup_s=5.0
    )
    report = run_bench(opts)
    write_json(DOCS / "results" / "overload.json", report, relative_to=ROOT)
    r = next(iter(per_rate(report).values()))
    figure = plot_rss({30.0: r}, DOCS / "figures", prefix="overload_rss")
    command = "python scripts/bench_node.py overload" + (
        f" --seconds {seconds:g}" if seconds != DEFAULT_OVERLOAD_S else ""
    )
    return (
        f"Overload: 30 Hz input for {seconds / 60:.0f} min into the node (which sustains less), newest "
        f"frame wins. `{command}`, {machine_description()}.\n\n"
        f"- latency p50 {r['LATENCY_P50']:.0f} ms, p99 {r['LATENCY_P99']:.0f} ms: **p99/p50 = "
        f"{r['LATENCY_P99'] / r['LATENCY_P50']:.2f}** (target <= 1.5), max {r['LATENCY_MAX']:.0f} ms\n"
        f"- output {r['RECEIVED_RATE_HZ']:.1f} Hz of {r['SENT_RATE_HZ']:.1f} Hz sent; frames dropped by the "
        f"newest-frame policy: {r['NUM_MISSED_FRAMES']} of {r['NUM_FRAMES_SENT']}\n"
        f"- node RSS max {r['NODE_RSS_MAX_MB']:.0f} MB, growth over the run **{r['NODE_RSS_GROWTH_MB']:+.1f} MB**; "
        f"node CPU {r['NODE_CPU_MEAN_PERCENT']:.0f}% (of one core)\n" + _rss_trend_line(r, figure)
    )


def _rss_trend_line(r: dict, figure: list[Path]) -> str:
    """The RSS slope of each half of the run (absent for runs under four minutes)."""
    first = r.get("NODE_RSS_SLOPE_FIRST_HALF_MB_PER_H")
    last = r.get("NODE_RSS_SLOPE_LAST_HALF_MB_PER_H")
    if first is None or last is None:
        return ""
    link = f" ([figure](figures/{figure[0].name}))" if figure else ""
    return (
        f"- RSS slope (per-minute medians, least squares): first half {first:+.1f} MB/h, "
        f"**last half {last:+.1f} MB/h**{link}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("what", choices=["replay", "overhead", "overload"])
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_OVERLOAD_S, help="overload duration"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.what == "replay":
            update_section(DOCS / "benchmarks.md", "replay", replay(Path(tmp)))
        elif args.what == "overhead":
            update_section(DOCS / "benchmarks.md", "node_overhead", overhead(Path(tmp)))
        else:
            update_section(DOCS / "benchmarks.md", "overload", overload(Path(tmp), args.seconds))


if __name__ == "__main__":
    main()
