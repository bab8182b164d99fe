"""`ncnn`: Tencent ncnn (model.ncnn.param + model.ncnn.bin) for phone and embedded CPUs, converted
from TorchScript by pnnx, run here with the `ncnn` Python package on the CPU.

FP16 stores the weights as half floats (a .bin half the size). ncnn computes in fp16 only on CPUs
with fp16 vector arithmetic (ARMv8.2+); on x86 it widens the weights and computes in fp32, so parity
measured here covers the weight rounding, not fp16 arithmetic on a phone. INT8 is left out: it
needs ncnn's `ncnn2table` / `ncnn2int8` tools, which the `ncnn` and `pnnx` wheels do not ship.
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from factory.errors import ExportError, UnsupportedSpecError
from targets.base import TARGETS, Capabilities, ExportRequest, ExportResult, Runner

PARAM, BIN = "model.ncnn.param", "model.ncnn.bin"
INPUT_NAME, OUTPUT_NAME = "input", "logits"  # the blob names the driver writes into metadata.json
PNNX_TIMEOUT_S = 600


def trace(model: nn.Module, meta: dict, path: Path) -> None:
    """TorchScript of `model` at batch 1, the format the pnnx converter reads."""
    example = torch.zeros(1, *meta["input_size"])
    try:
        with warnings.catch_warnings():  # torch.jit.trace warns it is deprecated; pnnx still reads TorchScript
            warnings.simplefilter("ignore")
            torch.jit.trace(model, example).save(str(path))
    except Exception as exc:  # tracing errors come in many types
        raise ExportError(f"TorchScript tracing of {meta['arch']} for pnnx failed: {type(exc).__name__}: {exc}",
                          fix="Check that the model's forward() has no data-dependent control flow.") from exc


def run_pnnx(traced: Path, meta: dict, out: Path, fp16: bool) -> None:
    """Convert `traced` with the pnnx binary; pnnx's own files (pnnx.param/bin/py/onnx) stay in traced's folder."""
    import pnnx

    work, stem = traced.parent, traced.stem
    shape = ",".join(str(d) for d in (1, *meta["input_size"]))
    command = [pnnx.EXEC_PATH, str(traced), f"inputshape=[{shape}]f32", "device=cpu", f"fp16={int(fp16)}",
               f"pnnxparam={work / (stem + '.pnnx.param')}", f"pnnxbin={work / (stem + '.pnnx.bin')}",
               f"pnnxpy={work / (stem + '_pnnx.py')}", f"pnnxonnx={work / (stem + '.pnnx.onnx')}",
               f"ncnnpy={work / (stem + '_ncnn.py')}", f"ncnnparam={out / PARAM}", f"ncnnbin={out / BIN}"]
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    written = all((out / name).is_file() and (out / name).stat().st_size > 0 for name in (PARAM, BIN))
    if proc.returncode != 0 or not written:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise ExportError(f"pnnx could not convert {meta['arch']} to ncnn (exit code {proc.returncode}): {tail}",
                          fix="Check the layers pnnx reports as unsupported; use another target meanwhile.")


def rename_io_blobs(path: Path) -> tuple[str, str]:
    """Rename pnnx's single input / output blobs (in0 / out0) to `input` / `logits`, the names written in
    the artifact metadata. Returns the old names."""
    lines = path.read_text().splitlines()
    layers = [line.split() for line in lines[2:] if line.strip()]
    consumed, produced, inputs = set(), [], []
    for fields in layers:
        n_in, n_out = int(fields[2]), int(fields[3])
        consumed.update(fields[4:4 + n_in])
        produced.extend(fields[4 + n_in:4 + n_in + n_out])
        if fields[0] == "Input":
            inputs.extend(fields[4 + n_in:4 + n_in + n_out])
    outputs = [b for b in produced if b not in consumed]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"The ncnn graph has inputs {inputs} and outputs {outputs}; one of each was expected.",
                          fix="Export a model with one image input and one logits output.")
    renames = {inputs[0]: INPUT_NAME, outputs[0]: OUTPUT_NAME}
    for fields in layers:  # layer line: type name n_in n_out blobs... key=value...
        n_blobs = int(fields[2]) + int(fields[3])
        fields[4:4 + n_blobs] = [renames.get(b, b) for b in fields[4:4 + n_blobs]]
        if fields[0] == "Input":
            fields[1] = INPUT_NAME
    path.write_text("\n".join([*lines[:2], *(" ".join(f) for f in layers)]) + "\n")
    return inputs[0], outputs[0]


def make_net(out: Path, precision: str, threads: int = 0):
    """An ncnn.Net over the artifact; fp16 storage / arithmetic only for fp16 artifacts (ncnn enables
    them by default, which would round an fp32 model's weights)."""
    import ncnn

    net = ncnn.Net()
    fp16 = precision == "fp16"
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = fp16
    net.opt.use_bf16_storage = False
    net.opt.use_vulkan_compute = False
    if threads:
        net.opt.num_threads = threads
    if net.load_param(str(out / PARAM)) != 0 or net.load_model(str(out / BIN)) != 0:
        raise UnsupportedSpecError(f"ncnn could not load {out / PARAM} / {out / BIN}.",
                                   fix="Re-export the artifact; it may be damaged or from a newer ncnn.")
    return net


def ncnn_runner(out: Path, precision: str, threads: int = 0) -> Runner:
    import ncnn

    net = make_net(out, precision, threads)
    (input_name,), (output_name,) = net.input_names(), net.output_names()

    def run_one(image: np.ndarray) -> np.ndarray:
        chw = np.ascontiguousarray(image, dtype=np.float32)  # ncnn has no batch axis; kept alive until extract
        ex = net.create_extractor()
        ex.input(input_name, ncnn.Mat(chw))
        ret, mat = ex.extract(output_name)
        if ret != 0:
            raise RuntimeError(f"ncnn extract({output_name!r}) failed with code {ret}")
        return np.array(mat, dtype=np.float32).reshape(1, -1)

    def run(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([run_one(image) for image in batch])  # static batch 1, one image at a time

    return run


def fp16_note() -> str:
    import ncnn

    if ncnn.cpu_support_arm_asimdhp():
        return "fp16 weights and fp16 arithmetic (this CPU has ARMv8.2 fp16): parity measured with fp16 maths"
    return (f"fp16 weights; this {platform.machine()} CPU has no ncnn fp16 arithmetic, so ncnn widened them and "
            "computed in fp32: parity covers the weight rounding only. ARMv8.2+ phones compute in fp16; re-check "
            "accuracy there")


def ncnn_versions() -> dict[str, str]:
    import importlib.metadata

    import ncnn

    return {"pnnx": importlib.metadata.version("pnnx"), "ncnn": ncnn.__version__, "torch": torch.__version__}


@TARGETS.register("ncnn")
class NcnnTarget:
    name = "ncnn"
    capabilities = Capabilities(precisions=("fp32", "fp16"), devices=("cpu",), dynamic_batch=False,
                                export_modules=("pnnx", "ncnn"), runtime_modules=("ncnn",),
                                notes="ncnn param/bin converted by pnnx; static batch 1. FP16 is fp16 weights, and "
                                      "fp16 arithmetic only on ARMv8.2+ CPUs (fp32 arithmetic on x86). No INT8: "
                                      "ncnn2table / ncnn2int8 are not in the ncnn or pnnx wheels.")

    def export(self, model: nn.Module, meta: dict, out: Path, request: ExportRequest) -> ExportResult:
        fp16 = request.precision == "fp16"
        with tempfile.TemporaryDirectory(prefix=".pnnx-", dir=out) as work:
            traced = Path(work) / "model.pt"
            trace(model, meta, traced)
            run_pnnx(traced, meta, out, fp16)
        old_in, old_out = rename_io_blobs(out / PARAM)
        try:  # pnnx writes layers ncnn lacks as-is; loading here catches them at export, not on the phone
            make_net(out, request.precision)
        except UnsupportedSpecError as exc:
            raise ExportError(f"ncnn cannot load what pnnx wrote for {meta['arch']}: {exc.message}",
                              fix="A layer of the model has no ncnn implementation; use another target.") from exc
        notes = [f"pnnx blobs {old_in} / {old_out} renamed to {INPUT_NAME} / {OUTPUT_NAME}; input is one CHW image "
                 "(ncnn has no batch axis)"]
        if fp16:
            notes.append(fp16_note())
        return ExportResult(files=[PARAM, BIN], tool_versions=ncnn_versions(), notes=notes)

    def load(self, out: Path, meta: dict, device: str = "cpu") -> Runner:
        if device != "cpu":
            raise UnsupportedSpecError(f"The ncnn target runs on the CPU here, not on {device!r}.",
                                       fix="Use device cpu.")
        return ncnn_runner(out, meta.get("precision", "fp32"))
