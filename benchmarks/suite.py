"""The project's own performance suite: side by side in one process, on the same inputs, our
artifacts against what a user would otherwise run.

Classification rows (resnet18, mobilenet_v3_small, mobilenet_v3_large at 224 px, batch 1):
PyTorch eager FP32 (the peer's starting point), plain ONNX Runtime FP32 (torch.onnx.export + a
default InferenceSession, the usual hand-made deployment), OpenVINO FP32, and ours: the OpenVINO
INT8 artifact the factory's `openvino` target writes (NNCF PTQ). Latency does not depend on the
weights' values, so the models are untrained (seeded) and calibrated on random images; accuracy
is measured by `report` on real data, not here. Rounds alternate between the runtimes so machine
noise hits them alike.

The detection row does the same for the default detector (FCOS on mobilenet_v3_small at 320 px,
the network's raw output; decoding and NMS are the same NumPy code after every runtime).

It also checks the harness itself: its p50 for a runtime call must be within 5% of a bare
perf_counter loop around the same call.

    .venv/bin/python -m benchmarks.suite [--models resnet18,...] [--size 224] [--detectors mobilenet_v3_small]
                                         [--detection-size 320] [--out FILE]
    edgefactory bench --suite
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.device import local_device
from benchmarks.harness import Timing, latency_stats, time_calls
from factory.tasks import TASKS
from targets import TARGETS
from targets.base import Calibration, ExportRequest
from targets.driver import artifact_bytes
from targets.onnx_common import export_onnx
from targets.pytorch import eager_runner

RESULTS = Path(__file__).parent / "results" / "suite.json"
# the suite's rows: (task, architectures); the classifiers at --size with ImageNet's 1000 classes, the detectors at
# --detection-size with 3 classes
CLASSIFIERS, MODELS = "classification", ("resnet18", "mobilenet_v3_small", "mobilenet_v3_large")
DETECTORS_TASK, DETECTORS = "detection", ("mobilenet_v3_small",)
ROUNDS = 3
HARNESS_OVERHEAD_LIMIT = 0.05


def plain_onnxruntime(model: torch.nn.Module, meta: dict, folder: Path) -> tuple[Callable, float]:
    import onnxruntime as ort

    path = folder / "plain.onnx"
    export_onnx(model, meta, path, dynamic_batch=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), path.stat().st_size / 1e6


def our_openvino(model: torch.nn.Module, meta: dict, folder: Path, precision: str, calib: np.ndarray) -> tuple[Callable, float]:
    target = TARGETS.get("openvino")()
    out = folder / precision
    out.mkdir()
    result = target.export(model, meta, out, ExportRequest(precision, calibration=Calibration(calib),
                                                           options={"strategy": "ptq"}))
    return target.load(out, {**meta, "precision": precision}, "cpu"), artifact_bytes(out, result.files) / 1e6


def interleaved(runners: dict[str, Callable], x: np.ndarray, timing: Timing) -> dict[str, dict]:
    """Latency stats per runner, measured in ROUNDS alternating rounds (order rotated each round)."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    per_round = Timing(timing.warmup, max(10, timing.min_iters // ROUNDS), timing.min_time_s / ROUNDS, timing.max_time_s)
    for r in range(ROUNDS):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name] += time_calls(lambda: runners[name](x), per_round)
    return {k: latency_stats(v) for k, v in times.items()}


def harness_overhead(run: Callable, x: np.ndarray, timing: Timing) -> dict:
    """p50 of the harness vs a bare perf_counter loop around the same call, alternating 3 rounds each."""
    harness, bare = [], []
    n = max(timing.min_iters, 100)
    for _ in range(ROUNDS):
        harness.append(latency_stats(time_calls(lambda: run(x), Timing(5, n, timing.min_time_s / ROUNDS)))["p50"])
        loop = []
        for _ in range(n):
            t = time.perf_counter()
            run(x)
            loop.append((time.perf_counter() - t) * 1000)
        bare.append(statistics.median(loop))
    h, b = statistics.median(harness), statistics.median(bare)
    return {"harness_p50_ms": h, "bare_loop_p50_ms": b, "overhead": h / b - 1, "limit": HARNESS_OVERHEAD_LIMIT,
            "within_limit": abs(h / b - 1) <= HARNESS_OVERHEAD_LIMIT}


