"""`onnxruntime`: ONNX on the CPU execution provider; INT8 as NNCF QDQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from compression.ptq import PTQ_STRATEGIES
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner
from targets.onnx_common import INPUT_NAME, export_onnx_precision, onnx_session, onnx_versions


def ort_runner(path: Path) -> Runner:
    session = onnx_session(path)

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return run


@TARGETS.register("onnxruntime")
class OnnxRuntimeTarget:
    name = "onnxruntime"
    capabilities = Capabilities(precisions=("fp32", "int8"), devices=("cpu",), dynamic_batch=True, dynamic_shape=True,
                                export_modules=("onnx", "onnxruntime", "nncf"), runtime_modules=("onnxruntime",),
                                notes="ONNX opset 17; INT8 as QDQ (static, per-channel weights) by NNCF.")
    int8_strategies = PTQ_STRATEGIES

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        files, notes = export_onnx_precision(model, meta, out, request)
        return ExportResult(files=files, tool_versions=onnx_versions(), notes=notes)

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        return ort_runner(out / "model.onnx")
