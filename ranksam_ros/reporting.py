"""Writing measured results into the docs: marked Markdown sections and machine descriptions."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

from ranksam_ros.config import TRAIN_SEVERITIES


def adapter_results_name(prompts: str, severities: tuple[int, ...], tag: str = "") -> str:
    """Section name and JSON stem of the adapter table of one evaluation protocol.

    ``adapters`` for box prompts at the training severities; ``_point`` marks one click per
    segment, ``_s45`` (the severities' digits) other severities and ``_<tag>`` another model
    (``_conv``), so the tables of several protocols sit side by side in docs/results.md and
    docs/results/.
    """
    name = "adapters" if prompts == "box" else f"adapters_{prompts}"
    if tuple(severities) != TRAIN_SEVERITIES:
        name += "_s" + "".join(map(str, severities))
    return f"{name}_{tag}" if tag else name


def update_section(path: str | Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``.

    The section is appended if the markers are missing, so scripts can regenerate their part
    of a document without touching the prose around it.
    """
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"))


def machine_description() -> str:
    """One line: CPU model, cores, memory, OS, Python (for benchmark tables)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores{memory}, {system}, Python {platform.python_version()}"


def git_revision() -> str:
    """Short commit hash of the working tree ('unknown' outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def portable_paths(data, root: Path):
    """``data`` with machine-specific paths rewritten for committing.

    Files under ``root`` become relative to it, files in folders beside it (the dataset
    checked out next to the repository) ``../``-relative, files in the temporary directory
    their bare name; other strings (topics such as ``/camera/image_raw``) are unchanged.
    """
    if isinstance(data, dict):
        return {key: portable_paths(value, root) for key, value in data.items()}
    if isinstance(data, list):
        return [portable_paths(value, root) for value in data]
    if isinstance(data, str) and data.startswith("/"):
        path = Path(data)
        if path.is_relative_to(root):
            return str(path.relative_to(root))
        if root.parent != Path(root.anchor) and path.is_relative_to(root.parent):
            return str(Path("..") / path.relative_to(root.parent))
        if path.is_relative_to(tempfile.gettempdir()):
            return path.name
    return data


def write_json(path: str | Path, data: dict, relative_to: Path | None = None) -> None:
    """Pretty JSON with a trailing newline (parents created).

    Args:
        path: Output file.
        data: JSON-serialisable report.
        relative_to: Repository root for reports committed to the docs: paths in ``data``
            are then made portable (see :func:`portable_paths`).
    """
    path = Path(path)
    if relative_to is not None:
        data = portable_paths(data, Path(relative_to))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out, write (parents created) and close a matplotlib figure; returns ``path``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
