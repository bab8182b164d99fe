"""The phone preview: `/p/<token>` (a signed, expiring, revocable link naming a model version's
`web` artifact) serves a mobile-first page that runs the model in the phone's browser with
onnxruntime-web from this server (no CDN), compares with the server, and reports its latency,
which becomes a measured row of the phone in the model's benchmark report."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import threading
import time
from html import escape
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from factory.errors import FactoryError, MissingDependencyError, NotFoundError
from factory.models import read_metadata, resolve_model
from factory.tasks import task_of
from serving import access
from serving.http import InputFormatError, parse_json, read_limited
from serving.inference import request_images, result_shape, run_predict

WEB = Path(__file__).with_name("web")
ORT_DIR = Path(__file__).with_name("static") / "ort"  # vendored from the npm package by scripts/setup


def _link(app: FastAPI, token: str) -> tuple[dict, Path, dict]:
    """(link row, artifact folder, artifact metadata) for a valid token."""
    with app.state.catalog() as cat:
        link = access.check_link(app.state.ws, cat, token)
        arts = [a for a in cat.artifacts(link["model"], link["version"])
                if a["target"] == link["target"] and a["precision"] == link["precision"]]
    if not arts:
        raise NotFoundError(f"The {link['target']} {link['precision']} artifact of {link['model']}:v{link['version']} is gone.",
                            fix="Export it again and make a new QR code.")
    folder = app.state.ws.home / arts[0]["path"]
    return link, folder, json.loads((folder / "metadata.json").read_text())


def device_from_agent(agent: str) -> dict:
    """A browser device row: id from the user agent, a readable name (platform + browser)."""
    platform = next((m.group(0) for p in (r"iPhone[^;)]*", r"iPad[^;)]*", r"Android [\d.]+; [^;)]+", r"Windows NT [\d.]+",
                                          r"Mac OS X [\d_]+", r"Linux [^;)]+")
                     if (m := re.search(p, agent))), "unknown device")
    browser = next((m.group(0) for p in (r"HeadlessChrome/[\d]+", r"EdgA?/[\d]+", r"Chrome/[\d]+", r"CriOS/[\d]+",
                                         r"Firefox/[\d]+", r"Version/[\d.]+ Mobile/\S+ Safari", r"Safari/[\d]+")
                    if (m := re.search(p, agent))), "browser")
    digest = hashlib.sha1(agent.encode()).hexdigest()[:8]
    return {"id": f"browser-{digest}", "name": f"{platform} ({browser.split('/')[0]} {browser.split('/')[-1][:4]})".strip(),
            "kind": "browser", "user_agent": agent[:300]}


def page(link: dict, meta: dict, model_meta: dict) -> str:
    task = task_of(meta)
    metric, label = task.metric, task.metric_label
    accuracy = meta.get("accuracy") if meta.get("accuracy") is not None else (model_meta.get("metrics") or {}).get(metric)
    created = datetime.datetime.fromtimestamp(model_meta.get("created_at") or meta["created_at"]).strftime("%Y-%m-%d %H:%M")
    facts = [("model", f"{link['model']}:v{link['version']}"), ("artifact", f"{link['target']} {link['precision']}, {meta['size_mb']:.2f} MB"),
             ("task", task.name),
             (label, "–" if accuracy is None else f"{accuracy:.2%} ({meta.get('eval_split', 'test')})"),
             *([(task.class_word, str(len(meta["classes"])))] if meta.get("classes") else []), ("created", created)]
    # the page translates the names (data-i18n, serving/web/i18n.js), and the task's name among the values
    rows = "".join(f"<dt data-i18n>{escape(k)}</dt><dd{' data-i18n' if k == 'task' else ''}>{escape(v)}</dd>"
                   for k, v in facts)
    return (WEB / "preview.html").read_text().replace("{{title}}", escape(f"{link['model']}:v{link['version']}")).replace("{{facts}}", rows)


MEASUREMENTS_PER_HOUR = 30  # per link: the page sends one after 20 runs, then one every 500
LATENCY_KEYS = ("p50", "p90", "p99", "mean")


def measurement(body) -> tuple[dict, str, int | None]:
    """(latency_ms, backend, threads) of a measurement body, each checked; InputFormatError says what is wrong."""
    fix = 'Send {"latency_ms": {"p50": 12.5, "p90": 14.0, "p99": 20.1}, "backend": "wasm", "threads": 4}.'
    if not isinstance(body, dict) or not isinstance(body.get("latency_ms"), dict):
        raise InputFormatError("The measurement needs `latency_ms`, an object of milliseconds.", fix=fix)
    lat = {k: v for k, v in body["latency_ms"].items() if k in LATENCY_KEYS}
    if "p50" not in lat or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e6
                                   for v in lat.values()):
        raise InputFormatError("latency_ms needs p50 (and may hold p90, p99, mean): milliseconds above 0.", fix=fix)
    backend = body.get("backend", "wasm")
    if backend not in ("wasm", "webgpu"):
        raise InputFormatError(f"backend must be wasm or webgpu, got {str(backend)[:40]!r}.", fix=fix)
    threads = body.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256):
        raise InputFormatError("threads must be a whole number from 1 to 256.", fix=fix)
    return {k: float(v) for k, v in lat.items()}, backend, threads


class RateLimit:
    """At most `count` events per `seconds` for each key (a sliding window, in memory)."""

    def __init__(self, count: int, seconds: float):
        self.count, self.seconds = count, seconds
        self._times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._times.get(key, []) if now - t < self.seconds]
            if len(recent) >= self.count:
                raise FactoryError(f"This link sent {len(recent)} measurements in the last hour, the most it may.",
                                   fix="Send the latency once a run is done (the page does it itself).", code="RATE_LIMITED")
            self._times[key] = recent + [now]


def mount(app: FastAPI) -> None:
    if ORT_DIR.is_dir():
        app.mount("/static/ort", StaticFiles(directory=ORT_DIR), name="ort")
    app.mount("/static/preview", StaticFiles(directory=WEB), name="preview-js")

    @app.get("/p/{token}", response_class=HTMLResponse, tags=["preview"])
    async def preview_page(token: str) -> HTMLResponse:
        """The phone page (mobile-first): runs the model in the browser; camera or photo; latency and FPS."""
        link, _, meta = await anyio.to_thread.run_sync(_link, app, token)
        if not (ORT_DIR / "ort.wasm.min.js").is_file():
            raise MissingDependencyError("The in-browser runtime (onnxruntime-web) is not installed on this server.",
                                         fix="Run scripts/setup (it vendors onnxruntime-web from npm).")
        with app.state.catalog() as cat:
            model_meta = read_metadata(app.state.ws, resolve_model(cat, f"{link['model']}:v{link['version']}"))
        return HTMLResponse(page(link, meta, model_meta), headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    @app.get("/p/{token}/meta", tags=["preview"])
    async def preview_meta(token: str) -> dict:
        link, _, meta = await anyio.to_thread.run_sync(_link, app, token)
        keep = ("model", "version", "task", "target", "precision", "classes", "preprocessing", "postprocessing", "input_shape",
                "input_name", "output_name", "output_shape", "size_mb", "accuracy", "metric", "created_at")
        # the page keeps boxes scoring at least what the server's predict keeps, so the two compare
        networks = {name: {k: n.get(k) for k in ("input_size", "precision", "dynamic_axes")}
                    for name, n in (meta.get("networks") or {}).items()}
        return ({k: meta.get(k) for k in keep} | {"expires_at": link["expires_at"], "min_score": task_of(meta).min_score}
                | ({"networks": networks} if networks else {}))

    @app.get("/p/{token}/model.onnx", tags=["preview"])
    async def preview_model(token: str) -> FileResponse:
        _, folder, meta = await anyio.to_thread.run_sync(_link, app, token)
        return FileResponse(folder / meta["files"][0], media_type="application/octet-stream",
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/p/{token}/networks/{name}/model.onnx", tags=["preview"])
    async def preview_network(token: str, name: str) -> FileResponse:
        """One network of a model of several (OCR: detector, recognizer), each run by the page in the browser."""
        _, folder, meta = await anyio.to_thread.run_sync(_link, app, token)
        network = (meta.get("networks") or {}).get(name)
        if network is None:
            raise NotFoundError(f"This model has no network {name!r} (it has: {', '.join(meta.get('networks') or {}) or 'one'}).",
                                fix="Load the networks the page's meta names.")
        return FileResponse(folder / name / network["files"][0], media_type="application/octet-stream",
                            headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/p/{token}/predict", tags=["preview"])
    async def preview_predict(token: str, request: Request) -> dict:
        """The same picture on the server (best runtime here for this model version), to compare."""
        link, _, _ = await anyio.to_thread.run_sync(_link, app, token)
        data, _ = await request_images(request, many=False)
        # the best runtime here for this version, loaded once by the server's pool
        predictor = await anyio.to_thread.run_sync(app.state.pool.load, link["model"], link["version"])
        images, results, timing = await run_predict(app, predictor, data)
        return {"model": predictor.model, "version": predictor.version, "target": predictor.target,
                "precision": predictor.precision, **result_shape(predictor, images[0], results[0]), "timing_ms": timing}

    limiter = RateLimit(MEASUREMENTS_PER_HOUR, 3600.0)

    @app.post("/p/{token}/measurement", tags=["preview"])
    async def preview_measurement(token: str, request: Request) -> JSONResponse:
        """The page's measured latency: stored as a measured row of this phone in the benchmark report."""
        from benchmarks import api as bench_api

        link, _, meta = await anyio.to_thread.run_sync(_link, app, token)
        body = parse_json(await read_limited(request, 64 * 1024), "Send {latency_ms: {p50, p90, p99}, user_agent}.")
        lat, backend, threads = measurement(body)
        limiter.take(link["id"])
        device = device_from_agent(str(body.get("user_agent") or request.headers.get("user-agent", ""))[:512])
        device["runtime_device"] = f"browser-{backend}"
        result = {"latency_ms": lat, "size_mb": meta["size_mb"],
                  "throughput": {"images_per_s": 1000 / lat["p50"], "batch": 1, "threads": threads}}
        row = await anyio.to_thread.run_sync(lambda: bench_api.record_measurement(
            f"{link['model']}:v{link['version']}", link["target"], link["precision"], device, result, home=app.state.ws.home))
        return JSONResponse({"recorded": True, "device": device, "latency_ms": row["latency_ms"]}, status_code=201)
