"""What every benchmark script shares: peak memory and a timed step that prints its figures."""

from __future__ import annotations

import resource
import sys
import time


def peak_rss_mb() -> float:
    """The process's peak resident set so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def timed(label: str, func):
    """Run ``func()``, print its wall time and the peak RSS after it; return (result, seconds)."""
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    print(f"  {label:<46} {seconds:8.3f} s   peak RSS {peak_rss_mb():7.0f} MB", flush=True)
    return result, seconds
