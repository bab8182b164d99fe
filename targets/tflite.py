"""`tflite`: a LiteRT flatbuffer (`model.tflite`) converted by litert-torch, run here by
ai-edge-litert's interpreter on the CPU (XNNPACK); the same file runs on Android, iOS and Linux.

The file takes the model's own layout, NCHW, at batch 1 (the converter puts NHWC transposes
inside the graph). INT8 is static full-integer, never dynamic-range: ai-edge-quantizer's
`static_wi8_ai8` recipe on the FP32 file (per-channel int8 weights, int8 activations from the
calibration images, int32 biases); the strategies differ in how activation ranges are merged over
the calibration images (`INT8_STRATEGIES`). Its input and output are int8 too, so the runner
quantizes the normalised batch and dequantizes the logits with the scale and zero point in the file.

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

# How the per-image activation ranges of the calibration images are merged, in the order the driver tries them.
INT8_STRATEGIES = {
    # min of the minima, max of the maxima (TFLite's classic calibrator): no calibrated value clips;
    # on a 3-class mobilenet_v3_small at 64 px it kept 0.99 top-1 agreement, the moving average 0.93
    "ptq": "overall min / max",
    # ai-edge-quantizer's default, a moving average (0.95) of per-image min / max: rare large values
    # (confident logits) clip, typical ones get finer steps
    "ptq_ema": "moving average of per-image min / max",
}


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


def quantize_int8(flatbuffer: bytes, calibration: np.ndarray, strategy: str = "ptq") -> tuple[bytes, list[str]]:
    """Static full-integer INT8 with ai-edge-quantizer's `static_wi8_ai8` recipe, activation ranges
    from `calibration` (NCHW float32, normalised), one image per step as the file takes batch 1.
    `strategy` picks how per-image ranges are merged (see `INT8_STRATEGIES`). Returns (file, notes)."""
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    key, input_name = _signature(flatbuffer)
    samples = [{input_name: np.ascontiguousarray(calibration[i:i + 1], dtype=np.float32)}
               for i in range(len(calibration))]
    int8_recipe = recipe.static_wi8_ai8()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            q = quantizer.Quantizer(flatbuffer, int8_recipe)
            if strategy == "ptq_ema":  # the quantizer's own default
                ranges = q.calibrate({key: samples}, num_threads=_threads())
            else:
                recipes = recipe_manager.RecipeManager()
                recipes.load_quantization_recipe(int8_recipe)
                calib = calibrator.Calibrator(flatbuffer, num_threads=_threads(),
                                              qsv_update_func=qsv_utils.min_max_update)
                calib.calibrate({key: samples}, recipes)
                ranges = calib.get_model_qsvs()
            result = q.quantize(ranges, enable_progress_report=False)
    except Exception as exc:  # the quantizer raises ValueError / RuntimeError with its own reasons
        raise ExportError(f"LiteRT INT8 quantization failed: {type(exc).__name__}: {exc}",
                          fix="Export at fp32, or use the onnxruntime / openvino target for INT8.") from exc
    return bytes(result.quantized_model), _quantizer_warnings(caught)


def _quantizer_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Notes for what the quantizer's warnings mean; warnings not understood here are passed on."""
    notes = []
    for w in caught:
        text = str(w.message)
        if "experimental_preserve_all_tensors" in text:
            continue  # the calibrator keeps every tensor on purpose, and warns that this is for debugging
        if issubclass(w.category, RuntimeWarning) and "invalid value encountered in cast" in text:
            # a bias over the int32 range (a channel whose weights are all but zero) is clipped in
            # float32, where 2**31 - 1 rounds up to 2**31, which wraps to -2**31 when cast
            note = ("ai-edge-quantizer overflowed int32 biases (channels with near-zero weights): those wrap to "
                    "-2**31; the parity check judges the effect")
            if note not in notes:
                notes.append(note)
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return notes


def io_notes(path: Path) -> list[str]:
    """What the file takes and returns, with the int8 scale / zero point an app needs."""
    interpreter = _interpreter(path)
    notes = []
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for role, detail in (("input", inp), ("output", out)):
        dtype = np.dtype(detail["dtype"]).name
        shape = "x".join(str(int(d)) for d in detail["shape"])
        scale, zero = detail["quantization"]
        quant = f" (real = {scale:.6g} * (q {'+' if zero < 0 else '-'} {abs(zero)}))" if dtype != "float32" else ""
        layout = "NCHW, normalised as in preprocessing" if role == "input" else "logits"
        notes.append(f"{role}: {dtype} [{shape}] {layout}{quant}")
    float_tensors = sum(np.dtype(t["dtype"]) == np.float32 for t in interpreter.get_tensor_details())
    if np.dtype(inp["dtype"]) != np.float32:
        notes.append(f"{float_tensors} tensors left in float" if float_tensors else "full-integer: no float tensors")
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
    int8_strategies = tuple(INT8_STRATEGIES)

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        int8 = request.precision == "int8"
        strategy = request.options.get("strategy", "ptq")
        if int8 and strategy not in INT8_STRATEGIES:
            raise UnsupportedSpecError(f"The tflite target has no INT8 strategy {strategy!r}.",
                                       fix=f"Use one of: {', '.join(INT8_STRATEGIES)}.")
        if int8 and (request.calibration is None or not len(request.calibration.inputs)):
            raise UnsupportedSpecError("LiteRT INT8 needs calibration images and none were given.",
                                       fix="Export through the driver (it selects them from the training split), or "
                                           "pass ExportRequest(calibration=Calibration(x)), x NCHW float32 images.")
        flatbuffer = convert_fp32(model, meta)
        notes = []
        if int8:
            flatbuffer, warned = quantize_int8(flatbuffer, request.calibration.inputs, strategy)
            images = len(request.calibration.inputs)
            notes += [f"INT8 static full-integer by ai-edge-quantizer (static_wi8_ai8, per-channel weights; "
                      f"{strategy}: {INT8_STRATEGIES[strategy]} over {images} calibration images)", *warned]
        (out / MODEL_FILE).write_bytes(flatbuffer)
        notes += io_notes(out / MODEL_FILE)
        return ExportResult(files=[MODEL_FILE], tool_versions=litert_versions(request.precision), notes=notes)

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        return litert_runner(out / MODEL_FILE)
