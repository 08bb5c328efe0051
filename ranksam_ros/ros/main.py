"""``ranksam_node``'s process: start rclpy, run the node, stop it in order on a signal.

The node itself (``ros/node.py``) only knows its lifecycle; this module owns what a process
owns: argument handling, signal handlers, the spinning executor, autostart and the exit code.

    python -m ranksam_ros.ros.main --ros-args -p model:=camvid-conv
"""

from __future__ import annotations

import signal
import sys
import time

import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from ranksam_ros.ros.executor import SpinningExecutor
from ranksam_ros.ros.node import RankSamNode


def main(args: list[str] | None = None) -> int:
    """Console script ``ranksam_node`` (``--no-autostart`` leaves it unconfigured).

    Ctrl-C or SIGTERM stops it: the lifecycle shutdown releases everything, the executor
    waits for running callbacks, then the node and rclpy go. A second signal interrupts a
    configure still loading the model.

    Returns:
        0 after a clean stop; 1 when autostart's configure or activate failed, or when the
        shutdown could not release everything (the reason is logged either way).
    """
    argv = list(sys.argv if args is None else args)
    autostart = "--no-autostart" not in argv
    argv = [a for a in argv if a not in ("--autostart", "--no-autostart")]
    # rclpy's own SIGINT/SIGTERM handlers shut the context down at once, under callbacks that
    # are still publishing; ours only ask the main loop to stop, which then stops in order.
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    node = RankSamNode()
    executor = SpinningExecutor(num_threads=2, name="ranksam-spin")
    executor.add_node(node)
    code = 0
    try:
        executor.start()
        code = run_autostart(node) if autostart else 0
        while code == 0 and not stop.requested and executor.is_spinning():
            time.sleep(0.2)
    except KeyboardInterrupt:  # a second signal: stop now (e.g. during a slow configure)
        pass
    finally:
        code = max(code, shut_down(node, executor))
        rclpy.try_shutdown()
    return code


class StopRequest:
    """Signal handler: the first SIGINT/SIGTERM asks to stop, a second one interrupts.

    The first only sets a flag the main loop polls. Raising KeyboardInterrupt at an arbitrary
    point of the main thread instead could land inside ``Thread.join`` and mark the spinning
    thread as ended while it still waits in rcl (Python 3.11): the context would then be
    shut down under it and the process abort ("terminate called without an active
    exception").
    """

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def run_autostart(node: RankSamNode) -> int:
    """Configure, then activate ``node``.

    Returns:
        0 when both succeeded, else 1 (the failed transition is logged).
    """
    for name, trigger in (
        ("configure", node.trigger_configure),
        ("activate", node.trigger_activate),
    ):
        result = trigger()
        if result != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal(
                f"autostart: {name} returned {result.name} (see the error above); exiting"
            )
            return 1
    return 0


def shut_down(node: RankSamNode, executor: SpinningExecutor) -> int:
    """Lifecycle shutdown, then stop the executor (spinning ``node``) and destroy the node.

    Returns:
        0, or 1 when the node could not release everything (logged by the node).
    """
    code = 0
    try:
        if node.trigger_shutdown() != TransitionCallbackReturn.SUCCESS:
            code = 1
    except RuntimeError as exc:  # rclpy's RCLError: interrupted in the middle of a transition
        node.get_logger().warn(f"no shutdown transition ({exc}): releasing directly")
        code = 1 if node._release() else 0
    finally:
        executor.stop()
        node.destroy_node()
    return code


if __name__ == "__main__":
    sys.exit(main())
