"""Predict with an exported artifact (or the eager model): decode -> preprocess (the metadata's
spec: a stretch resize, or a letterbox) -> the target's runner -> the task's NumPy post-processing (softmax
top-k, FCOS decode + NMS with the boxes mapped back to the original image, ...). One implementation for
the server, `edgefactory predict` and the benchmarks; the phone page mirrors it in JavaScript."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from factory.catalog import Catalog
from factory.datasets.images import FORMATS, MAX_PIXELS, letterbox, open_image, to_rgb
from factory.errors import FactoryError, NotFoundError, UnsupportedSpecError
from factory.models import load_model, read_metadata, resolve_model
from factory.tasks import task_of
from factory.workspace import Workspace
from targets.base import TARGETS, Runner
from targets.pytorch import eager_runner

# served first when a deployment names no target: fastest runtimes here first
PREFERRED = (("openvino", "int8"), ("openvino", "fp32"), ("onnxruntime", "fp32"), ("pytorch", "fp32"))


class ImageInputError(FactoryError):
    """The bytes sent are not an image this server will decode."""

    code = "IMAGE_DECODE_ERROR"


DECODE_MAX_PIXELS = 50_000_000  # a 48 MP phone photo fits; a model reads at most a few megapixels of it
LARGE_DECODE = 4_000_000  # pixels from which a decode takes one of the few large-decode slots
_LARGE_DECODES = threading.BoundedSemaphore(4)  # 4 x 50 MP in RGB with its copies: about 1 GB at the worst


def decode_image(data: bytes) -> Image.Image:
    """Bytes -> RGB image; refuses empty input, formats other than images.FORMATS (never EPS: Ghostscript),
    decompression bombs and images over DECODE_MAX_PIXELS with a clear error; large images decode a few at a time."""
    if not data:
        raise ImageInputError("The image is empty (0 bytes).", fix="Send the image file's bytes.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(io.BytesIO(data)) as img:
                pixels = img.size[0] * img.size[1]
                if pixels > MAX_PIXELS:
                    raise ImageInputError(f"The image is {img.size[0]}x{img.size[1]} pixels, over the "
                                          f"{MAX_PIXELS:,}-pixel limit (a decompression bomb?).",
                                          fix="Send a smaller image.", code="DECOMPRESSION_BOMB")
                if pixels > DECODE_MAX_PIXELS:
                    raise ImageInputError(f"The image is {img.size[0]}x{img.size[1]} pixels ({pixels / 1e6:.0f} MP), "
                                          f"over the {DECODE_MAX_PIXELS / 1e6:.0f} MP this server decodes.",
                                          fix="Resize it on the client (the model reads at most a few megapixels).",
                                          code="IMAGE_TOO_LARGE")
                with _LARGE_DECODES if pixels > LARGE_DECODE else contextlib.nullcontext():
                    img.load()
                    return to_rgb(ImageOps.exif_transpose(img))  # upright, as a phone's browser shows a photo
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(f"The image was refused as a decompression bomb ({exc}).", fix="Send a smaller image.",
                              code="DECOMPRESSION_BOMB") from None
    except Image.UnidentifiedImageError:
        raise ImageInputError(f"The data is not an image in a format this server reads ({', '.join(FORMATS)}).",
                              fix="Send a JPEG, PNG, BMP or WebP file.") from None
    except Exception as exc:  # PIL raises many types for truncated or corrupt data
        raise ImageInputError(f"The data is not a decodable image ({type(exc).__name__}: {str(exc)[:120]}).",
                              fix="Send a JPEG, PNG, BMP or WebP file.") from None


def preprocess(images: list[Image.Image], pre: dict) -> np.ndarray:
    """RGB images -> normalised NCHW float32, exactly as training and export did (PIL bilinear stretch,
    or a letterbox into the square input for detectors)."""
    w, h = pre["resize"][1], pre["resize"][0]
    if pre.get("resize_mode") == "letterbox":
        resized = [letterbox(img, h)[0] for img in images]
    else:
        resized = [img.resize((w, h), Image.Resampling.BILINEAR) for img in images]
    arr = np.stack([np.asarray(img, dtype=np.float32) for img in resized])
    arr = arr * pre["scale"]
    arr = (arr - np.asarray(pre["mean"], np.float32)) / np.asarray(pre["std"], np.float32)
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2), dtype=np.float32)


@dataclass
class Predictor:
    """A loaded runner for one (model version, target, precision) with its metadata."""

    model: str
    version: int
    target: str
    precision: str
    meta: dict
    runner: Runner
    dynamic_batch: bool

    def __post_init__(self):
        self._lock = threading.Lock()  # runtimes differ in thread safety: one call at a time per model

    @property
    def task(self) -> str:
        return task_of(self.meta).name

    @property
    def pipeline(self) -> bool:
        """Several networks (`runner` is a dict of them by name), composed on the image itself by the task's `read`."""
        return isinstance(self.runner, dict)

    def prepare(self, image: Image.Image) -> Any:
        """What the model reads of one decoded image: its preprocessed input (1, C, H, W); a model of several
        networks reads the image itself (it crops from it)."""
        return image if self.pipeline else preprocess([image], self.meta["preprocessing"])

    def predict_prepared(self, prepared: list, sizes: list[tuple[int, int]], top_k: int | None = None,
                         min_score: float | None = None) -> list[list[dict]]:
        """Per image, the task's predictions from what `prepare` made of it (`sizes`: the images' width, height)."""
        if self.pipeline:
            with self._lock:
                return task_of(self.meta).read(self.runner, prepared, self.meta, top_k, min_score)
        return self.predict_inputs(np.concatenate(prepared), top_k, sizes, min_score)

    def predict(self, images: list[Image.Image], top_k: int | None = None, min_score: float | None = None) -> list[list[dict]]:
        return self.predict_prepared([self.prepare(img) for img in images], [img.size for img in images], top_k, min_score)

    def predict_inputs(self, x: np.ndarray, top_k: int | None = None, sizes: list[tuple[int, int]] | None = None,
                       min_score: float | None = None) -> list[list[dict]]:
        """Per image, the task's predictions best first (classification: the top-k labels {label, index, score},
        k = 5 by default; detection: {label, index, score, box [x1, y1, x2, y2]} with score >= min_score, 0.25 by
        default, at most top_k), in the pixels of the original image of size `sizes[i]` (width, height; default:
        the model's input)."""
        with self._lock:
            if self.dynamic_batch:
                raw = np.asarray(self.runner(x))
            else:
                raw = np.concatenate([np.asarray(self.runner(x[i:i + 1])) for i in range(len(x))])
        return task_of(self.meta).postprocess(raw, self.meta, sizes or [tuple(x.shape[:1:-1])] * len(x), top_k, min_score)


