"""`web`: ONNX for onnxruntime-web (WebAssembly first) in a phone's browser.

The same ONNX graph as `onnxruntime`, opset 17 with static shapes (WASM kernels and WebGPU are
happiest with them); here it is checked and re-evaluated with onnxruntime, which shares the kernels'
semantics. The serving issue runs the file in a real browser.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from compression.ptq import PTQ_STRATEGIES
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner
from targets.onnx_common import export_onnx_precision, onnx_versions
from targets.onnxruntime import ort_runner


@TARGETS.register("web")
class WebTarget:
    name = "web"
    capabilities = Capabilities(precisions=("fp32", "int8"), devices=("browser-wasm",), dynamic_batch=False,
                                dynamic_shape=True, export_modules=("onnx", "onnxruntime", "nncf"), runtime_modules=("onnxruntime",),
                                max_size=640, notes="onnxruntime-web (WASM); static batch 1.")
    int8_strategies = PTQ_STRATEGIES

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        files, notes = export_onnx_precision(model, meta, out, request)
        notes.append("validated here with onnxruntime (CPU); in the browser it runs with onnxruntime-web")
        return ExportResult(files=files, tool_versions=onnx_versions(), notes=notes, proxy="onnxruntime")

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        return ort_runner(out / "model.onnx")
