"""`tensorrt`: an engine built by TensorRT from ONNX: FP16, or INT8 from an explicitly quantized
(QDQ, by NNCF) ONNX graph. The engine is built when the `tensorrt` package and an NVIDIA GPU are
present; elsewhere everything up to the build runs (ONNX / QDQ export, parity and re-evaluation of
that graph with onnxruntime) and the artifact says the engine is still to be built, and how."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compression.ptq import PTQ_STRATEGIES
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner
from targets.onnx_common import INPUT_NAME, OUTPUT_NAME, export_onnx_precision, onnx_versions
from targets.onnxruntime import ort_runner

ENGINE = "model.plan"


def engine_buildable() -> tuple[bool, str]:
    """(True, '') when an engine can be built here, else (False, the exact reason)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False, "the Python package `tensorrt` is not installed"
    if not torch.cuda.is_available():
        return False, "no NVIDIA GPU is visible (torch.cuda.is_available() is False)"
    return True, ""


def build_engine(onnx_path: Path, engine_path: Path, precision: str) -> str:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = precision == "int8" and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16" and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)  # explicit QDQ: no calibrator needed
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    engine_path.write_bytes(bytes(serialized))
    return trt.__version__


def trt_runner(engine_path: Path) -> Runner:
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda()
        context.set_input_shape(INPUT_NAME, tuple(x.shape))
        out = torch.empty(tuple(context.get_tensor_shape(OUTPUT_NAME)), device="cuda", dtype=torch.float32)
        context.set_tensor_address(INPUT_NAME, x.data_ptr())
        context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        stream = torch.cuda.current_stream()
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return out.cpu().numpy()

    return run


@TARGETS.register("tensorrt")
class TensorRtTarget:
    name = "tensorrt"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), devices=("cuda",), dynamic_batch=False,
                                export_modules=("onnx", "onnxruntime", "nncf"), runtime_modules=("tensorrt",),
                                notes="Engine built from ONNX on an NVIDIA GPU; INT8 from QDQ ONNX (no calibrator).")
    int8_strategies = PTQ_STRATEGIES

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        files, notes = export_onnx_precision(model, meta, out, request)
        versions: dict[str, Any] = onnx_versions()
        ok, reason = engine_buildable()
        proxy = ""
        if ok:
            versions["tensorrt"] = build_engine(out / "model.onnx", out / ENGINE, request.precision)
            files = [ENGINE, *files]
        else:
            flag = {"fp16": " --fp16", "int8": " --int8", "fp32": ""}[request.precision]
            notes.append(f"engine not built here: {reason}. The {'QDQ ' if request.precision == 'int8' else ''}ONNX "
                         f"graph was checked with onnxruntime instead. Build on the device: "
                         f"trtexec --onnx=model.onnx{flag} --saveEngine={ENGINE}")
            if request.precision == "fp16":
                notes.append("the file here is the FP32 ONNX graph: TensorRT makes FP16 only when it builds the engine, "
                             "so its size and any speed measured here are FP32's")
            proxy = "onnxruntime"
        return ExportResult(files=files, tool_versions=versions, notes=notes, proxy=proxy)

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        if (out / ENGINE).exists() and engine_buildable()[0]:
            return trt_runner(out / ENGINE)
        return ort_runner(out / "model.onnx")  # the graph the engine is (to be) built from
