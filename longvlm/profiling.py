"""Memory measurement helpers used by the pipeline stats, benchmarks and tests."""

from __future__ import annotations

import resource
import sys
import threading


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class RssSampler:
    """Samples this process's resident memory every few ms in a thread while in use.

    `start_mb` is the RSS on entry, `peak_mb` the highest seen until exit. Unlike ru_maxrss it measures a
    window of time (and Linux carries ru_maxrss over from a parent process across exec).
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _now(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_mb = max(self.peak_mb, self._now())

    def __enter__(self) -> RssSampler:
        self.start_mb = self.peak_mb = self._now()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, self._now())

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb
