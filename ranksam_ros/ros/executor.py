"""A multi-threaded rclpy executor that spins in its own thread and stops in order.

rclpy's ``MultiThreadedExecutor`` hands every ready callback to a thread pool it never joins,
and its ``shutdown()`` (rclpy 7.1) does not wait for them: it destroys the executor's guard
condition while handlers still queued or running in the pool trigger it when they finish.
Those handlers then fail with "cannot use Destroyable because destruction was requested", and
as spinning has stopped nobody reads the error: rclpy prints "The following exception was never
retrieved" when the handler is garbage-collected (the line that ended ``ranksam demo``).

:class:`SpinningExecutor` owns its pool: :meth:`SpinningExecutor.stop` ends the spin loop, waits
for every dispatched callback, logs and counts the callbacks that raised, and only then shuts
the executor down. Only public rclpy API is used (``wait_for_ready_callbacks`` is the documented
hook for custom executors), so it runs on Humble and Jazzy alike.
"""

from __future__ import annotations

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor

from rclpy.context import Context
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    ShutdownException,
    TimeoutException,
)
from rclpy.logging import get_logger
from rclpy.task import Future, Task

# Longest wait for work per spin step: how soon the loop notices stop() or a dead context.
SPIN_STEP_S = 0.1


class SpinningExecutor(Executor):
    """Runs callbacks on ``num_threads`` pool threads, spun from a background thread.

    Args:
        num_threads: Callbacks that may run at once.
        context: The rclpy context (default: the global one).
        name: Prefix of the thread names (shows in stack dumps).
    """

    def __init__(
        self, num_threads: int = 2, *, context: Context | None = None, name: str = "ros-spin"
    ) -> None:
        super().__init__(context=context)
        self._name = name
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix=f"{name}-callback")
        # Keyed by id: rclpy yields a queued, not yet started handler again on the next wait.
        self._dispatched: dict[int, Task] = {}
        self._dispatched_lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self.callback_errors = 0

    # Spinning ---------------------------------------------------------------------------------
    def spin_once(self, timeout_sec: float | None = None) -> None:
        """Wait for one ready callback and hand it to the pool."""
        try:
            handler, _, _ = self.wait_for_ready_callbacks(timeout_sec)
        except (ShutdownException, ExternalShutdownException, TimeoutException):
            return
        with self._dispatched_lock:
            self._dispatched[id(handler)] = handler
        self._pool.submit(handler)
        self._collect(only_done=True)

    def spin_once_until_future_complete(
        self, future: Future, timeout_sec: float | None = None
    ) -> None:
        future.add_done_callback(lambda _: self.wake())
        self.spin_once(timeout_sec)

    def start(self) -> None:
        """Spin in a background thread until :meth:`stop` (or the context shuts down)."""
        if self._thread is not None:
            raise RuntimeError("the executor is already spinning")
        self._thread = threading.Thread(target=self._spin_until_stopped, name=self._name)
        self._thread.daemon = True
        self._thread.start()

    def is_spinning(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the spin thread to end (it ends on :meth:`stop` or context shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout_sec: float = 30.0) -> bool:
        """Stop spinning, wait for running callbacks, then shut down.

        Returns:
            True when the spin thread ended within ``timeout_sec``. The executor is shut down
            either way, but without that the running callbacks are not waited for.
        """
        self._stop_requested.set()
        self.wake()
        self.join(timeout_sec)
        stopped = not self.is_spinning()
        # Nothing is dispatched any more: let every handler finish (each triggers the guard
        # condition that shutdown() destroys), then read their errors.
        self._pool.shutdown(wait=stopped)
        self._collect(only_done=False)
        self.shutdown()
        return stopped

    def _spin_until_stopped(self) -> None:
        while not self._stop_requested.is_set() and self.context.ok():
            self.spin_once(SPIN_STEP_S)

    # Errors of callbacks ------------------------------------------------------------------------
    def _collect(self, only_done: bool) -> None:
        """Read the outcome of finished handlers so no error goes unseen."""
        finished, pending = [], {}
        with self._dispatched_lock:
            for key, handler in self._dispatched.items():
                if handler.done() or not only_done:
                    finished.append(handler)
                else:
                    pending[key] = handler
            self._dispatched = pending
        for handler in finished:
            error = handler.exception() if handler.done() else None
            if error is not None:
                self.callback_errors += 1
                trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
                get_logger(self._name).error(f"a callback raised {type(error).__name__}: {trace}")
