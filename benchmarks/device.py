"""This machine as a benchmark device: who it is (CPU model, cores, ISA features, GPU, runtime
versions) and what it can do at most (measured FP32 and INT8 GEMM rates and copy bandwidth), the
peaks that a model's share of peak compute and the roofline estimates are measured against.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

# CPU flags that decide INT8 / BF16 speed (Linux names from /proc/cpuinfo)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm")
RUNTIME_PACKAGES = ("torch", "onnxruntime", "openvino", "nncf", "ai-edge-litert", "executorch", "ncnn", "tensorrt")
PEAKS_VERSION = 1


def cpu_info(text: str | None = None) -> dict:
    """CPU model, logical and physical cores and ISA features, from /proc/cpuinfo (or `text`)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            text = ""
    fields: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    physical = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("model name", "flags", "Features", "Hardware") and key not in fields:
            fields[key] = value
        physical = value if key == "physical id" else physical
        if key == "core id":
            cores.add((physical, value))
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    logical = os.cpu_count() or 1
    return {"model": fields.get("model name") or fields.get("Hardware") or platform.processor() or platform.machine(),
            "arch": platform.machine(), "logical_cores": logical, "physical_cores": len(cores) or logical,
            "isa": [f for f in ISA_FLAGS if f in flags], "cache_mb": last_level_cache_mb()}


def last_level_cache_mb(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> float:
    """Size of the largest CPU cache level (Linux sysfs), 0 when unknown."""
    best = 0.0
    for index in root.glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0}.get(text[-1:], 1 / 2 ** 20)
        best = max(best, float(text.rstrip("KMG")) * scale)
    return best


def gpu_info() -> list[dict]:
    """NVIDIA GPUs (name, driver, memory) from nvidia-smi; empty without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [dict(zip(("name", "driver", "memory"), (p.strip() for p in line.split(",")))) for line in out.splitlines() if line]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in RUNTIME_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def identity() -> dict:
    """This machine as a device: a stable id (CPU model, cores, GPUs) plus what was installed."""
    cpu, gpus = cpu_info(), gpu_info()
    key = json.dumps([cpu["model"], cpu["logical_cores"], [g["name"] for g in gpus]])
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    name = f"{cpu['model']} ({cpu['logical_cores']} threads)" + "".join(f" + {g['name']}" for g in gpus)
    return {"id": f"local-{digest}", "name": name, "kind": "cpu", "host": platform.node(), "os": platform.platform(),
            "python": platform.python_version(), "cpu": cpu, "gpus": gpus, "packages": package_versions()}


def _rate(fn, work: float, min_time_s: float) -> float:
    """Best rate (work per second) of `fn` over repeated calls lasting at least `min_time_s`."""
    fn()
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < min_time_s:
        t = time.perf_counter()
        fn()
        best = max(best, work / (time.perf_counter() - t))
    return best


def measure_peaks(n: int = 1024, min_time_s: float = 1.0) -> dict:
    """FP32 GEMM (PyTorch), INT8 GEMM (ONNX Runtime MatMulInteger, u8 x s8) and copy bandwidth (NumPy)."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    a, b = torch.randn(n, n), torch.randn(n, n)
    fp32 = _rate(lambda: torch.mm(a, b), 2 * n ** 3, min_time_s)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                               helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    int8 = _rate(lambda: session.run(None, feeds), 2 * n ** 3, min_time_s)
    src = np.ones(32 * 2 ** 20, np.float32)  # 128 MB, well past any cache
    dst = np.empty_like(src)
    copy = _rate(lambda: np.copyto(dst, src), 2 * src.nbytes, min_time_s)  # read + write
    return {"version": PEAKS_VERSION, "fp32_gflops": round(fp32 / 1e9, 1), "int8_gops": round(int8 / 1e9, 1),
            "memory_gbps": round(copy / 1e9, 2), "threads": torch.get_num_threads(), "gemm_size": n,
            "onnx": onnx.__version__, "measured_at": time.time()}


def local_device(cache_dir: Path | None = None, *, remeasure: bool = False) -> dict:
    """identity() plus measured peaks, cached per device id in `cache_dir` (peaks take a few seconds)."""
    device = identity()
    cache = cache_dir / f"{device['id']}.json" if cache_dir else None
    peaks = None
    if cache and cache.is_file() and not remeasure:
        try:
            peaks = json.loads(cache.read_text()).get("peaks")
        except (OSError, json.JSONDecodeError):
            peaks = None
    if not peaks or peaks.get("version") != PEAKS_VERSION:
        peaks = measure_peaks()
        if cache:
            from factory.workspace import atomic_write_json

            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cache, {**device, "peaks": peaks})
    return {**device, "peaks": peaks}
