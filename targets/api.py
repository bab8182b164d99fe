"""The export API (next to factory.api, which sits below targets/ and cannot import it): the
functions the CLI's `export` / `targets` commands, the chat assistant and the server call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, ClassVar

from pydantic import Field

from factory import params
from factory.api import Home, session
from factory.errors import ConfigError, FactoryError
from factory.models import resolve_model
from factory.workspace import atomic_write_bytes
from targets.base import TARGETS
from targets.compress import CompressPlan
from targets.compress import compress as run_compress
from targets.driver import ExportJob, ExportPlan
from targets.jobs import export_in_child, run_export
from targets.predictor import decode_image, image_files, load_predictor


class ExportParams(params.Params):
    """An export job's parameters (REST /v1/jobs, `edgefactory export`, the chat's export tool)."""

    what: ClassVar[str] = "Export parameter"
    model: str = Field(description="model NAME or NAME:vN")
    target: str = Field(description="runtime: openvino, onnxruntime, tflite, executorch, ncnn, coreml, tensorrt, web")
    precision: str = Field(default="fp32", description="fp32, fp16 or int8")
    max_drop: float = Field(default=1.0, ge=0, le=100, description="accuracy budget in points")
    calibration_size: int = Field(default=300, ge=1, le=100_000, description="INT8 calibration images")
    keep_if_slower: bool = Field(default=False, description="keep an INT8 artifact that is not faster than FP32")


def export(ref: str, target: str, *, precision: str = "fp32", max_drop: float = 1.0, device: str | None = None,
           calibration_size: int = 300, dynamic_batch: bool = False, keep_if_slower: bool = False,
           strategies: tuple[str, ...] | None = None, home: Home = None,
           log: Callable[[str], None] | None = None, in_process: bool = False) -> dict:
    """Export model `NAME[:vN]` to `target` at `precision` with parity and re-evaluation.

    Returns: {artifact, path, size_mb, accuracy (re-evaluated with the target's runtime),
    reference_accuracy (PyTorch FP32), accuracy_drop_points, parity, compression, notes}.
    Raises: NotFoundError (unknown target / model, with a suggestion), UnsupportedSpecError (every
    violation of the target's capabilities at once), ParityError, BudgetError (over max_drop, or
    INT8 not faster than FP32), DatasetError (no calibration data). Nothing is written on failure.
    `strategies` restricts the INT8 strategies tried (default: the target's own list, in its order).
    The work runs in a child process (converters are native code that can crash): a crash raises
    ExportError with code NATIVE_CRASH. `in_process=True` runs it here (debuggers, patched drivers).
    """
    params.check(ExportParams, {"model": ref, "target": target, "precision": precision, "max_drop": max_drop,
                                "calibration_size": calibration_size, "keep_if_slower": keep_if_slower})
    plan = ExportPlan(target=target, precision=precision, device=device, max_drop=max_drop,
                      calibration_size=calibration_size, dynamic_batch=dynamic_batch, keep_if_slower=keep_if_slower,
                      options={"strategies": tuple(strategies)} if strategies else {})
    with session(home) as (ws, catalog):
        if in_process:
            return run_export(ExportJob(ws, catalog, ref, plan, log=log))
        resolve_model(catalog, ref)  # an unknown model fails here, without starting a process
    return export_in_child(ws.home, ref, plan, log=log)


GPU_DEVICES = ("cuda", "gpu")


def gpus_needed(target: str, device: str | None = None) -> float:
    """The GPUs a job exporting to or measuring `target` on `device` (default: the target's own) needs on a cluster's
    worker (factory.executors): one for a GPU device (TensorRT's cuda, OpenVINO's gpu), else none."""
    from targets.driver import default_device

    return 1.0 if (device or default_device(TARGETS.get(target))) in GPU_DEVICES else 0.0


def compress(ref: str, target: str, *, prune: float | None = None, target_latency_ms: float | None = None,
             max_drop: float = 1.0, precision: str = "fp32", finetune_epochs: int = 15, keep_if_slower: bool = False,
             home: Home = None, log: Callable[[str], None] | None = None) -> dict:
    """Prune model `NAME[:vN]` (structured channels) toward `prune` (fraction of MACs to remove) or
    `target_latency_ms` (measured with `target`'s runtime), fine-tune it, register it as a new version
    and export that to `target` at `precision`, all within `max_drop` points of the original.

    Returns: {model, version (the new one), artifact, path, size_mb, accuracy, reference_accuracy,
    parity, compression, pruning: {before, after (params, MACs, latency_ms, accuracy), ...}}.
    Raises: BudgetError (nothing registered), UnsupportedSpecError, ConfigError, NotFoundError.
    """
    plan = CompressPlan(target=target, prune=prune, target_latency_ms=target_latency_ms, max_drop=max_drop,
                        precision=precision, finetune_epochs=finetune_epochs, keep_if_slower=keep_if_slower)
    with session(home) as (ws, catalog):
        return run_compress(ws, catalog, ref, plan, log=log)


def list_targets() -> list[dict]:
    """Every registered target with its capabilities and what is missing to export / run it here."""
    out = []
    for name in TARGETS.names():
        caps = TARGETS.get(name).capabilities
        out.append({"target": name, **caps.to_dict(), "missing_for_export": caps.missing_modules("export"),
                    "missing_for_runtime": caps.missing_modules("runtime")})
    return out


def list_artifacts(ref: str | None = None, *, home: Home = None) -> list[dict]:
    with session(home) as (_, catalog):
        if ref is None:
            return catalog.artifacts()
        row = resolve_model(catalog, ref)
        return catalog.artifacts(row["name"], row["version"])


def predict_folder(ref: str, input_dir: str | Path, out: str | Path, *, target: str | None = None,
                   precision: str | None = None, top_k: int | None = None, min_score: float | None = None,
                   batch_size: int = 32, home: Home = None,
                   progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Predict every image under `input_dir` with model `NAME[:vN]` and write one JSON line per image
    to `out` ({file, predictions, width, height} or {file, error}); written atomically at the end.
    Predictions are the top_k labels (default 5), a detector's boxes [x1, y1, x2, y2] in the image's
    pixels with score >= min_score (default 0.25), at most top_k (default: all), or an OCR model's text lines
    {text, score, points (four corners in the image's pixels), box_score} in reading order.

    Returns: {out, images, failed, target, precision}. Raises: NotFoundError, UnsupportedSpecError, ConfigError.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder.", fix="Give a folder of images.")
    files = image_files(folder)
    if not files:
        raise ConfigError(f"No images under {folder}.", fix="Put .jpg / .png / .bmp / .webp files in it.")
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1.", fix="e.g. --batch-size 32")
    if top_k is not None and top_k < 1:
        raise ConfigError("--top-k must be at least 1.", fix="e.g. --top-k 3")
    if min_score is not None and not 0 <= min_score <= 1:
        raise ConfigError(f"--min-score must be from 0 to 1, got {min_score}.", fix="e.g. --min-score 0.4")
    progress = progress or (lambda stage, done, total: None)
    with session(home) as (ws, catalog):
        predictor = load_predictor(ws, catalog, ref, target, precision)
    lines, failed = [], 0
    for start in range(0, len(files), batch_size):
        chunk, images, names = files[start:start + batch_size], [], []
        for path in chunk:
            try:
                images.append(decode_image(path.read_bytes()))
                names.append(path)
            except (FactoryError, OSError) as exc:
                failed += 1
                lines.append({"file": str(path.relative_to(folder)), "error": str(exc)})
        for path, img, preds in zip(names, images, predictor.predict(images, top_k, min_score) if images else []):
            lines.append({"file": str(path.relative_to(folder)), "predictions": preds, "width": img.size[0], "height": img.size[1]})
        progress("predict", min(start + batch_size, len(files)), len(files))
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    atomic_write_bytes(Path(out), text.encode())
    return {"out": str(out), "images": len(files), "failed": failed, "target": predictor.target,
            "precision": predictor.precision, "model": f"{predictor.model}:v{predictor.version}"}
