"""Timing helpers for benchmark scripts: warm-ups, medians, CPU utilisation, interleaving."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Wall-clock samples of one measured call (seconds) and the process CPU share."""

    name: str
    samples: list[float] = field(default_factory=list)
    cpu_per_wall: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)

    def as_dict(self) -> dict:
        return {
            "median_s": self.median,
            "min_s": self.minimum,
            "runs": len(self.samples),
            "samples_s": [round(s, 6) for s in self.samples],
            "cpu_per_wall": round(statistics.median(self.cpu_per_wall), 2),
        }


def measure_once(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds of one call and process CPU-seconds per wall-second (2.0 = both cores)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu / max(wall, 1e-9)


def interleaved(
    calls: dict[str, Callable[[], object]], runs: int = 5, warmup: int = 2
) -> dict[str, Timing]:
    """Time several calls side by side: warm each up, then alternate them run by run.

    Alternating spreads slow phases of a shared machine over every candidate, so their
    ratio is fair even when absolute numbers drift.
    """
    results = {name: Timing(name) for name in calls}
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    for _ in range(runs):
        for name, fn in calls.items():
            wall, share = measure_once(fn)
            results[name].samples.append(wall)
            results[name].cpu_per_wall.append(share)
    return results
