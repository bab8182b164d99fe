"""The FastAPI app: REST API (/v1), the PAI-EAS compatible route, health and Prometheus metrics,
jobs with server-sent progress, and the phone-preview pages. Runners load at start-up (lifespan),
inference runs in worker threads (one call at a time per model, so requests queue per model and
health checks never wait), and every error has one JSON shape with a stable code and a fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest)
from starlette.exceptions import HTTPException as StarletteHTTPException

from factory import api as core_api
from factory.catalog import Catalog, CatalogBusy
from factory.errors import FactoryError, NotFoundError
from factory.refs import parse_ref
from factory.registry import suggest
from factory.tasks import task_of
from factory.workspace import Workspace
from serving import access, deployments, gallery, gallery_preview, memory, preview, qr
from serving.hosts import HostGuard, allowed_hosts
from serving.http import InputFormatError, bearer, error_response, is_loopback, pai_error, parse_json, read_limited
from serving.inference import PREDICT_THREADS, b64decode, int_option, min_score_option, request_images, result_shape, run_predict
from serving.jobs import ApiJobs
from serving.protocol import FramingGuard, GuardedH11Protocol

disable_created_metrics()
VERSION = "1"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("edgefactory_requests_total", "HTTP requests", ["route", "model", "status"], registry=self.registry)
        self.latency = Histogram("edgefactory_request_seconds", "HTTP request latency", ["route", "model"], registry=self.registry,
                                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
        self.errors = Counter("edgefactory_errors_total", "Errors by stable code", ["code", "model"], registry=self.registry)
        self.inference = Histogram("edgefactory_inference_seconds", "Runner time per request", ["model"], registry=self.registry,
                                   buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5))
        # per server process: one series per live worker's PID in multiprocess mode (`serve --workers N`)
        self.worker_requests = Gauge("edgefactory_worker_requests", "HTTP requests this server process served",
                                     registry=self.registry, multiprocess_mode="liveall")

    def exposition(self) -> bytes:
        """The text format: this process's metrics, or with several workers (PROMETHEUS_MULTIPROC_DIR set by
        serving.workers) the totals over all of them and each live worker's requests."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


KEY_USE_FLUSH_S = 30.0  # how often the keys' last-used times are written (never by a request)
# how uvicorn serves the app (`edgefactory serve` and the tests' loopback server): the client's address is the
# socket's peer, never an X-Forwarded-For header (a proxy on this host passing it through verbatim would make every
# client "local"); idle keep-alive connections close after 5 s, a request head must arrive within 10 s and a body
# may pause 30 s at most (serving.protocol); past 256 connections at once new requests get 503
UVICORN_OPTIONS = {"proxy_headers": False, "log_level": "warning", "timeout_keep_alive": 5, "http": GuardedH11Protocol,
                   "limit_concurrency": 256}


