"""Executors stop in order: callbacks still running at shutdown finish and leave no stray error."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs")

from node_harness import wait_for  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ranksam_ros.bench.bags import COMPRESSED, BagFrames  # noqa: E402
from ranksam_ros.bench.replay import BenchNode  # noqa: E402
from ranksam_ros.ros.executor import SpinningExecutor  # noqa: E402

UNRETRIEVED = "never retrieved"  # rclpy's print when a failed callback's error is never read


class _Gate:
    """A callback that counts its calls and blocks until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entered = 0
        self.finished = 0
        self.release = threading.Event()

    def __call__(self, *_args) -> None:
        with self.lock:
            self.entered += 1
        self.release.wait(timeout=30)
        with self.lock:
            self.finished += 1


def _publish_until(publisher, msg, condition) -> bool:
    return wait_for(lambda: publisher.publish(msg) or condition(), timeout=20)


def _busy_pool(executor, context) -> tuple[_Gate, Node]:
    """Block both callback threads of ``executor`` and leave one more handler queued.

    A reentrant subscription runs a blocking callback per message: two occupy the two
    threads, the next message's handler waits in the pool's queue. At shutdown that queued
    handler still has to run and signal the executor's guard condition.
    """
    gate = _Gate()
    listener = Node("gated_listener", context=context)
    listener.create_subscription(String, "/gate", gate, 10, callback_group=ReentrantCallbackGroup())
    executor.add_node(listener)
    talker = Node("gate_talker", context=context)
    publisher = talker.create_publisher(String, "/gate", 10)
    assert _publish_until(publisher, String(data="x"), lambda: gate.entered >= 2)
    for _ in range(3):
        publisher.publish(String(data="queued"))
    talker.destroy_node()
    return gate, listener


def _stop_while_busy(stop, gate: _Gate) -> None:
    """Call ``stop`` while callbacks block, then let them finish."""
    stopper = threading.Thread(target=stop)
    stopper.start()
    stopper.join(timeout=2.0)  # a stop() that does not wait for callbacks has returned by now
    assert gate.finished == 0
    gate.release.set()
    stopper.join(timeout=30)
    assert not stopper.is_alive()


def _unretrieved_errors(capsys) -> list[str]:
    gc.collect()  # rclpy prints an unread callback error when its handler is collected
    return [line for line in capsys.readouterr().err.splitlines() if UNRETRIEVED in line]


def test_stop_waits_for_running_and_queued_callbacks(ros_context, capsys):
    executor = SpinningExecutor(2, context=ros_context)
    executor.start()
    gate, listener = _busy_pool(executor, ros_context)
    _stop_while_busy(executor.stop, gate)
    assert gate.finished == gate.entered >= 3  # the queued handler ran too, before shutdown
    assert executor.callback_errors == 0 and not executor.is_spinning()
    listener.destroy_node()
    del executor
    assert _unretrieved_errors(capsys) == []


def test_a_failing_callback_is_counted_and_its_error_read(ros_context, capsys):
    failed = threading.Event()

    def explode(_msg) -> None:
        failed.set()
        raise ValueError("boom in a callback")

    node = Node("failing_listener", context=ros_context)
    node.create_subscription(String, "/explode", explode, 10)
    publisher = node.create_publisher(String, "/explode", 10)
    executor = SpinningExecutor(2, context=ros_context)
    executor.add_node(node)
    executor.start()
    assert _publish_until(publisher, String(data="x"), failed.is_set)
    executor.stop()
    assert executor.callback_errors >= 1
    node.destroy_node()
    del executor
    assert _unretrieved_errors(capsys) == []


def test_bench_node_closes_while_callbacks_run(ros_context, capsys):
    """The demo's and the benchmark's close(): once printed 'cannot use Destroyable ...'."""
    frames = BagFrames(Path("unused.mcap"), "/image/compressed", COMPRESSED, raw=[b""])
    bench = BenchNode(frames, "/image/compressed", "/ranksam/masks")
    gate, listener = _busy_pool(bench.executor, bench.context)
    _stop_while_busy(bench.close, gate)
    assert gate.finished == gate.entered >= 3
    del bench, listener
    assert _unretrieved_errors(capsys) == []
