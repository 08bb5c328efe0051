"""The node under test as a separate process: start, parameters, log, CPU/RSS sampling, stop.

The benchmark runs the real console entry (``python -m ranksam_ros.ros.main``) in its own
process, exactly as on a robot, with ``benchmark_mode:=true`` and the Fast DDS large-frame
profile. ``psutil`` samples the process (and any children) at about 10 Hz.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ranksam_ros.config_loader import from_dict, load_yaml, parse_override, set_dotted
from ranksam_ros.node_config import NodeConfig

PROFILE_NAME = "fastdds_large_frames.xml"
PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"
NODE_NAMES = ("ranksam_ros.ros.main", "ranksam_node")
_LOADED = re.compile(r"loaded (\S+) \((\S+)\) in ([0-9.]+) s")


def fastdds_profile() -> Path | None:
    """The shipped large-frame profile: the repository's ``config/`` or the install share."""
    candidates = [
        Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME,
        Path(sys.prefix) / "share" / "ranksam_ros" / "config" / PROFILE_NAME,
    ]
    return next((p for p in candidates if p.is_file()), None)


def params_from_file(path: str | Path) -> dict[str, Any]:
    """Dotted parameters of a ROS params file (``/**`` and ``ranksam`` sections, in that order)."""
    data = load_yaml(path)
    values: dict[str, Any] = {}
    for section in ("/**", "ranksam", "/ranksam"):
        params = (data.get(section) or {}).get("ros__parameters") or {}
        values.update(_flatten(params))
    return values


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def node_parameters(params_file: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """Dotted parameters from a params file then ``key=value`` overrides (later wins)."""
    values = params_from_file(params_file) if params_file else {}
    for text in overrides:
        key, value = parse_override(text)
        values[key] = value
    return values


def node_config(values: dict[str, Any]) -> NodeConfig:
    """Validate dotted parameters as the node would (ValueError names the bad field)."""
    data: dict[str, Any] = {}
    for key, value in values.items():
        set_dotted(data, key, value)
    return from_dict(NodeConfig, data)


def ros_value(value: Any) -> str:
    """A parameter value as written after ``-p key:=`` (YAML, like the params file)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(ros_value(v) for v in value) + "]"
    return str(value)


class NodeProcess:
    """The ``ranksam`` node started as a child process.

    Args:
        params_file: Optional ROS params file given to the node.
        parameters: Dotted parameters set with ``-p`` (they override the file).
        log_path: File receiving the node's stdout and stderr.
        fastdds_profile: Profile for ``FASTRTPS_DEFAULT_PROFILES_FILE`` (None = leave env).
    """

    def __init__(
        self,
        params_file: str | Path | None,
        parameters: dict[str, Any],
        log_path: str | Path,
        fastdds_profile: Path | None = None,
    ) -> None:
        self.params_file = params_file
        self.parameters = parameters
        self.log_path = Path(log_path)
        self.profile = fastdds_profile
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "ranksam_ros.ros.main", "--ros-args"]
        if self.params_file:
            argv += ["--params-file", str(self.params_file)]
        for key, value in self.parameters.items():
            argv += ["-p", f"{key}:={ros_value(value)}"]
        return argv

    def start(self) -> None:
        """Launch the node (its clock for the cold start starts here)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.profile is not None:
            env[PROFILE_ENV] = str(self.profile)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exit_code(self) -> int | None:
        """None while running."""
        return self.proc.poll() if self.proc is not None else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def model_load(self) -> dict | None:
        """``{"model_id", "backend", "seconds"}`` from the node's "loaded ..." log line."""
        match = _LOADED.search(self.log_text())
        if match is None:
            return None
        return {"model_id": match[1], "backend": match[2], "seconds": float(match[3])}

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (clean lifecycle shutdown), then SIGTERM, then SIGKILL; returns the code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.exit_code()
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return self.exit_code()


def find_node_pid() -> int | None:
    """PID of the one running ``ranksam`` node process (for ``--attach``), else None."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.info["pid"] != os.getpid() and any(name in cmdline for name in NODE_NAMES):
            found.append(proc.info["pid"])
    return found[0] if len(found) == 1 else None


class ResourceSampler:
    """Samples CPU % (100 = one core) and RSS of a process tree in a background thread.

    Args:
        pid: The process to watch.
        period_s: Sampling period (0.1 s = 10 Hz).
    """

    def __init__(self, pid: int, period_s: float = 0.1) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.period = period_s
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._known: dict[int, Any] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def window(self, start: float, end: float) -> list[tuple[float, float, float]]:
        """Samples taken between two ``time.monotonic()`` values."""
        return [s for s in list(self.samples) if start <= s[0] <= end]

    def _tree(self) -> list:
        import psutil

        procs = [self.process]
        try:
            procs += self.process.children(recursive=True)
        except psutil.Error:
            pass
        for proc in procs:  # cpu_percent needs the same Process object between calls
            self._known.setdefault(proc.pid, proc)
        return [self._known[p.pid] for p in procs]

    def _sample(self) -> tuple[float, float] | None:
        import psutil

        cpu = rss = 0.0
        try:
            for proc in self._tree():
                cpu += proc.cpu_percent(interval=None)
                rss += proc.memory_info().rss
        except psutil.Error:
            return None
        return cpu, rss

    def _run(self) -> None:
        self._sample()  # the first cpu_percent call only sets the reference
        while not self._stop.wait(self.period):
            sample = self._sample()
            if sample is None:
                return
            self.samples.append((time.monotonic(), *sample))