def create_app(home: str | Path | None = None, *, log=print, base_url: str = "http://127.0.0.1:8000",
               apps: bool = True) -> FastAPI:
    ws = Workspace.open(home)

    local = threading.local()  # one open catalog per worker thread: opening one per request costs ~1 ms

    @contextlib.contextmanager
    def catalog() -> Iterator[Catalog]:
        cat = getattr(local, "catalog", None)
        if cat is None:
            cat = local.catalog = Catalog(ws.catalog_location)
        yield cat

    pool = deployments.ModelPool(ws, catalog)

    key_use = access.KeyUse()

    def flush_key_use() -> None:
        with catalog() as cat:
            key_use.flush(cat)

    async def every(seconds: float, work) -> None:
        while True:
            await anyio.sleep(seconds)
            await anyio.to_thread.run_sync(work)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.predict_slots = anyio.CapacityLimiter(PREDICT_THREADS)  # decode + infer: see serving.inference
        await anyio.to_thread.run_sync(lambda: pool.load_deployments(log))
        with catalog() as cat:
            if access.active_keys(cat) == 0:
                log("no API keys: serving loopback clients only (create one with `edgefactory keys create --name NAME`)")
        loop = asyncio.get_running_loop()
        chores = [loop.create_task(every(KEY_USE_FLUSH_S, flush_key_use)),
                  loop.create_task(every(memory.TRIM_EVERY_S, memory.trim))]  # what a burst of photos freed
        yield
        for chore in chores:
            chore.cancel()
        await anyio.to_thread.run_sync(flush_key_use)

    # /docs and /openapi.json are the app's own routes below: the same access rule as the API's
    app = FastAPI(title="edgefactory", version=VERSION, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  description="Models trained, compressed and exported by edgefactory, served with keys, a PAI-EAS "
                              "compatible route, jobs with progress events and phone previews.")
    app.add_middleware(HostGuard, hosts=allowed_hosts(base_url, qr.lan_ip()))  # DNS rebinding, cross-site POSTs
    app.add_middleware(FramingGuard)  # Content-Length and chunked at once: refused before anything reads the body
    app.state.ws, app.state.pool, app.state.catalog, app.state.key_use = ws, pool, catalog, key_use
    app.state.metrics, app.state.jobs = Metrics(), ApiJobs(ws.home)
    _errors(app)
    _observe(app)
    for add_routes in (_service_routes, _model_routes, _predict_routes, _report_routes, _job_routes):
        add_routes(app)
    gallery.add_routes(app, authorize)
    gallery_preview.add_routes(app)
    preview.mount(app)

    _methods_not_allowed(app)

    # the API's own 404 for its prefixes, before the chat app takes every other path at /
    async def no_route(request: Request):
        raise NotFoundError(f"No route {request.method} {request.url.path}.", fix="See the API at /docs.")

    for prefix in ("/v1", "/api", "/p"):
        app.add_api_route(prefix + "/{rest:path}", no_route, methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                          include_in_schema=False)

    if apps:  # the chat UI (and any other front end) mounts itself at / through an entry point
        from importlib.metadata import entry_points

        for plugin in entry_points(group="edgefactory.apps"):
            plugin.load()(app, ws.home, base_url)
    return app


def _methods_not_allowed(app: FastAPI) -> None:
    """Each API path answers the methods it lacks with 405 and an Allow header, in the error shape (the chat app
    mounted at / would otherwise take those requests and answer its own 404)."""
    served: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            served.setdefault(route.path, set()).update(route.methods)
    def refuse(allow: str):
        async def not_allowed(request: Request):
            raise StarletteHTTPException(405, f"Method Not Allowed (this path takes {allow})", headers={"Allow": allow})
        return not_allowed

    for path, methods in served.items():
        others = sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - methods)
        if others:
            app.add_api_route(path, refuse(", ".join(sorted(methods))), methods=others, include_in_schema=False)


# -- errors and metrics ----------------------------------------------------------------------------
def _model_label(request: Request) -> str:
    return request.path_params.get("name") or request.path_params.get("service") or ""


