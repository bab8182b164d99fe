"""`coreml`: a Core ML ML Program (model.mlpackage) for iPhones, iPads and Macs (Neural Engine, GPU,
CPU), converted from TorchScript by coremltools.

Core ML runs only on Apple systems. Elsewhere the export is checked as far as it can be without the
runtime: the saved package is read back and its spec validated (program type, input / output names,
shapes and types, the precision of every compute op, the INT8 weight ops); parity and accuracy are
left to an Apple device and the result says so (`runnable=False`).

FP16 is an fp16 program behind float32 input / output (the Neural Engine computes in fp16 anyway).
INT8 is weight-only: linear symmetric per-channel INT8 weights, dequantized to fp16 at load time, so
it shrinks the file, not the arithmetic.
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from factory.errors import ExportError, UnsupportedSpecError
from factory.tasks import task_of
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner

PACKAGE = "model.mlpackage"
INPUT_NAME, OUTPUT_NAME = "input", "logits"  # the names the driver writes into metadata.json
DEPLOYMENT_TARGET = "iOS16"  # ML Program with fp16 and constexpr (compressed weight) ops: iOS 16 / macOS 13
MIN_SPEC_VERSION = 7  # the Core ML spec version of iOS 16
INT8_WEIGHT_THRESHOLD = 2048  # coremltools' default: smaller weight tensors stay in float
RUNS_HERE = platform.system() == "Darwin"
COMPUTE_UNITS = {"apple-ane": "CPU_AND_NE", "apple-gpu": "CPU_AND_GPU", "apple-cpu": "CPU_ONLY"}
# ops that move data in or out of the program rather than compute on it
NON_COMPUTE_OPS = {"const", "cast"}


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """coremltools logs at import that its runtime library is absent (off Apple systems), that this torch and
    scikit-learn are newer than it was tested with (see torch_support_note), and torchao (which it imports)
    logs a torch deprecation: raise those loggers to ERROR for the import only."""
    loggers = [logging.getLogger(name) for name in ("coremltools", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _coremltools() -> Any:
    with _quiet_import():
        import coremltools as ct
        import coremltools.optimize.coreml  # noqa: F401  (imports torchao)

    return ct


def convert(model: nn.Module, meta: dict, precision: str) -> Any:
    """An ML Program for `model` with float32 `input` (1, C, H, W) and `logits`; fp32 or fp16 inside."""
    ct = _coremltools()
    example = torch.zeros(1, *meta["input_size"])
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(log):  # progress bars and version warnings
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, example)
            return ct.convert(traced, convert_to="mlprogram", compute_precision=compute,
                              inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(example.shape), dtype=np.float32)],
                              outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
                              minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET))
    except Exception as exc:  # tracing and converter errors come in many types
        raise ExportError(f"Core ML conversion of {meta['arch']} failed: {type(exc).__name__}: {exc} "
                          f"{log.getvalue().strip()[-800:]}".rstrip(),
                          fix="Check the operators coremltools reports as unsupported; use another target meanwhile.") from exc


def quantize_weights_int8(mlmodel: Any) -> Any:
    """Weight-only INT8 (linear symmetric, per output channel) of an fp16 ML Program."""
    ct = _coremltools()
    op_config = ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                           granularity="per_channel",
                                                           weight_threshold=INT8_WEIGHT_THRESHOLD)
    with contextlib.redirect_stderr(io.StringIO()):
        return ct.optimize.coreml.linear_quantize_weights(
            mlmodel, ct.optimize.coreml.OptimizationConfig(global_config=op_config))


def _dtype(ct: Any, tensor_type: Any) -> str:
    return ct.proto.MIL_pb2.DataType.Name(tensor_type.dataType)


def _feature(ct: Any, feature: Any) -> dict:
    array = feature.type.multiArrayType
    dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    return {"name": feature.name, "shape": [int(d) for d in array.shape], "dtype": dtype}


def spec_summary(path: Path) -> dict:
    """What the saved package declares: program type, spec version, inputs / outputs, ops by type and the
    element types of compute ops and of weight tensors (rank >= 2 consts and INT8 constexpr ops)."""
    ct = _coremltools()
    spec = ct.utils.load_spec(str(path))
    summary: dict = {"type": spec.WhichOneof("Type"), "spec_version": spec.specificationVersion,
                     "inputs": [_feature(ct, f) for f in spec.description.input],
                     "outputs": [_feature(ct, f) for f in spec.description.output],
                     "ops": Counter(), "compute_dtypes": Counter(), "weights": Counter()}
    if summary["type"] != "mlProgram":
        return summary
    main = spec.mlProgram.functions["main"]
    for op in main.block_specializations[main.opset].operations:
        summary["ops"][op.type] += 1
        out = op.outputs[0].type.tensorType
        dtype = _dtype(ct, out)
        if op.type.startswith("constexpr_"):  # compressed weights: count the stored element type
            summary["weights"][_dtype(ct, op.attributes["quantized_data"].type.tensorType)
                               if "quantized_data" in op.attributes else op.type] += 1
        elif op.type == "const":
            if len(out.dimensions) >= 2 and dtype.startswith("FLOAT"):
                summary["weights"][dtype] += 1
        elif op.type not in NON_COMPUTE_OPS and dtype.startswith("FLOAT"):
            summary["compute_dtypes"][dtype] += 1
    return summary


def spec_problems(summary: dict, meta: dict, precision: str) -> list[str]:
    """Every way the saved spec differs from what this export promised; empty when it is right."""
    problems = []
    if summary["type"] != "mlProgram":
        return [f"the package holds a {summary['type']}, not an mlProgram"]
    if summary["spec_version"] < MIN_SPEC_VERSION:
        problems.append(f"spec version {summary['spec_version']} < {MIN_SPEC_VERSION} ({DEPLOYMENT_TARGET})")
    want_in = {"name": INPUT_NAME, "shape": [1, *meta["input_size"]], "dtype": "FLOAT32"}
    if summary["inputs"] != [want_in]:
        problems.append(f"inputs {summary['inputs']} instead of [{want_in}]")
    outputs, want_out = summary["outputs"], [1, *task_of(meta).output_shape(meta)]
    if [(o["name"], o["dtype"]) for o in outputs] != [(OUTPUT_NAME, "FLOAT32")] or outputs[0]["shape"] not in ([], want_out):
        problems.append(f"outputs {outputs} instead of one float32 {OUTPUT_NAME!r} of shape {want_out}")
    compute = "FLOAT32" if precision == "fp32" else "FLOAT16"
    dtypes, weights = summary["compute_dtypes"], summary["weights"]
    # fp32 must hold no fp16 op; fp16 must compute in fp16 (coremltools may keep an op it cannot lower in fp32)
    if not dtypes[compute] or (precision == "fp32" and set(dtypes) != {compute}):
        problems.append(f"compute ops by element type {dict(dtypes)}, expected {compute}")
    allowed = {compute, "INT8"} if precision == "int8" else {compute}
    if (precision == "int8" and not weights["INT8"]) or set(weights) - allowed:
        problems.append(f"weight tensors by element type {dict(weights)}, expected {' and '.join(sorted(allowed))}")
    return problems


def describe(summary: dict, precision: str) -> str:
    def counts(counter: Counter) -> str:
        return ", ".join(f"{n} {k.lower()}" for k, n in sorted(counter.items()))

    ops = Counter({t: n for t, n in summary["ops"].items() if t not in NON_COMPUTE_OPS})
    (inp,), (out,) = summary["inputs"], summary["outputs"]
    return (f"mlProgram spec v{summary['spec_version']} ({DEPLOYMENT_TARGET}+); input {inp['name']!r} "
            f"{inp['dtype'].lower()} {inp['shape']}; output {out['name']!r} {out['dtype'].lower()} {out['shape']}; "
            f"ops: {counts(ops)}; compute ops by type: {counts(summary['compute_dtypes'])}; "
            f"weight tensors: {counts(summary['weights'])}")


def validate(path: Path, meta: dict, precision: str) -> str:
    """Read the saved package back and check it; returns a one-line description, raises ExportError."""
    weights = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    if not (path / "Manifest.json").is_file() or not weights.is_file():
        raise ExportError(f"{path} is incomplete (no Manifest.json or weights/weight.bin).",
                          fix="Re-export; check the disk is not full.")
    summary = spec_summary(path)
    problems = spec_problems(summary, meta, precision)
    if problems:
        raise ExportError(f"The Core ML spec of {meta['arch']} ({precision}) is not what was asked for: "
                          + "; ".join(problems) + ".", fix="Report this as a bug with the model; use another target.",
                          details=problems)
    return describe(summary, precision)


def coreml_versions() -> dict[str, str]:
    ct = _coremltools()
    return {"coremltools": ct.__version__, "torch": torch.__version__, "deployment_target": DEPLOYMENT_TARGET}


def torch_support_note(ct: Any) -> str:
    """coremltools names the newest torch it was tested with; say so when this one is newer."""
    tested = getattr(getattr(ct, "_deps", None), "_TORCH_MAX_VERSION", None)
    current = torch.__version__.split("+")[0]
    newer = tested and tuple(map(int, current.split(".")[:2])) > tuple(map(int, tested.split(".")[:2]))
    if not newer:
        return ""
    return f"coremltools {ct.__version__} is tested with torch <= {tested}; converted with torch {current}"


@TARGETS.register("coreml")
class CoreMLTarget:
    name = "coreml"
    capabilities = Capabilities(precisions=("fp32", "fp16", "int8"), devices=tuple(COMPUTE_UNITS), dynamic_batch=False,
                                export_modules=("coremltools",), runtime_modules=("coremltools",), runs_here=RUNS_HERE,
                                int8_calibrated=False,
                                notes=f"Core ML ML Program ({DEPLOYMENT_TARGET}+), static batch 1; runs on Apple devices "
                                      "only (elsewhere the spec is validated, not run). INT8 is weight-only.")
    int8_strategies = ("weight_only",)  # no activation calibration: linear_quantize_weights only

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        ct = _coremltools()
        mlmodel = convert(model, meta, request.precision)
        notes = []
        if request.precision == "int8":
            mlmodel = quantize_weights_int8(mlmodel)
            notes.append("Core ML INT8 here is weight-only: linear symmetric per-channel INT8 weights (tensors of "
                         f"more than {INT8_WEIGHT_THRESHOLD} elements), dequantized to fp16 on load; activations "
                         "and arithmetic stay fp16, so it is smaller, not faster; no calibration images are used")
        mlmodel.save(str(out / PACKAGE))
        checked = validate(out / PACKAGE, meta, request.precision)
        notes += [note for note in [torch_support_note(ct)] if note]
        if RUNS_HERE:
            notes.insert(0, f"spec validated: {checked}")
            return ExportResult(files=[PACKAGE], tool_versions=coreml_versions(), notes=notes)
        reason = (f"Core ML cannot run on {platform.system()}: spec validated ({checked}); parity and accuracy must be "
                  "measured on an Apple device")
        return ExportResult(files=[PACKAGE], tool_versions=coreml_versions(), notes=[reason, *notes], runnable=False)

    def load(self, out: Path, meta: dict, device: str = "apple-ane") -> Runner:
        if not RUNS_HERE:
            raise UnsupportedSpecError(
                f"Core ML cannot run on {platform.system()}: the Core ML runtime exists only on Apple systems "
                "(iOS, iPadOS, macOS).",
                fix=f"Copy {out / PACKAGE} to a Mac or iPhone and run it there (coremltools' MLModel.predict on a "
                    "Mac), or export to onnxruntime / ncnn to run it here.")
        return coreml_runner(out / PACKAGE, device)


def coreml_runner(path: Path, device: str) -> Runner:
    """macOS only: MLModel.predict on the compute units of `device` (apple-ane / apple-gpu / apple-cpu)."""
    ct = _coremltools()
    if device not in COMPUTE_UNITS:
        raise UnsupportedSpecError(f"Core ML device {device!r} is unknown.",
                                   fix=f"Use one of: {', '.join(COMPUTE_UNITS)}.")
    mlmodel = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[device]))

    def run(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(mlmodel.predict({INPUT_NAME: image[None].astype(np.float32)})[OUTPUT_NAME],
                                          dtype=np.float32).reshape(1, -1) for image in batch])

    return run
