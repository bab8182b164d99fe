"""`executorch`: an ExecuTorch program (model.pte) lowered to the XNNPACK delegate, the CPU path of
ExecuTorch on Android and iOS phones and on desktop hosts. Here the same file is checked and
re-evaluated with the ExecuTorch Python runtime, which runs it through the same XNNPACK kernels.

FP32: torch.export -> to_edge_transform_and_lower(XnnpackPartitioner) -> to_executorch.
INT8: PT2E static quantization with the XNNPACK quantizer (symmetric INT8, per-channel weights,
per-tensor activations from histogram observers) calibrated on the request's images, then the same
lowering, so convolutions and linears run as XNNPACK QS8 kernels. The program takes batch 1.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from factory.errors import ExportError, MissingDependencyError, UnsupportedSpecError
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner

PROGRAM = "model.pte"
METHOD = "forward"
XNNPACK_BACKEND = "XnnpackBackend"  # the name the runtime registers the delegate under
# Calibration runs this many images per call through a batch-dynamic capture: histogram observers
# cost mostly per call, so this is about 4x faster than one image at a time (mobilenet_v3_small).
CALIBRATION_BATCH = 16


def capture_for_calibration(model: nn.Module, meta: dict) -> tuple[nn.Module, int]:
    """`model` as the FX graph PT2E quantizes, and how many images each calibration call may take."""
    from torch.export import Dim

    shape = meta["input_size"]
    try:
        batch = Dim("batch", min=1, max=CALIBRATION_BATCH)
        graph = torch.export.export(model, (torch.zeros(2, *shape),), dynamic_shapes=({0: batch},))
        return graph.module(), CALIBRATION_BATCH
    except Exception:  # the model fixes its batch size (constraint violations come in several types)
        return torch.export.export(model, (torch.zeros(1, *shape),)).module(), 1


def quantize_int8(model: nn.Module, meta: dict, calibration: np.ndarray) -> nn.Module:
    """PT2E static INT8 for XNNPACK: prepare, run `calibration` (NCHW float32, normalised), convert."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured, batch = capture_for_calibration(model, meta)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for i in range(0, len(calibration), batch):
            prepared(torch.from_numpy(np.ascontiguousarray(calibration[i:i + batch], dtype=np.float32)))
    return convert_pt2e(prepared)


def lower_to_xnnpack(model: nn.Module, meta: dict) -> tuple[bytes, str]:
    """The .pte bytes of `model` at batch 1 with every supported op in the XNNPACK delegate, and a
    note saying how much of the graph the delegate took."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(model, (torch.zeros(1, *meta["input_size"]),))
    with warnings.catch_warnings():  # the flatbuffer serializer still calls importlib.resources.read_binary
        warnings.filterwarnings("ignore", "read_binary is deprecated", DeprecationWarning)
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        note = delegation_note(edge.exported_program().graph_module)
        return edge.to_executorch().buffer, note


def delegation_note(graph_module: Any) -> str:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    # getitem only unpacks the delegate's outputs; anything else outside runs on portable kernels
    outside = {op: b.non_delegated for op, b in info.delegation_by_operator.items() if b.non_delegated and op != "getitem"}
    note = f"XNNPACK delegate: {info.num_delegated_nodes} nodes in {info.num_delegated_subgraphs} subgraph(s)"
    if not outside:
        return note + "; every compute node delegated"
    return note + "; left on portable CPU kernels: " + ", ".join(f"{op} x{n}" for op, n in sorted(outside.items()))


def versions(precision: str) -> dict[str, str]:
    from executorch import version

    out = {"executorch": version.__version__, "torch": torch.__version__}
    if precision == "int8":
        import torchao

        out["torchao"] = torchao.__version__
    return out


@TARGETS.register("executorch")
class ExecuTorchTarget:
    name = "executorch"
    capabilities = Capabilities(
        precisions=("fp32", "int8"), devices=("cpu",), dynamic_batch=False,
        export_modules=("executorch.exir", "executorch.backends.xnnpack", "torchao"),
        runtime_modules=("executorch.runtime",),
        notes="ExecuTorch .pte lowered to XNNPACK, static batch 1; the same file runs on Android and iOS CPUs "
              "(ExecuTorch runtime with the XNNPACK backend). INT8: PT2E XNNPACKQuantizer, per-channel weights.")
    int8_strategies = ("ptq",)

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        calibration = self._calibration(request) if request.precision == "int8" else None
        notes = []
        try:
            if calibration is not None:
                model = quantize_int8(model, meta, calibration)
                notes.append(f"INT8 by PT2E XNNPACKQuantizer (symmetric, per-channel weights) from "
                             f"{len(calibration)} calibration images")
            pte, delegated = lower_to_xnnpack(model, meta)
        except ImportError as exc:
            raise MissingDependencyError(f"The executorch target needs ExecuTorch and torchao ({exc}).",
                                         fix="Run scripts/setup (it installs executorch 1.5.1 and torchao), or pick another target.") from None
        except Exception as exc:  # torch.export, PT2E and lowering errors come in many types
            raise ExportError(f"ExecuTorch export of {meta['arch']} at {request.precision} failed: "
                              f"{type(exc).__name__}: {exc}",
                              fix="Check the operators torch.export / XNNPACK report as unsupported; use the "
                                  "onnxruntime target meanwhile.") from exc
        (out / PROGRAM).write_bytes(pte)
        return ExportResult(files=[PROGRAM], tool_versions=versions(request.precision), notes=[*notes, delegated])

    @staticmethod
    def _calibration(request: ExportRequest) -> np.ndarray:
        if request.options.get("strategy", "ptq") not in ExecuTorchTarget.int8_strategies:
            raise UnsupportedSpecError(f"The executorch target has no INT8 strategy {request.options['strategy']!r}.",
                                       fix=f"Use one of: {', '.join(ExecuTorchTarget.int8_strategies)}.")
        if request.calibration is None or not len(request.calibration.inputs):
            raise UnsupportedSpecError("INT8 ExecuTorch export needs calibration images and none were given.",
                                       fix="Export through targets.api.export (it selects them from the training "
                                           "split), or set ExportRequest.calibration.")
        return request.calibration.inputs

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        if device not in self.capabilities.devices:
            raise UnsupportedSpecError(f"ExecuTorch (XNNPACK) device {device!r} is not supported here.",
                                       fix=f"Use one of: {', '.join(self.capabilities.devices)}.")
        from executorch.runtime import Runtime

        runtime = Runtime.get()
        if not runtime.backend_registry.is_available(XNNPACK_BACKEND):
            raise MissingDependencyError("This ExecuTorch runtime was built without the XNNPACK backend.",
                                         fix="pip install the executorch wheel from PyPI (it links XNNPACK).")
        method = runtime.load_program(out / PROGRAM).load_method(METHOD)

        def run(batch: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            # the program takes batch 1: run the rows one at a time
            return np.concatenate([method.execute([x[i:i + 1]])[0].numpy() for i in range(len(x))])

        return run
