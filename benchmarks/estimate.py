"""Roofline estimates for devices not at hand, calibrated by what this machine measured.

A model of M multiply-accumulates and B weight bytes has, on a device with sustained rate P (ops/s
at the precision), bandwidth W and last-level cache S, a compute floor C = 2M / P and a memory floor
B / W (0 when the weights fit in S, as they then stay cached between calls). No runtime reaches the
compute floor; how far it stays is the efficiency measured here, e = C_here / latency_here, for the
same precision and, where measured, the runtime the device uses. The estimate is

    latency_device = max(C_device / e, memory floor_device)

A model using under 15% of the peak here is bound by per-call overhead rather than compute; its
overhead scales with general CPU speed, not with INT8 units, so C uses the FP32 rates on both sides.
Every estimate is labelled (`measured: false`, with its basis and confidence), never a measurement.
"""

from __future__ import annotations

from targets.devices import DeviceProfile

BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}
OVERHEAD_BOUND_SHARE = 0.15  # below this share of peak, a call is bound by overhead, not compute


def local_peak_ops(peaks: dict, precision: str) -> float:
    """This machine's measured peak (ops/s) at `precision`; fp16 has no CPU GEMM measure, so fp32's."""
    return (peaks["int8_gops"] if precision == "int8" else peaks["fp32_gflops"]) * 1e9


def memory_floor_s(weight_bytes: float, bandwidth_gbps: float, cache_mb: float) -> float:
    return 0.0 if weight_bytes <= cache_mb * 2 ** 20 else weight_bytes / (bandwidth_gbps * 1e9)


def peak_share(macs: int, p50_ms: float, peak_ops: float) -> float:
    """Share of the peak compute a batch-1 call uses: (2 * MACs / latency) / peak."""
    return 2 * macs / (p50_ms / 1000) / peak_ops


def calibration_row(rows: list[dict], profile: DeviceProfile, precision: str, local_id: str) -> dict | None:
    """The measured row here the device is calibrated by: same precision (fp16 falls back to fp32),
    the device's preferred runtimes first, then OpenVINO / ONNX Runtime, then any non-eager runtime."""
    for prec in (precision, "fp32") if precision == "fp16" else (precision,):
        candidates = [r for r in rows if r["measured"] and r["device_id"] == local_id and r["precision"] == prec]
        order = list(profile.targets) + ["openvino", "onnxruntime"]
        candidates.sort(key=lambda r: (order.index(r["target"]) if r["target"] in order else len(order),
                                       r["target"] == "pytorch"))
        if candidates:
            return candidates[0]
    return None


def estimate_rows(rows: list[dict], profiles: dict[str, DeviceProfile], local: dict, cost: dict) -> tuple[list[dict], list[dict]]:
    """Estimated rows for every profile x precision, and the pairs that could not be estimated (why)."""
    estimated, skipped = [], []
    for profile in profiles.values():
        for precision in profile.precisions:
            calib = calibration_row(rows, profile, precision, local["id"])
            if calib is None:
                skipped.append({"device": profile.id, "precision": precision,
                                "reason": f"nothing measured here at {precision} to calibrate with"})
                continue
            estimated.append(estimate(profile, precision, calib, local, cost))
    return estimated, skipped


def estimate(profile: DeviceProfile, precision: str, calib: dict, local: dict, cost: dict) -> dict:
    peaks, measured = local["peaks"], calib["result"]["latency_ms"]
    share = peak_share(cost["macs"], measured["p50"], local_peak_ops(peaks, calib["precision"]))
    overhead_bound = share < OVERHEAD_BOUND_SHARE
    here_ops = local_peak_ops(peaks, "fp32" if overhead_bound else calib["precision"])
    there_ops = profile.peak_ops("fp32" if overhead_bound else precision)
    efficiency = 2 * cost["macs"] / here_ops * 1000 / measured["p50"]
    compute_ms = 2 * cost["macs"] / there_ops * 1000 / efficiency
    memory_ms = memory_floor_s(cost["params"] * BYTES_PER_WEIGHT[precision], profile.memory_gbps, profile.cache_mb) * 1000
    p50 = max(compute_ms, memory_ms)
    scale = p50 / measured["p50"]
    why_low = ([f"a {profile.kind}, calibrated on this {local['kind']}"] if profile.kind != local["kind"] else []) + \
        ([f"overhead-bound here ({share:.1%} of peak): scaled by FP32 rates"] if overhead_bound else [])
    return {
        "target": profile.targets[0], "precision": precision, "device_id": profile.id, "measured": False,
        "device": {"id": profile.id, "name": profile.name, "kind": profile.kind},
        "result": {
            "latency_ms": {k: measured[k] * scale for k in ("p50", "p90", "p99", "mean")},
            "throughput": {"images_per_s": 1000 / p50, "batch": 1, "threads": None, "thread_setting": "estimate"},
            "memory_mb": None,
            "size_mb": calib["result"]["size_mb"] * BYTES_PER_WEIGHT[precision] / BYTES_PER_WEIGHT[calib["precision"]],
            "accuracy": calib["result"].get("accuracy"), "per_class": calib["result"].get("per_class"),
            "estimate": {
                "method": "roofline calibrated by this machine", "bound": "memory" if memory_ms > compute_ms else "compute",
                "compute_ms": compute_ms, "memory_floor_ms": memory_ms, "efficiency_here": efficiency,
                "confidence": "low" if why_low else "medium", "why_low": why_low,
                "calibrated_by": {"target": calib["target"], "precision": calib["precision"], "device": local["id"],
                                  "p50_ms": measured["p50"], "peak_share": share},
                "device_rates": {"ops_per_s": there_ops, "memory_gbps": profile.memory_gbps, "cache_mb": profile.cache_mb},
                "basis": profile.basis,
                "accuracy_from": f"{calib['target']} {calib['precision']} measured here (same weights)",
            },
        },
    }