def task_row(task: str, arch: str, size: int, classes: int, timing: Timing, log: Callable[[str], None]) -> dict:
    """One suite row: a freshly initialised network of `task`'s architecture `arch` (`classes` outputs)."""
    torch.manual_seed(0)
    model = TASKS.get(task).build({"arch": arch, "num_classes": classes}).eval()
    return suite_row(task, model, arch, size, timing, log)


def suite_row(task: str, model: torch.nn.Module, arch: str, size: int, timing: Timing, log: Callable[[str], None]) -> dict:
    meta = {"arch": arch, "input_size": [3, size, size]}
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 3, size, size)).astype(np.float32)
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runners, sizes = {"pytorch_fp32": eager_runner(model)}, {}
        runners["onnxruntime_fp32"], sizes["onnxruntime_fp32"] = plain_onnxruntime(model, meta, folder)
        runners["openvino_fp32"], sizes["openvino_fp32"] = our_openvino(model, meta, folder, "fp32", calib)
        runners["ours_openvino_int8"], sizes["ours_openvino_int8"] = our_openvino(model, meta, folder, "int8", calib)
        stats = interleaved(runners, x, timing)
        overhead = harness_overhead(runners["ours_openvino_int8"], x, timing)
    p50 = {k: v["p50"] for k, v in stats.items()}
    ours = p50["ours_openvino_int8"]
    row = {"task": task, "model": arch, "img_size": size, "latency_ms": stats, "size_mb": sizes,
           "speedup": {"vs_pytorch_fp32": p50["pytorch_fp32"] / ours, "vs_onnxruntime_fp32": p50["onnxruntime_fp32"] / ours,
                       "vs_openvino_fp32": p50["openvino_fp32"] / ours},
           "size_ratio_vs_fp32": sizes["openvino_fp32"] / sizes["ours_openvino_int8"], "harness": overhead}
    log(f"{arch + ' ' + task[:6]:25s} {size}px  eager {p50['pytorch_fp32']:7.2f}  ORT {p50['onnxruntime_fp32']:7.2f}  "
        f"OV fp32 {p50['openvino_fp32']:7.2f}  ours int8 {ours:6.2f} ms  ->  {row['speedup']['vs_pytorch_fp32']:.2f}x eager, "
        f"{row['speedup']['vs_onnxruntime_fp32']:.2f}x ORT, {row['speedup']['vs_openvino_fp32']:.2f}x OV fp32; "
        f"harness overhead {overhead['overhead']:+.1%}")
    return row


def run(models: list[str] | None = None, size: int = 224, timing: Timing | None = None, out: Path | None = RESULTS,
        log: Callable[[str], None] | None = None, detectors: list[str] | None = None, detection_size: int = 320) -> dict:
    """Run the suite, print one line per row, save JSON to `out` (None: do not save). Returns the result."""
    log = log or print
    timing = timing or Timing(min_time_s=3.0)
    device = local_device()
    log(f"suite on {device['name']} (FP32 {device['peaks']['fp32_gflops']} GFLOPS, INT8 {device['peaks']['int8_gops']} GOPS)")
    rows = [task_row(CLASSIFIERS, arch, size, 1000, timing, log) for arch in (MODELS if models is None else models)]
    rows += [task_row(DETECTORS_TASK, arch, detection_size, 3, timing, log)
             for arch in (DETECTORS if detectors is None else detectors)]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": device, "batch": 1,
              "threads": torch.get_num_threads(), "rows": rows,
              "harness_within_limit": all(r["harness"]["within_limit"] for r in rows)}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {out}")
    return {**result, "json": str(out) if out else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="detector backbones ('' for none)")
    ap.add_argument("--detection-size", type=int, default=320)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    run([m for m in args.models.split(",") if m], args.size, out=args.out,
        detectors=[d for d in args.detectors.split(",") if d], detection_size=args.detection_size)


if __name__ == "__main__":
    main()
