"""``ranksam bench --record``: the node's outputs and the replayed frames as an MCAP bag.

Raw subscriptions hand over the CDR bytes, which are written unchanged; the schemas come from
the real ``ranksam_msgs`` definitions (see :mod:`ranksam_ros.bench.typestore`), so Foxglove
shows ``SegmentationMasks`` next to the label, semantic and overlay images. Recording makes
the node draw overlays (it only does while someone listens), so recorded runs are slower.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

from ranksam_ros.bench.bag_writer import bag_writer
from ranksam_ros.bench.bags import IMAGE, open_bag, topic_table
from ranksam_ros.bench.typestore import ranksam_typestore

MASKS = "ranksam_msgs/msg/SegmentationMasks"
# Image outputs beside ~/masks, and the QoS the node publishes them with ("output" = as masks).
IMAGE_OUTPUTS = {"label_image": "output", "semantic": "output", "overlay": "best_effort"}


def output_topics(masks_topic: str) -> dict[str, str]:
    """Topic -> type of everything recorded from the node, given its masks topic."""
    base = masks_topic.rsplit("/", 1)[0]
    return {masks_topic: MASKS, **{f"{base}/{name}": IMAGE for name in IMAGE_OUTPUTS}}


class BagRecorder:
    """Thread-safe writer of raw messages into one MCAP file.

    Args:
        path: Output ``.mcap`` file (or bag directory).
        input_topic: Topic of the replayed frames.
        input_type: Their message type.
        overwrite: Replace an existing bag.
    """

    def __init__(
        self, path: str | Path, input_topic: str, input_type: str, overwrite: bool = True
    ) -> None:
        self.path = Path(path)
        self.store = ranksam_typestore()
        self._stack = ExitStack()
        self._writer = self._stack.enter_context(bag_writer(self.path, "mcap", overwrite))
        self._lock = threading.Lock()
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.active = False
        self._add(input_topic, input_type)

    def _add(self, topic: str, msgtype: str) -> None:
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        self.counts[topic] = 0

    def subscribe(self, node, masks_topic: str, output_reliability: str) -> None:
        """Raw subscriptions to the node's outputs on ``node`` (called once the node is up)."""
        from ranksam_msgs.msg import SegmentationMasks
        from sensor_msgs.msg import Image

        from ranksam_ros.bench.replay import qos

        for topic, msgtype in output_topics(masks_topic).items():
            name = topic.rsplit("/", 1)[1]
            reliability = IMAGE_OUTPUTS.get(name, "output")
            reliability = output_reliability if reliability == "output" else reliability
            with self._lock:
                self._add(topic, msgtype)
            node.create_subscription(
                SegmentationMasks if msgtype == MASKS else Image,
                topic,
                lambda raw, t=topic: self.write(t, None, raw),
                qos(reliability, 10),
                raw=True,
            )

    def write(self, topic: str, time_ns: int | None, raw: bytes) -> None:
        """Write ``raw`` on ``topic`` at ``time_ns`` (now when None) while active."""
        import time

        if not self.active:
            return
        with self._lock:
            if self._writer is None:
                return
            self._writer.write(self._connections[topic], time_ns or time.time_ns(), raw)
            self.counts[topic] += 1

    def close(self) -> dict:
        """Finish the file and check that it reads back; returns the verification summary."""
        with self._lock:
            self.active = False
            self._writer = None
            self._stack.close()
        return verify_recording(self.path)


def verify_recording(path: str | Path) -> dict:
    """Read a recorded bag back: counts per topic and a deserialised ``SegmentationMasks``.

    Raises:
        ValueError: The bag has no masks message, or one does not deserialise.
    """
    store = ranksam_typestore()
    with open_bag(path) as reader:
        table = topic_table(reader)
        masks = [c for c in reader.connections if c.msgtype == MASKS]
        first = None
        for connection, _, raw in reader.messages(connections=masks):
            first = store.deserialize_cdr(raw, connection.msgtype)
            break
    if first is None:
        raise ValueError(f"recording {path} holds no {MASKS} message")
    return {
        "path": str(path),
        "topics": {topic: {"type": kind, "count": n} for topic, (kind, n) in table.items()},
        "verified": True,
        "first_masks_model_id": first.model_id,
        "first_masks_instances": len(first.instances),
    }
