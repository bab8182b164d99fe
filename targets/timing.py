"""A quick batch-1 latency probe used by the export driver's "INT8 must be faster" check.

The full measuring harness (percentiles, throughput, memory) lives in benchmarks/.
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import numpy as np
from torch import nn

from targets.base import ExportRequest, Runner, Target


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


def fp32_latency_ms(target: Target, model: nn.Module, meta: dict, folder: Path, device: str = "cpu") -> float | None:
    """Export `model` at fp32 to `target` into `folder`, load it with the target's runtime and time it
    at batch 1 on zeros; None when the artifact cannot run here."""
    result = target.export(copy.deepcopy(model).eval(), meta, folder, ExportRequest("fp32", device))
    if not result.runnable:
        return None
    runner = target.load(folder, {**meta, "precision": "fp32"}, device)
    return median_latency_ms(runner, np.zeros((1, *meta["input_size"]), np.float32))
