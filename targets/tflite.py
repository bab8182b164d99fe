"""`tflite`: a LiteRT flatbuffer (`model.tflite`) converted by litert-torch, run here by
ai-edge-litert's interpreter on the CPU (XNNPACK); the same file runs on Android, iOS and Linux.

The file takes the model's own layout, NCHW, at batch 1 (the converter puts NHWC transposes
inside the graph). INT8 is static full-integer, never dynamic-range: ai-edge-quantizer's
`static_wi8_ai8` recipe on the FP32 file (per-channel int8 weights, int8 activations from the
calibration images, int32 biases). Its input and output are int8 too, so the runner quantizes the
normalised batch and dequantizes the logits with the scale and zero point stored in the file.

Why ai-edge-quantizer rather than litert-torch's PT2E flow: on mobilenet_v3_small the PT2E
quantizer leaves the hard-sigmoid ADD / MUL ops in float (QUANTIZE / DEQUANTIZE around each), and
takes about three times as long to convert; ai-edge-quantizer quantizes every op.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from factory.errors import ExportError, UnsupportedSpecError
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner

MODEL_FILE = "model.tflite"


@contextlib.contextmanager
def _quiet_litert_torch() -> Iterator[None]:
    """litert-torch prints a progress line per conversion pass unless this variable says no; the
    driver logs one line per stage itself. Restored afterwards: no process-wide setting is left."""
    key, old = "LITERT_TORCH_SHOW_PROGRESS", os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ[key] = "n"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def convert_fp32(model: nn.Module, meta: dict) -> bytes:
    """The FP32 flatbuffer of `model` traced at batch 1 with input NCHW `meta["input_size"]`."""
    import litert_torch

    sample = torch.zeros(1, *meta["input_size"])
    try:
        with _quiet_litert_torch(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bytes(litert_torch.convert(model, (sample,)).model_content())
    except Exception as exc:  # torch.export and the MLIR lowering raise many types
        raise ExportError(f"LiteRT conversion of {meta['arch']} failed: {type(exc).__name__}: {exc}",
                          fix="Check that the model exports with torch.export and uses operators LiteRT supports; "
                              "use the onnxruntime target meanwhile.") from exc


def _signature(flatbuffer: bytes) -> tuple[str, str]:
    """(signature key, input name) of the single-input model litert-torch writes."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=flatbuffer).get_signature_list()
    key, io = next(iter(signatures.items()))
    return key, io["inputs"][0]


def quantize_int8(flatbuffer: bytes, calibration: np.ndarray) -> bytes:
    """Static full-integer INT8 with ai-edge-quantizer: min/max ranges from `calibration` (NCHW
    float32, normalised), one image per step as the file takes batch 1."""
    from ai_edge_quantizer import quantizer, recipe

    key, input_name = _signature(flatbuffer)
    samples = [{input_name: np.ascontiguousarray(calibration[i:i + 1], dtype=np.float32)}
               for i in range(len(calibration))]
    try:
        with warnings.catch_warnings():
            # the calibrator keeps every tensor on purpose, and says that this is meant for debugging
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            q = quantizer.Quantizer(flatbuffer, recipe.static_wi8_ai8())
            ranges = q.calibrate({key: samples}, num_threads=_threads())
            result = q.quantize(ranges, enable_progress_report=False)
    except Exception as exc:  # the quantizer raises ValueError / RuntimeError with its own reasons
        raise ExportError(f"LiteRT INT8 quantization failed: {type(exc).__name__}: {exc}",
                          fix="Export at fp32, or use the onnxruntime / openvino target for INT8.") from exc
    return bytes(result.quantized_model)


def io_notes(path: Path) -> list[str]:
    """What the file takes and returns, with the int8 scale / zero point an app needs."""
    interpreter = _interpreter(path)
    notes = []
    for role, detail in (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0])):
        dtype = np.dtype(detail["dtype"]).name
        shape = "x".join(str(int(d)) for d in detail["shape"])
        scale, zero = detail["quantization"]
        quant = f" (real = {scale:.6g} * (q - {zero}))" if dtype != "float32" else ""
        layout = "NCHW, normalised as in preprocessing" if role == "input" else "logits"
        notes.append(f"{role}: {dtype} [{shape}] {layout}{quant}")
    float_ops = sum(np.dtype(t["dtype"]) == np.float32 for t in interpreter.get_tensor_details())
    if np.dtype(interpreter.get_input_details()[0]["dtype"]) != np.float32:
        notes.append("full-integer: no float tensors" if not float_ops else f"{float_ops} tensors left in float")
    return notes


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _interpreter(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    # without num_threads the interpreter (and its XNNPACK delegate) runs on one thread
    interpreter = Interpreter(model_path=str(path), num_threads=_threads())
    interpreter.allocate_tensors()
    return interpreter


def litert_versions(precision: str) -> dict[str, str]:
    import ai_edge_litert
    import litert_torch

    versions = {"torch": torch.__version__, "litert_torch": litert_torch.__version__,
                "ai_edge_litert": ai_edge_litert.__version__}
    if precision == "int8":
        from importlib.metadata import version

        versions["ai_edge_quantizer"] = version("ai-edge-quantizer")
    return versions


def litert_runner(path: Path) -> Runner:
    """Normalised NCHW float32 batch -> float32 logits, one image per invoke (the file has batch 1);
    int8 files get their input quantized and their output dequantized here."""
    interpreter = _interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_type = np.dtype(inp["dtype"])
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    out_quantized = np.dtype(out["dtype"]) != np.float32

    def run(batch: np.ndarray) -> np.ndarray:
        rows = []
        for image in np.asarray(batch, dtype=np.float32):
            x = image[None]
            if in_type != np.float32:
                info = np.iinfo(in_type)
                x = np.clip(np.round(x / in_scale) + in_zero, info.min, info.max).astype(in_type)
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])
            rows.append((y.astype(np.float32) - out_zero) * out_scale if out_quantized else y.copy())
        return np.concatenate(rows)

    return run


@TARGETS.register("tflite")
class TFLiteTarget:
    name = "tflite"
    capabilities = Capabilities(precisions=("fp32", "int8"), devices=("cpu",), dynamic_batch=False,
                                export_modules=("litert_torch", "ai_edge_litert", "ai_edge_quantizer"),
                                runtime_modules=("ai_edge_litert",),
                                notes="LiteRT flatbuffer by litert-torch, NCHW batch 1; INT8 is static full-integer "
                                      "(int8 input / output) by ai-edge-quantizer.")
    int8_strategies = ("ptq",)

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        flatbuffer = convert_fp32(model, meta)
        notes = []
        if request.precision == "int8":
            if request.calibration is None or not len(request.calibration.inputs):
                raise UnsupportedSpecError("LiteRT INT8 needs calibration images and none were given.",
                                  fix="Export through the driver (it selects them from the training split), or pass "
                                      "ExportRequest(calibration=Calibration(inputs)) with NCHW float32 images.")
            flatbuffer = quantize_int8(flatbuffer, request.calibration.inputs)
            notes.append(f"INT8 static full-integer by ai-edge-quantizer (static_wi8_ai8, per-channel weights) from "
                         f"{len(request.calibration.inputs)} calibration images")
        (out / MODEL_FILE).write_bytes(flatbuffer)
        notes.extend(io_notes(out / MODEL_FILE))
        return ExportResult(files=[MODEL_FILE], tool_versions=litert_versions(request.precision), notes=notes)

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        return litert_runner(out / MODEL_FILE)
