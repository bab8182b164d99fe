"""ONNX export and NNCF QDQ INT8 shared by the ONNX-based targets (onnxruntime, web, tensorrt)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from compression.ptq import Score, quantize, top1_accuracy
from factory.errors import ExportError
from targets.base import ExportRequest

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def dynamic_axes(meta: dict, dynamic_batch: bool) -> dict[str, dict[int, str]]:
    """torch.onnx's dynamic_axes: the batch where asked, and the input's and output's axes of variable size that
    a network's metadata names (`dynamic_axes` {"input": [2, 3], "output": [...]}: an OCR network's height, width)."""
    named = meta.get("dynamic_axes") or {}
    axes = {name: {**({0: "batch"} if dynamic_batch else {}), **{a: f"{name}_{a}" for a in named.get(key, [])}}
            for name, key in ((INPUT_NAME, "input"), (OUTPUT_NAME, "output"))}
    return {name: a for name, a in axes.items() if a}


def export_onnx(model: nn.Module, meta: dict, path: Path, dynamic_batch: bool) -> None:
    """Trace `model` to ONNX (opset 17) with one input `input` and one output `logits` (their variable axes as
    `dynamic_axes` says)."""
    import onnx

    dummy = torch.zeros(1, *meta["input_size"])
    axes = dynamic_axes(meta, dynamic_batch) or None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=OPSET, dynamic_axes=axes, dynamo=False)
        onnx.checker.check_model(str(path))
    except Exception as exc:  # exporter errors come in many types
        raise ExportError(f"ONNX export of {meta['arch']} failed: {type(exc).__name__}: {exc}",
                          fix="Check that the model uses operators ONNX opset 17 supports.") from exc


def onnx_session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_validator(score: Score) -> Callable[[Any, np.ndarray, list], float]:
    """validate() for NNCF accuracy control on ONNX: runs the onnx.ModelProto with ONNX Runtime and scores it."""
    def validate(model: Any, x: np.ndarray, truth: list) -> float:
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return score(np.concatenate([session.run(None, {INPUT_NAME: x[i:i + 1]})[0] for i in range(len(x))]), truth)
    return validate


def export_onnx_precision(model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> tuple[list[str], list[str]]:
    """model.onnx at fp32, or QDQ INT8 via NNCF; returns (files, notes)."""
    import onnx

    path = out / "model.onnx"
    export_onnx(model, meta, path, request.dynamic_batch)
    notes: list[str] = []
    if request.precision == "int8":
        fp32 = onnx.load(str(path))
        strategy = request.options.get("strategy", "ptq")
        q = quantize(fp32, request.calibration.inputs, strategy=strategy, input_name=INPUT_NAME,
                     validation=request.options.get("validation"), max_drop=request.options.get("max_drop", 1.0),
                     validate=ort_validator(request.options.get("score", top1_accuracy)))
        onnx.save(q, str(path))
        notes.append(f"INT8 QDQ by NNCF ({strategy}) from {len(request.calibration.inputs)} calibration images")
    return ["model.onnx"], notes


def onnx_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "opset": str(OPSET)}
    try:
        import nncf

        versions["nncf"] = nncf.__version__
    except ImportError:
        pass
    return versions
