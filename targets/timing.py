"""A quick batch-1 latency probe used by the export driver's "INT8 must be faster" check.

The full measuring harness (percentiles, throughput, memory) lives in benchmarks/.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from targets.base import Runner


def median_latency_ms(runner: Runner, x: np.ndarray, *, warmup: int = 5, min_iters: int = 20, min_time_s: float = 0.5) -> float:
    for _ in range(warmup):
        runner(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= 2000:
            break
    return statistics.median(times)
