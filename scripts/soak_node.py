"""Fuzz/soak the node across processes: 10,000 malformed camera messages, then valid frames.

    python scripts/soak_node.py                       # camvid-tiny, 10,000 messages
    python scripts/soak_node.py --count 500 --model <model dir>

The node runs as a separate process (reliable input, deep queue, so every message reaches it).
Malformed raw Images are published in bursts, malformed CompressedImages paced so the worker
decodes each; afterwards valid frames must still come out. Pass criteria: the node process is
alive, its diagnostics count every malformed message (bad_input + dropped = sent; raw ones all
as bad_input), and every valid frame after the storm is answered. Writes
docs/results/soak.json and the `soak` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from ranksam_msgs.msg import SegmentationMasks
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ranksam_ros.bench.fuzz import malformed_stream
from ranksam_ros.bench.node_process import NodeProcess, fastdds_profile
from ranksam_ros.data.folder import BUNDLED_FRAMES, read_rgb
from ranksam_ros.reporting import machine_description, update_section, write_json
from ranksam_ros.ros.conversions import rgb_to_image

ROOT = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


class Peer:
    """Publisher, output counter and diagnostics reader in this process."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("soak_peer", context=self.context)
        self.raw = self.node.create_publisher(Image, "/image", RELIABLE)
        self.compressed = self.node.create_publisher(CompressedImage, "/image/compressed", RELIABLE)
        self.outputs: list[int] = []
        self.next_stamp = 10_000
        self.node.create_subscription(
            SegmentationMasks,
            "/ranksam/masks",
            lambda m: self.outputs.append(m.header.stamp.sec),
            100,
        )
        self.diag: dict[str, str] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("ranksam:"):
                self.diag = {kv.key: kv.value for kv in status.values}

    def counter(self, key: str) -> int:
        return int(self.diag.get(key, "0"))

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=10)
        self.node.destroy_node()
        self.context.try_shutdown()


def wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def storm(peer: Peer, count: int, compressed: bool, seed: int, alive) -> int:
    """Publish malformed messages, waiting for the node to keep up every 50 (or each one).

    Stops at the first wait that times out or when ``alive()`` turns false: the pacing target
    is cumulative, so one lost count would otherwise make every later wait time out too.

    Returns:
        How many waits ran into their 60 s timeout (0 when the node kept up).
    """
    publisher = peer.compressed if compressed else peer.raw
    # Pace on messages the node has finished with in any way (rejected, replaced, processed):
    # a malformed message that slipped through as a valid frame then fails the pass criteria
    # instead of stalling every later wait. ``received`` also counts the valid warm-up frames,
    # so each counter is compared against its own value at the start.
    finished_start, received_start = finished(peer), peer.counter("received")
    for sent, (_, msg) in enumerate(malformed_stream(count, compressed, seed), start=1):
        publisher.publish(msg)
        if compressed or sent % 50 == 0:  # stay within the node's queue depth of 100
            if not wait(lambda n=sent: finished(peer) >= finished_start + n or not alive(), 60):
                return 1
            if not alive():
                return 0
    return int(not wait(lambda: peer.counter("received") >= received_start + count, 60))


def finished(peer: Peer) -> int:
    """Input messages the node is done with: rejected, replaced unseen, or processed."""
    return sum(
        peer.counter(key) for key in ("bad_input", "dropped", "processed", "stale", "errors")
    )


def valid_frames(peer: Peer, frames: int, compressed: bool) -> int:
    """Send ``frames`` valid frames one at a time; return how many were answered."""
    import io

    from PIL import Image as PILImage

    answered = 0
    for index in range(frames):
        rgb = read_rgb(sorted((BUNDLED_FRAMES / "images").iterdir())[index % 10])
        header = Header(frame_id="camera")
        # A stamp never used before: a warm-up frame's output must not answer a later frame.
        stamp = peer.next_stamp = peer.next_stamp + 1
        header.stamp.sec = stamp
        if compressed:
            buffer = io.BytesIO()
            PILImage.fromarray(rgb).save(buffer, format="JPEG", quality=90)
            peer.compressed.publish(
                CompressedImage(header=header, format="jpeg", data=buffer.getvalue())
            )
        else:
            peer.raw.publish(rgb_to_image(rgb, header))
        answered += wait(lambda s=stamp: s in peer.outputs, 60)
    return answered


