"""What every prediction route shares (the REST routes, the PAI-EAS route, the phone page's server check):
images from a request body, its options, decode + preprocess + infer in a worker thread, and the result's shape."""

from __future__ import annotations

import base64
import binascii
import os
import time
from typing import Any

import anyio
from fastapi import FastAPI, Request

from factory.errors import FactoryError
from factory.tasks import task_of
from serving.http import InputFormatError, parse_json, read_limited
from targets.predictor import Predictor, decode_image

MAX_BATCH = 64
IN_LOOP_BYTES = 64 * 1024  # a JSON body this small is parsed on the event loop; larger ones in a worker thread
# decode + preprocess + infer run in at most this many worker threads at once: the work is CPU-bound, so more
# threads than cores only contend for the GIL (delaying the event loop, /healthz included) and hold more decoded
# images in memory at once; requests past it wait their turn
PREDICT_THREADS = max(2, min(8, os.cpu_count() or 2))


def b64decode(text: Any, where: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise InputFormatError(f"{where} must be a non-empty base64 string.", fix="Base64-encode the image file's bytes.")
    if text.startswith("data:") and "," in text:  # a data URL from a browser
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputFormatError(f"{where} is not valid base64.", fix="Base64-encode the image file's bytes.") from None


def json_images(body: bytes, many: bool) -> tuple[list[bytes], dict]:
    """The images (base64 `image` or `images`) and the options of a JSON body."""
    payload = parse_json(body, 'Send {"image": "<base64>"}.')
    if not isinstance(payload, dict):
        raise InputFormatError("The JSON body must be an object.", fix='Send {"image": "<base64>"}.')
    raw = payload.get("images") if many else payload.get("image")
    raw = raw if isinstance(raw, list) else [raw] if raw is not None else []
    images = [b64decode(r, f"images[{i}]" if many else "image") for i, r in enumerate(raw)]
    return images, {k: v for k, v in payload.items() if k not in ("image", "images")}


async def request_images(request: Request, many: bool) -> tuple[list[bytes], dict]:
    """Image bytes from multipart (`image` / `images` / `file`) or JSON (`image` / `images` base64), plus options."""
    ctype = request.headers.get("content-type", "")
    body = await read_limited(request)
    if ctype.startswith("multipart/form-data"):
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartParser

        async def stream():
            yield body

        from starlette.formparsers import MultiPartException

        try:
            form = await MultiPartParser(request.headers, stream()).parse()
        except MultiPartException as exc:
            raise InputFormatError(f"The multipart body cannot be read ({exc.message}).",
                                   fix="Send multipart/form-data with a boundary and an `image` file.") from None
        files = [v for k, v in form.multi_items() if isinstance(v, UploadFile) and k in ("image", "images", "file", "files")]
        options = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        images = [await f.read() for f in files]
    elif ctype.startswith("application/json") or body[:1] in (b"{", b"["):
        if len(body) < IN_LOOP_BYTES:
            images, options = json_images(body, many)
        else:  # parsing and base64-decoding megabytes would hold the event loop (and /healthz) for milliseconds
            images, options = await anyio.to_thread.run_sync(json_images, body, many, limiter=request.app.state.predict_slots)
    else:
        raise InputFormatError(f"Unsupported content type {ctype or 'none'!r}.",
                               fix="Send multipart/form-data with an `image` file, or JSON {\"image\": \"<base64>\"}.")
    if not images:
        raise InputFormatError("No image in the request.", fix="Send an `image` file (multipart) or an `image` base64 field (JSON).")
    if len(images) > MAX_BATCH:
        raise InputFormatError(f"{len(images)} images in one request; at most {MAX_BATCH}.", fix="Split the batch.")
    return images, options


def min_score_option(value: Any) -> float | None:
    """The `min_score` option: a number in [0, 1], or None for the model's default."""
    if value in (None, ""):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = float("nan")
    if not 0.0 <= score <= 1.0:
        raise InputFormatError(f"min_score must be a number from 0 to 1, got {value!r}.", fix="e.g. min_score=0.4")
    return score


def int_option(value: Any, name: str, default: int | None) -> int | None:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputFormatError(f"{name} must be an integer, got {value!r}.", fix=f"Pass {name} as a number.") from None


async def run_predict(app: FastAPI, predictor: Predictor, data: list[bytes], top_k: int | None = None,
                      min_score: float | None = None) -> tuple[list, list, dict]:
    """Decode and preprocess one image at a time (a big upload never sits decoded beside the others), then
    infer, all in one worker thread (the event loop stays free). Returns (image sizes, results, timing)."""
    def work():
        t0 = time.perf_counter()
        sizes, inputs = [], []
        for d in data:
            image = decode_image(d)
            sizes.append(image.size)
            inputs.append(predictor.prepare(image))
            del image
        t1 = time.perf_counter()
        try:
            results = predictor.predict_prepared(inputs, sizes, top_k, min_score)
        except FactoryError:
            raise
        except Exception as exc:  # a runtime failing on valid input
            raise FactoryError(f"The model failed on this input: {type(exc).__name__}: {str(exc)[:200]}",
                               fix="Report this with the image.", code="MODEL_FORWARD_ERROR") from exc
        return sizes, results, {"decode_ms": (t1 - t0) * 1000, "inference_ms": (time.perf_counter() - t1) * 1000}

    sizes, results, timing = await anyio.to_thread.run_sync(work, limiter=app.state.predict_slots)
    app.state.metrics.inference.labels(predictor.model if predictor.model in app.state.pool.loaded_names() else "").observe(
        timing["inference_ms"] / 1000)
    return sizes, results, timing


def result_shape(predictor: Predictor, size: tuple[int, int], predictions: list[dict]) -> dict:
    """One image's result: the task's predictions best first, with the keys the task names (a detector's carry
    `box` [x1, y1, x2, y2] in the pixels of the image sent, upright after its EXIF orientation)."""
    keys = task_of(predictor.meta).prediction_keys
    return {"task": predictor.task, "predictions": [{k: p[k] for k in keys} for p in predictions],
            "image": {"width": size[0], "height": size[1]}}