def _errors(app: FastAPI) -> None:
    def count(request: Request, code: str) -> None:
        model = _model_label(request)
        app.state.metrics.errors.labels(code, model if model in app.state.pool.loaded_names() else "").inc()

    @app.exception_handler(FactoryError)
    async def factory_error(request: Request, exc: FactoryError):
        count(request, exc.code)
        return pai_error(exc) if request.url.path.startswith("/api/predict/") else error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        count(request, "INVALID_REQUEST")
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": {"code": "INVALID_REQUEST", "message": f"The request is invalid: {problems}.",
                                       "fix": "See the schema at /docs."}}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {400: InputFormatError.code, 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code,
                                                                                           f"HTTP_{exc.status_code}")
        count(request, code)
        message = f"{request.method} {request.url.path}: {exc.detail}."
        if request.url.path.startswith("/api/predict/"):  # PAI-EAS clients read its shape, the status as the code
            return JSONResponse({"success": False, "errorCode": str(exc.status_code), "errorMsg": code, "message": message},
                                status_code=exc.status_code, headers=exc.headers)
        return JSONResponse({"error": {"code": code, "message": message,
                                       "fix": "See the API at /docs."}}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(CatalogBusy)
    async def catalog_busy(request: Request, exc: CatalogBusy):
        busy = FactoryError("The catalog is locked by another process writing to it (an import, a training run).",
                            fix="Try again in a moment.", code="CATALOG_BUSY")
        count(request, busy.code)
        if request.url.path.startswith("/api/predict/"):
            return pai_error(busy)
        return JSONResponse({"error": busy.to_dict()}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        count(request, "INTERNAL_ERROR")
        if request.url.path.startswith("/api/predict/"):
            return pai_error(exc)
        return JSONResponse({"error": {"code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {str(exc)[:200]}",
                                       "fix": "Report this with the request that caused it."}}, status_code=500)


def _observe(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        model = _model_label(request)
        model = model if model in app.state.pool.loaded_names() else ""  # only served models become labels
        app.state.metrics.requests.labels(path, model, str(response.status_code)).inc()
        app.state.metrics.latency.labels(path, model).observe(time.perf_counter() - start)
        app.state.metrics.worker_requests.inc()
        return response


# -- auth ------------------------------------------------------------------------------------------
def authorize(request: Request, model: str | None = None) -> dict | None:
    """Keys configured: a valid key scoped to `model` (None: any key), returned for the routes that show only what
    it may use. No keys: loopback clients only (None returned: they may use everything)."""
    with request.app.state.catalog() as cat:
        if access.active_keys(cat):
            return access.check_key(cat, bearer(request), model, touch=request.app.state.key_use.touch)
        if not is_loopback(request):
            raise access.AuthError("This server has no API keys, so it serves only this machine.",
                                   fix="Create a key (`edgefactory keys create --name NAME`) and send "
                                       "`Authorization: Bearer <key>`.", code="LOOPBACK_ONLY")
    return None


# -- routes: one function per group, each adding its routes to the app ----------------------------------
def _service_routes(app: FastAPI) -> None:
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/healthz", tags=["service"])
    async def healthz(request: Request) -> dict:
        """Liveness; what is loaded too for a client the API would serve. Never waits for inference."""
        try:
            key = authorize(request)
        except access.AuthError:
            return {"status": "ok"}
        return {"status": "ok", **app.state.pool.status(lambda name: access.allows(key, name))}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics: requests, latency histogram, errors by code, per model."""
        authorize(request)
        return PlainTextResponse(app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        authorize(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        from fastapi.openapi.docs import get_swagger_ui_html

        authorize(request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="edgefactory API")


def _model_routes(app: FastAPI) -> None:
    @app.get("/v1/models", tags=["models"])
    async def models(request: Request) -> dict:
        """Every registered model the key may use, with its versions and whether (and how) it is deployed."""
        key = authorize(request)
        home = app.state.ws.home
        with app.state.catalog() as cat:
            deployed = {d["name"]: d for d in deployments.list_deployments(cat)}
        rows = core_api.list_models(home=home)
        names = sorted({r["model"] for r in rows if access.allows(key, r["model"])})
        return {"models": [{"name": n, "versions": [r["version"] for r in rows if r["model"] == n],
                            "deployment": deployed.get(n)} for n in names]}

    @app.get("/v1/models/{name}", tags=["models"])
    async def model(name: str, request: Request) -> dict:
        """A model's versions with metrics and artifacts, and its deployment."""
        authorize(request, name)
        from targets import api as targets_api

        home = app.state.ws.home
        everything = core_api.list_models(home=home)
        rows = [r for r in everything if r["model"] == name]
        if not rows:  # 404 as predict answers, whether or not the name could exist (never 422 for 数字)
            raise NotFoundError(f"No model named {name!r}.{suggest(name, sorted({r['model'] for r in everything}))}",
                                fix="GET /v1/models lists them.")
        with app.state.catalog() as cat:
            dep = next((d for d in deployments.list_deployments(cat) if d["name"] == name), None)
        versions = []
        for r in rows:
            shown = core_api.show_model(r["ref"], home=home)
            arts = targets_api.list_artifacts(r["ref"], home=home)
            versions.append({"version": r["version"], "metrics": shown.get("metrics"), "arch": shown.get("arch"),
                             "classes": shown.get("classes"), "created_at": shown.get("created_at"),
                             "artifacts": [{k: a[k] for k in ("target", "precision", "size_mb", "accuracy")} for a in arts]})
        return {"name": name, "deployment": dep, "versions": versions}


def _predict_routes(app: FastAPI) -> None:
    async def predict_request(name: str, request: Request, many: bool) -> tuple:
        authorize(request, name)
        data, opts = await request_images(request, many=many)
        q = {**opts, **request.query_params}
        if not isinstance(q.get("target") or "", str):
            raise InputFormatError("target must be a runtime name (a string).", fix='e.g. "target": "openvino"')
        predictor = await anyio.to_thread.run_sync(lambda: app.state.pool.get(name, int_option(q.get("version"), "version", None),
                                                                              q.get("target") or None))
        images, results, timing = await run_predict(app, predictor, data if many else data[:1],
                                                    int_option(q.get("top_k"), "top_k", None), min_score_option(q.get("min_score")))
        head = {"model": predictor.model, "version": predictor.version, "target": predictor.target,
                "precision": predictor.precision}
        return predictor, head, images, results, timing

    @app.post("/v1/models/{name}/predict", tags=["predict"], openapi_extra=_predict_body(False))
    async def predict(name: str, request: Request) -> dict:
        """Classify one image, or find its objects: multipart `image` file or JSON {"image": base64}; optional version,
        target, top_k (labels, or at most this many boxes) and min_score (detectors; default 0.25)."""
        t0 = time.perf_counter()
        predictor, head, images, results, timing = await predict_request(name, request, many=False)
        return {**head, **result_shape(predictor, images[0], results[0]),
                "timing_ms": {**timing, "total": (time.perf_counter() - t0) * 1000}}

    @app.post("/v1/models/{name}/predict:batch", tags=["predict"], openapi_extra=_predict_body(True))
    async def predict_batch(name: str, request: Request) -> dict:
        """Classify several images: multipart `images` files or JSON {"images": [base64, ...]} (at most 64)."""
        predictor, head, images, results, timing = await predict_request(name, request, many=True)
        return {**head, "results": [result_shape(predictor, i, r) for i, r in zip(images, results)], "timing_ms": timing}

    @app.post("/api/predict/{service}", tags=["pai-eas"], openapi_extra=_pai_body())
    async def pai_predict(service: str, request: Request):
        """PAI-EAS compatible: body {"dataArray":[{"name":"image","type":"stream","body":"<base64>"}]},
        header `Authorization: <token>`; errors {"success":false,"errorCode":"1001","errorMsg":...}."""
        # a gallery index of that name answers with its best labels (a key needs its scope `index:NAME`), else the
        # deployment or model of that name
        searches = await anyio.to_thread.run_sync(gallery.is_index, app, service)
        authorize(request, f"index:{service}" if searches else service)
        body = await read_limited(request)
        try:
            payload = parse_json(body, "Send the PAI-EAS request body.")
            item = payload["dataArray"][0]
            raw = item["body"]
        except (InputFormatError, KeyError, IndexError, TypeError):
            raise InputFormatError("The body must be {\"dataArray\":[{\"name\":\"image\",\"type\":\"stream\",\"body\":\"<base64>\"}]}.",
                                   fix="Send the PAI-EAS request body.") from None
        image = b64decode(raw, "dataArray[0].body")
        if searches:
            return await anyio.to_thread.run_sync(gallery.pai_search, app, service, image, limiter=app.state.predict_slots)
        predictor = await anyio.to_thread.run_sync(lambda: app.state.pool.get(service))
        images, results, _ = await run_predict(app, predictor, [image])
        width, height = images[0]
        return {"success": True, "result": {"output": [{"type": "cv_common", "body": [
            task_of(predictor.meta).pai_item(p, width, height) for p in results[0]]}], "meta": {"height": height, "width": width}}}


def _report_routes(app: FastAPI) -> None:
    @app.get("/v1/models/{name}/versions/{version}/report", tags=["models"], response_class=FileResponse)
    async def report_page(name: str, version: int, request: Request) -> FileResponse:
        """The benchmark report (HTML) of a model version; its JSON files sit beside it."""
        return _report_file(request, name, version, "report.html")

    @app.get("/v1/models/{name}/versions/{version}/{file:path}", tags=["models"], include_in_schema=False)
    async def report_file(name: str, version: int, file: str, request: Request) -> FileResponse:
        return _report_file(request, name, version, file)

    def _report_file(request: Request, name: str, version: int, file: str) -> FileResponse:
        if not is_loopback(request):  # the user on this machine reads reports without a key
            authorize(request, name)
        folder = (app.state.ws.home / "reports" / name / f"v{version}" / "benchmark").resolve()
        path = (folder / file).resolve()
        if folder not in path.parents or not path.is_file():
            raise NotFoundError(f"No report file {file!r} for {name}:v{version}.",
                                fix=f"Write the report: edgefactory report {name}:v{version}")
        return FileResponse(path)


def _job_routes(app: FastAPI) -> None:
    @app.post("/v1/jobs", tags=["jobs"], status_code=202, openapi_extra=_job_body())
    async def start_job(request: Request) -> dict:
        """Start a job: {"kind": "train", "params": {dataset, model, epochs, ...}} | {"kind": "export",
        "params": {model, target, precision}} | {"kind": "bench", "params": {model, target?, precision?}}."""
        body = parse_json(await read_limited(request, 64 * 1024), 'Send {"kind": "train|export|bench", "params": {...}}.')
        if not isinstance(body, dict) or not isinstance(body.get("kind"), str) or not isinstance(body.get("params", {}), dict):
            raise InputFormatError("A job needs {\"kind\": \"train|export|bench\", \"params\": {...}}.", fix="See /docs.")
        ref = body.get("params", {}).get("model")
        # training makes a new model (a key for every model is needed); export / bench act on the model named
        key = authorize(request, "*" if body["kind"] == "train" or not isinstance(ref, str) else parse_ref(ref)[0])
        return await anyio.to_thread.run_sync(lambda: app.state.jobs.start(body["kind"], body.get("params", {}), key))

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    async def job(job_id: str, request: Request) -> dict:
        """A job's status: for the key that started it, or a key for every model."""
        key = authorize(request)
        return await anyio.to_thread.run_sync(app.state.jobs.status, job_id, key)

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"])
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: every progress event of the job, then `event: end` with its status."""
        key = authorize(request)
        await anyio.to_thread.run_sync(app.state.jobs.status, job_id, key)  # 404 for an unknown job, or another key's

        async def stream():
            sent = 0
            while True:
                events = app.state.jobs.events(job_id)
                for event in events[sent:]:
                    yield f"id: {sent}\ndata: {json.dumps(event, default=str)}\n\n"
                    sent += 1
                if app.state.jobs.finished(job_id) and sent >= len(app.state.jobs.events(job_id)):
                    status = await anyio.to_thread.run_sync(app.state.jobs.status, job_id)
                    yield f"event: end\ndata: {json.dumps({'status': status['status'], 'error': status['error']})}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _predict_body(many: bool) -> dict:
    field = "images" if many else "image"
    file_schema = {"type": "array", "items": {"type": "string", "format": "binary"}} if many else {"type": "string", "format": "binary"}
    b64 = {"type": "array", "items": {"type": "string"}} if many else {"type": "string"}
    options = {"top_k": {"type": "integer"}, "version": {"type": "integer"}, "target": {"type": "string"},
               "min_score": {"type": "number", "minimum": 0, "maximum": 1}}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [field], "properties": {field: file_schema, **options}}},
        "application/json": {"schema": {"type": "object", "required": [field], "properties": {field: b64, **options}}}}}}


def _job_body() -> dict:
    """The job kinds' own parameter schemas (the ones the CLI and the chat tools check against)."""
    from benchmarks.api import BenchParams
    from factory.config import TRAIN_PARAMS
    from targets.api import ExportParams

    kinds = {"train": TRAIN_PARAMS, "export": ExportParams, "bench": BenchParams}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
        {"type": "object", "title": f"{kind} job", "required": ["kind", "params"], "additionalProperties": False,
         "properties": {"kind": {"const": kind}, "params": schema.model_json_schema()}}
        for kind, schema in kinds.items()]}}}}}


def _pai_body() -> dict:
    item = {"type": "object", "required": ["body"], "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                                                                   "body": {"type": "string", "description": "base64 image"}}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["dataArray"], "properties": {"dataArray": {"type": "array", "items": item}}}}}}}
