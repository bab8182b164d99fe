"""The measuring harness: one artifact on one device.

Latency at batch 1 (warm-up, then calls until both a minimum count and a minimum time are reached;
p50 / p90 / p99 / mean), throughput at the best batch size the artifact accepts, model load time,
the runner's peak resident memory, size on disk, and accuracy re-measured with that runtime on the
test split. Each artifact is measured in a fresh process (spawned), so runtimes do not share thread
pools or memory and the peak memory is the runner's own.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

Clock = Callable[[], float]

WARMUP_CALLS = 10
MIN_ITERS = 50
MIN_TIME_S = 2.0
MAX_TIME_S = 30.0
THROUGHPUT_BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class Timing:
    warmup: int = WARMUP_CALLS
    min_iters: int = MIN_ITERS
    min_time_s: float = MIN_TIME_S
    max_time_s: float = MAX_TIME_S


def percentile(sorted_ms: list[float], q: float) -> float:
    """Linear-interpolated percentile (NumPy's default) of an ascending list."""
    pos = (len(sorted_ms) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def latency_stats(times_ms: list[float]) -> dict:
    ordered = sorted(times_ms)
    return {"p50": percentile(ordered, 50), "p90": percentile(ordered, 90), "p99": percentile(ordered, 99),
            "mean": sum(ordered) / len(ordered), "min": ordered[0], "max": ordered[-1], "iterations": len(ordered)}


def time_calls(call: Callable[[], object], timing: Timing = Timing(), clock: Clock = time.perf_counter) -> list[float]:
    """Milliseconds per call of `call`, after `timing.warmup` untimed calls, until at least
    `min_iters` calls and `min_time_s` seconds (and at most `max_time_s`)."""
    for _ in range(timing.warmup):
        call()
    times: list[float] = []
    start = clock()
    while True:
        t = clock()
        call()
        end = clock()
        times.append((end - t) * 1000)
        spent = end - start
        if (len(times) >= timing.min_iters and spent >= timing.min_time_s) or spent >= timing.max_time_s:
            return times


def throughput(runner: Callable[[np.ndarray], object], image: np.ndarray, batches: tuple[int, ...],
               timing: Timing = Timing()) -> dict:
    """Images per second at each batch size in `batches`; the best one, and which it was."""
    short = Timing(warmup=2, min_iters=5, min_time_s=timing.min_time_s / 2, max_time_s=timing.max_time_s / 2)
    rates = {}
    for b in batches:
        batch = np.repeat(image, b, axis=0)
        times = time_calls(lambda: runner(batch), short)
        rates[b] = b * 1000 / (sum(times) / len(times))
    best = max(rates, key=rates.get)
    return {"images_per_s": rates[best], "batch": best, "by_batch": {str(b): r for b, r in rates.items()},
            "threads": os.cpu_count(), "thread_setting": "runtime default (all cores)"}


# -- memory -----------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory() -> int | None:
    """Reset this process's peak resident set (Linux) and return the current one in kB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def peak_memory_kb() -> int | None:
    return _status_kb("VmHWM")


# -- one artifact --------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchSpec:
    home: str
    ref: str
    target: str
    precision: str
    device: str = "cpu"
    timing: Timing = Timing()
    accuracy: bool = True


def result_fields(spec: BenchSpec, row: dict, meta: dict, folder: Path | None, home: Path, *, latency: dict,
                  load_ms: float, base_kb: int | None, peak_kb: int | None) -> dict:
    """What every measurement of one artifact records beside its own numbers: which artifact, its latency, load
    time, memory, size on disk (the eager model: its weights file) and what it was made with."""
    from targets.driver import artifact_bytes

    return {"model": row["name"], "version": row["version"], "target": spec.target, "precision": spec.precision,
            "device": spec.device, "latency_ms": latency, "load_ms": load_ms,
            "memory_mb": None if base_kb is None or peak_kb is None else (peak_kb - base_kb) / 1024,
            "process_peak_mb": None if peak_kb is None else peak_kb / 1024,
            "size_mb": (artifact_bytes(folder, meta["files"]) if folder else
                        (home / row["path"] / meta["weights"]).stat().st_size) / 1e6,
            "artifact": str(folder) if folder else str(home / row["path"]), "max_drop": meta.get("max_drop"),
            "tool_versions": meta.get("tool_versions", {}), "notes": meta.get("notes", []), "measured_at": time.time()}


def error_from_dict(err: dict) -> Exception:
    """The FactoryError subclass whose code is `err['code']` (FactoryError itself when none is)."""
    from factory.errors import FactoryError

    kinds, found = [FactoryError], FactoryError
    while kinds:
        kind = kinds.pop()
        if kind.code == err["code"]:
            found = kind
        kinds.extend(kind.__subclasses__())
    return found(err["message"], fix=err.get("fix", ""), code=err["code"], details=err.get("details"))