def load_predictor(ws: Workspace, catalog: Catalog, ref: str, target: str | None = None,
                   precision: str | None = None, device: str = "cpu") -> Predictor:
    """The runner of `ref` on `target`/`precision` (default: the first of PREFERRED it has)."""
    row = resolve_model(catalog, ref)
    have = {(a["target"], a["precision"]): a for a in catalog.artifacts(row["name"], row["version"])}
    if target is None:
        target, precision = next(((t, p) for t, p in PREFERRED if (precision in (None, p)) and ((t, p) in have or t == "pytorch")),
                                 ("pytorch", precision))
    precision = precision or ("int8" if (target, "int8") in have else "fp32")
    if target == "pytorch" and precision == "fp32":
        model, meta = load_model(ws, row)
        runner = ({name: r for name, (r, _) in network_runners(target, None, meta, device, model).items()}
                  if task_of(meta).is_pipeline(meta) else eager_runner(model))
        return Predictor(row["name"], row["version"], target, precision, meta, runner, True)
    folder, meta = runnable_artifact(ws, catalog, row, target, precision, device)
    if "networks" in meta:  # one subfolder per network
        runner = {name: r for name, (r, _) in network_runners(target, folder, meta, device).items()}
        return Predictor(row["name"], row["version"], target, precision, meta, runner, False)
    runner = TARGETS.get(target)().load(folder, meta, device)
    return Predictor(row["name"], row["version"], target, precision, meta, runner, meta["input_shape"][0] == -1)


def network_runners(target: str, folder: Path | None, meta: dict, device: str,
                    model=None) -> dict[str, tuple[Runner, list[int]]]:
    """A model of several networks: per network, its runner and its example input size, from the artifact's
    subfolders in `folder`, or (folder None) from the eager `model`'s networks."""
    if folder is None:
        task = task_of(meta)
        nets = {name: task.network(model, meta, name) for name in task.networks(meta)}
        return {name: (eager_runner(n.module), n.meta["input_size"]) for name, n in nets.items()}
    return {name: (TARGETS.get(target)().load(folder / name, {**meta, **net}, device), net["input_size"])
            for name, net in meta["networks"].items()}


def runs_on(meta: dict, device: str) -> bool:
    """Whether an artifact runs here on `device` with its own runtime (not a proxy, not another OS)."""
    return meta.get("device", "cpu") == device and not meta.get("proxy") and bool(meta.get("runnable_here", True))


def runnable_artifact(ws: Workspace, catalog: Catalog, row: dict, target: str, precision: str,
                      device: str = "cpu") -> tuple[Path, dict]:
    """(folder, metadata with the version's dataset) of the artifact of `row` on `target`/`precision`, when it
    runs here on `device`. Raises NotFoundError (naming the export command) or UnsupportedSpecError."""
    TARGETS.get(target)  # an unknown target name gets its suggestion first
    arts = catalog.artifacts(row["name"], row["version"])
    found = [a for a in arts if a["target"] == target and a["precision"] == precision]
    if not found:
        have = ", ".join(f"{a['target']}/{a['precision']}" for a in arts) or "none"
        raise NotFoundError(f"{row['name']}:v{row['version']} has no {target} {precision} artifact (it has: {have}).",
                            fix=f"Export it first: edgefactory export {row['name']}:v{row['version']} --target {target} "
                                f"--precision {precision}")
    folder = ws.home / found[0]["path"]
    meta = {**json.loads((folder / "metadata.json").read_text()), "dataset": read_metadata(ws, row)["dataset"]}
    if not runs_on(meta, device):
        why = (f"made for device {meta.get('device')!r} and only checked here with {meta['proxy']}"
               if meta.get("proxy") or meta.get("device", "cpu") != device else "; ".join(meta.get("notes", [])))
        raise UnsupportedSpecError(f"The {target} {precision} artifact does not run here on {device!r} ({why}).",
                                   fix="Measure or serve it on its device (the QR preview page does so for `web`); "
                                       "deploy an openvino, onnxruntime or pytorch artifact on this server.")
    return folder, meta


def image_files(folder: Path) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)
