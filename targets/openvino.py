"""`openvino`: OpenVINO IR (model.xml + model.bin); CPU here, GPU / NPU when present; INT8 by NNCF,
FP16 as compressed weights with an f16 inference hint on GPUs."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from compression.ptq import PTQ_STRATEGIES, Score, quantize, top1_accuracy
from factory.errors import UnsupportedSpecError
from factory.signal_stack import kept_signal_stack
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner


@functools.cache
def core() -> Any:
    """The process's one `ov.Core`: its device plugins load once and stay loaded (each `ov.Core()` loads its own,
    and a CPU plugin moves the thread's signal stack, see factory.signal_stack)."""
    import openvino as ov

    return ov.Core()


def available_devices() -> list[str]:
    try:
        with kept_signal_stack():
            return [d.lower() for d in core().available_devices]
    except Exception:  # no openvino, or no driver: nothing available
        return []


def ov_validator(score: Score) -> Callable[[Any, np.ndarray, list], float]:
    """validate() for NNCF accuracy control: runs the ov.CompiledModel image by image and scores the outputs."""
    def validate(compiled: Any, x: np.ndarray, truth: list) -> float:
        return score(np.concatenate([compiled(x[i:i + 1])[0] for i in range(len(x))]), truth)
    return validate


@TARGETS.register("openvino")
class OpenVinoTarget:
    name = "openvino"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), devices=("cpu", "gpu", "npu"), dynamic_batch=True,
                                dynamic_shape=True,
                                export_modules=("openvino", "nncf"), runtime_modules=("openvino",),
                                notes="OpenVINO IR; INT8 by NNCF; FP16 is meant for Intel GPUs.")
    int8_strategies = (*PTQ_STRATEGIES, "qat")

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        import openvino as ov

        c, h, w = meta["input_size"]
        variable = set((meta.get("dynamic_axes") or {}).get("input", [])) | ({0} if request.dynamic_batch else set())
        shape = ov.PartialShape([-1 if axis in variable else size for axis, size in enumerate((1, c, h, w))])
        with warnings.catch_warnings():  # convert_model traces with torch.jit, which warns it is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            ov_model = ov.convert_model(model, example_input=torch.zeros(1, c, h, w), input=[shape])
        notes = []
        strategy = request.options.get("strategy", "ptq")
        if request.precision == "int8" and strategy == "qat":  # the model already carries trained fake quantizers
            notes.append(f"INT8 by quantization-aware fine-tuning (NNCF fake quantizers, {request.options['qat']['epochs']} "
                         "epochs) converted by OpenVINO")
        elif request.precision == "int8":
            ov_model = quantize(ov_model, request.calibration.inputs, strategy=strategy,
                                validation=request.options.get("validation"),
                                max_drop=request.options.get("max_drop", 1.0), validate=ov_validator(request.options.get("score", top1_accuracy)))
            notes.append(f"INT8 by NNCF ({strategy}) from {len(request.calibration.inputs)} calibration images")
        ov.save_model(ov_model, str(out / "model.xml"), compress_to_fp16=request.precision == "fp16")
        versions = {"openvino": ov.get_version(), "torch": torch.__version__}
        if request.precision == "int8":
            import nncf

            versions["nncf"] = nncf.__version__
        return ExportResult(files=["model.xml", "model.bin"], tool_versions=versions, notes=notes)

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        if device not in available_devices():
            raise UnsupportedSpecError(f"OpenVINO device {device!r} is not present here.",
                                       fix=f"Use one of: {', '.join(available_devices()) or 'none'}.")
        precision = meta.get("precision", "fp32")
        config = {"PERFORMANCE_HINT": "LATENCY",
                  # fp32 artifacts keep fp32 maths even where the CPU would pick bf16 (AMX)
                  "INFERENCE_PRECISION_HINT": "f16" if precision == "fp16" and device != "cpu" else "f32"}
        with kept_signal_stack():
            compiled = core().compile_model(str(out / "model.xml"), device.upper(), config)

        def run(batch: np.ndarray) -> np.ndarray:
            return compiled(np.ascontiguousarray(batch, dtype=np.float32))[0]

        return run