def run_phase(args, compressed: bool, workdir: Path) -> dict:
    transport = "compressed" if compressed else "raw"
    params = {
        "model": args.model,
        "adapter": args.adapter,
        "threads": 2,
        "input.transport": transport,
        "input.reliability": "reliable",
        "input.depth": 100,
        "diagnostics_period_s": 0.2,
    }
    node = NodeProcess(None, params, workdir / f"node_{transport}.log", fastdds_profile())
    peer = Peer()
    node.start()
    try:
        if not wait(lambda: peer.diag or node.exit_code() is not None, 180) or not peer.diag:
            raise RuntimeError(f"node did not come up:\n{node.log_tail()}")
        process = psutil.Process(node.pid)
        warm = valid_frames(peer, 2, compressed)
        # The storm paces on diagnostics counts: start from counts that include the warm-up.
        wait(lambda: peer.counter("processed") >= warm, 10)
        rss_before = process.memory_info().rss
        started = time.monotonic()
        timeouts = storm(peer, args.count, compressed, args.seed, lambda: node.exit_code() is None)
        storm_s = time.monotonic() - started
        answered = valid_frames(peer, args.valid, compressed)
        wait(lambda: peer.counter("processed") >= warm + answered, 10)
        return {
            "transport": transport,
            "malformed_sent": args.count,
            "storm_timeouts": timeouts,
            "storm_seconds": round(storm_s, 1),
            "received": peer.counter("received"),
            "bad_input": peer.counter("bad_input"),
            "dropped": peer.counter("dropped"),
            "errors": peer.counter("errors"),
            "processed": peer.counter("processed"),
            "warm_answered": warm,
            "valid_sent": args.valid,
            "valid_answered": answered,
            "alive": node.exit_code() is None,
            "rss_mb_before": round(rss_before / 2**20, 1),
            "rss_mb_after": round(process.memory_info().rss / 2**20, 1),
        }
    finally:
        peer.close()
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--count", type=int, default=10_000, help="malformed messages in all")
    parser.add_argument("--valid", type=int, default=5)
    parser.add_argument("--model", default="camvid-tiny")
    parser.add_argument("--adapter", default="none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args()
    raw_count = args.count * 4 // 5
    with tempfile.TemporaryDirectory() as tmp:
        phases = []
        for compressed, count in ((False, raw_count), (True, args.count - raw_count)):
            phase_args = argparse.Namespace(**{**vars(args), "count": count})
            phases.append(run_phase(phase_args, compressed, Path(tmp)))
    ok = all(
        p["alive"]
        and p["storm_timeouts"] == 0
        and p["valid_answered"] == p["valid_sent"]
        and p["errors"] == 0
        and p["bad_input"] + p["dropped"] >= p["malformed_sent"]
        # Only the valid frames were processed: no malformed message passed as a frame.
        and p["processed"] == p["warm_answered"] + p["valid_answered"]
        and (p["transport"] != "raw" or p["bad_input"] == p["malformed_sent"])
        for p in phases
    )
    report = {"machine": machine_description(), "model": args.model, "phases": phases, "passed": ok}
    write_json(Path(args.docs) / "results" / "soak.json", report, relative_to=ROOT)
    rows = [
        "| input | malformed sent | counted bad | dropped (newest wins) | errors | valid frames answered | node alive | RSS MB before -> after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        rows.append(
            f"| {p['transport']} | {p['malformed_sent']} | {p['bad_input']} | {p['dropped']} | {p['errors']} | "
            f"{p['valid_answered']}/{p['valid_sent']} | {'yes' if p['alive'] else 'NO'} | {p['rss_mb_before']} -> {p['rss_mb_after']} |"
        )
    body = (
        f"Fuzz/soak: `python scripts/soak_node.py` ({args.count} malformed messages: wrong encodings, step and "
        "size mismatches, truncated data, zero and huge dimensions, corrupt/truncated JPEG and PNG, a PNG "
        f"header claiming 60000x60000) into the node as a separate process, model `{args.model}`, on "
        f"{machine_description()}. Result: **{'pass' if ok else 'FAIL'}**.\n\n"
        + "\n".join(rows)
        + "\n"
    )
    update_section(Path(args.docs) / "benchmarks.md", "soak", body)
    print(body)


if __name__ == "__main__":
    main()
