"""Timing statistics and a peak-RSS sampler: the measuring instruments of the bench."""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass
from types import TracebackType

import psutil  # type: ignore[import-untyped]


@dataclass(frozen=True)
class LatencyStats:
    """Latencies of repeated requests, in milliseconds; ``errors`` counts failed requests."""

    p50_ms: float
    p95_ms: float
    mean_ms: float
    samples: int
    errors: int


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples, report a real sample)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_stats(seconds: list[float], errors: int = 0) -> LatencyStats:
    values = sorted(s * 1000.0 for s in seconds)
    return LatencyStats(
        p50_ms=percentile(values, 0.50),
        p95_ms=percentile(values, 0.95),
        mean_ms=statistics.fmean(values) if values else math.nan,
        samples=len(values),
        errors=errors,
    )


@dataclass(frozen=True)
class Throughput:
    """Work done over a wall-clock interval."""

    items: int
    nbytes: int
    seconds: float
    errors: int

    @property
    def items_per_s(self) -> float:
        """NaN when nothing succeeded: zero work is no measurement, not a speed of 0."""
        return self.items / self.seconds if self.seconds > 0 and self.items else math.nan

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 and self.items else math.nan


def process_tree_rss(pid: int) -> int:
    """Resident set size of a process and all its descendants, in bytes (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


class RssSampler:
    """Samples a server's RSS every ``interval`` seconds in a thread; keeps baseline and peak.

    Used as a context manager around one operation (the 500 MB upload).
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.baseline = 0
        self.peak = 0
        self.samples = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = process_tree_rss(self._pid)
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self.baseline = process_tree_rss(self._pid)
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, process_tree_rss(self._pid))


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds`` using ``time.perf_counter``."""

    def __init__(self) -> None:
        self._start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self._start
