"""Train, export and bench jobs started through the REST API: each runs in a thread of the server,
its progress events are kept in order for the SSE stream, and its status is persisted in the
catalog's runs table (so `edgefactory runs list` and a restarted server see it)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any, Callable

from factory import api as core_api
from factory.api import Home, session
from factory.errors import ConfigError, FactoryError, NotFoundError
from factory.jobs import JobManager

KINDS = ("train", "export", "bench")


class ApiJobs:
    def __init__(self, home: Home):
        self.home, self.manager = home, JobManager()
        self.kinds: dict[str, str] = {}

    def start(self, kind: str, params: dict[str, Any]) -> dict:
        if kind not in KINDS:
            raise ConfigError(f"Unknown job kind {kind!r}.", fix=f"Use one of: {', '.join(KINDS)}.")
        if kind == "train":
            job_id = core_api.start_training(params, self.manager, home=self.home)
        else:
            job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            work = self._export(params) if kind == "export" else self._bench(params)
            with session(self.home) as (_, catalog):
                catalog.create_run(job_id, kind, params, os.getpid())
            self.manager.start(job_id, self._persisted(job_id, work))
        self.kinds[job_id] = kind
        return {"id": job_id, "kind": kind, "status": "running"}

    def _persisted(self, job_id: str, work: Callable[[Callable], dict]):
        def run(on_event: Callable, stop: threading.Event) -> dict:
            with session(self.home) as (_, catalog):
                catalog.update_run(job_id, status="running")
                try:
                    result = work(on_event)
                except Exception as exc:  # any failure ends the job as failed, never "running" forever
                    error = exc.to_dict() if isinstance(exc, FactoryError) else \
                        {"code": "JOB_FAILED", "message": f"{type(exc).__name__}: {exc}", "fix": "See the server log."}
                    on_event({"type": "failed", "error": error})
                    catalog.update_run(job_id, status="failed", error=error["message"])
                    if isinstance(exc, FactoryError):
                        raise
                    raise FactoryError(error["message"], fix=error["fix"], code="JOB_FAILED") from exc
                on_event({"type": "finished", "result": result})
                catalog.update_run(job_id, status="completed", result=result)
                return result
        return run

    def _export(self, params: dict) -> Callable[[Callable], dict]:
        from targets import api as targets_api

        args = _pick(params, {"model", "target"}, {"precision", "max_drop", "keep_if_slower", "calibration_size"})
        _typed(args, {"model": str, "target": str, "precision": str, "max_drop": (0, 100), "keep_if_slower": bool,
                      "calibration_size": range(1, 100_001)}, required={"model", "target"})

        def work(on_event: Callable) -> dict:
            model, target = args.pop("model"), args.pop("target")
            return targets_api.export(model, target, home=self.home, **args,
                                      log=lambda line: on_event({"type": "log", "message": line}))
        return work

    def _bench(self, params: dict) -> Callable[[Callable], dict]:
        from benchmarks import api as bench_api

        args = _pick(params, {"model"}, {"target", "precision", "report"})
        _typed(args, {"model": str, "target": str, "precision": str, "report": bool}, required={"model"})

        def work(on_event: Callable) -> dict:
            if args.get("report") or "target" not in args:
                out = bench_api.report(args["model"], home=self.home, log=lambda line: on_event({"type": "log", "message": line}),
                                       progress=lambda stage, done, total: on_event({"type": "progress", "stage": stage,
                                                                                     "done": done, "total": total}))
                return {k: out[k] for k in ("json", "html", "measured_rows", "warnings")}
            return bench_api.bench(args["model"], args["target"], precision=args.get("precision", "fp32"), home=self.home)
        return work

    def status(self, job_id: str) -> dict:
        with session(self.home) as (_, catalog):
            run = catalog.run(job_id)
        if run is None:
            raise NotFoundError(f"No job {job_id!r}.", fix="Start one with POST /v1/jobs, or list runs with `edgefactory runs list`.")
        events = self.events(job_id)
        return {"id": job_id, "kind": run["kind"], "status": run["status"], "progress": run["progress"],
                "result": run["result"], "error": run["error"], "events": len(events),
                "last_event": events[-1] if events else None}

    def events(self, job_id: str) -> list[dict]:
        try:
            return list(self.manager.get(job_id).events)
        except NotFoundError:
            return []

    def finished(self, job_id: str) -> bool:
        try:
            return not self.manager.get(job_id).thread.is_alive()
        except NotFoundError:
            return True


def _pick(params: dict, required: set[str], optional: set[str]) -> dict:
    missing = sorted(required - set(params))
    unknown = sorted(set(params) - required - optional)
    if missing or unknown:
        raise ConfigError("Bad job parameters: " + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                                             + ([f"unknown {', '.join(unknown)}"] if unknown else [])) + ".",
                          fix=f"Required: {', '.join(sorted(required))}; optional: {', '.join(sorted(optional))}.")
    return dict(params)


def _typed(args: dict, spec: dict, required: set[str]) -> None:
    """Every job parameter of its type: str, bool, a number within (lo, hi), or a whole number in a range (null: left
    out, for an optional one); ConfigError names the parameter (bool is never a number)."""
    for key, value in args.items():
        want = spec[key]
        if value is None and key not in required:
            continue
        if isinstance(want, range):
            ok, expected = type(value) is int and value in want, f"a whole number from {want.start} to {want.stop - 1}"
        elif isinstance(want, tuple):
            ok = type(value) in (int, float) and want[0] <= value <= want[1]
            expected = f"a number from {want[0]} to {want[1]}"
        else:
            ok, expected = type(value) is want, {str: "a string", bool: "true or false"}[want]
        if not ok:
            raise ConfigError(f"Job parameter {key}={value!r} is not {expected}.", fix=f"Send {key} as {expected}.")
