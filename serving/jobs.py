"""Train, export and bench jobs started through the REST API: each runs in a thread of the server,
its progress events are kept in order for the SSE stream and written to the run's `log.jsonl`, and its status is
persisted in the catalog's runs table (so `edgefactory runs list`, a restarted server and the other workers of
`serve --workers N` see it: a worker streams another worker's job from its log and the catalog)."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from factory import api as core_api
from factory import executors, params, processes
from factory.api import Home, session
from factory.errors import ConfigError, FactoryError, NotFoundError
from factory.jobs import JobManager
from factory.models import resolve_model
from factory.workspace import Workspace, append_event, read_events

KINDS = ("train", "export", "bench")
MAX_RUNNING = 4  # jobs running at once in this server process (each trains, exports or measures on the same cores)
MAX_RUNNING_PER_KEY = 2


class TooManyJobs(FactoryError):
    code = "TOO_MANY_JOBS"


class ApiJobs:
    """The server's jobs: each recorded with the key that started it (None: a loopback client on a server with no
    keys), readable by that key or a key for every model, and at most MAX_RUNNING at once (MAX_RUNNING_PER_KEY
    for one key)."""

    def __init__(self, home: Home):
        self.home, self.manager = home, JobManager()
        self.ws = Workspace.open(home)
        self.kinds: dict[str, str] = {}
        self.owners: dict[str, str | None] = {}  # job id -> key id, for this server's jobs (kept in the catalog too)
        self._lock = threading.Lock()

    def start(self, kind: str, params: Any, key: dict | None = None) -> dict:
        if kind not in KINDS:
            raise ConfigError(f"Unknown job kind {kind!r}.", fix=f"Use one of: {', '.join(KINDS)}.")
        owner = key["id"] if key else None
        with self._lock:  # two requests never both take the last place
            self._check_room(owner)
            job = self._start(kind, params)
            self.owners[job["id"]] = owner
        if owner is not None:
            with session(self.home) as (_, catalog), catalog.transaction():
                catalog.insert("job_owners", {"job_id": job["id"], "key_id": owner})
        return job

    def _check_room(self, owner: str | None) -> None:
        running = [job_id for job_id in self.owners if not self.finished(job_id)]
        if len(running) >= MAX_RUNNING:
            raise TooManyJobs(f"{len(running)} jobs are running, the most this server runs at once.",
                              fix="Wait for one to finish (GET /v1/jobs/{id}/events), then start this one.")
        mine = [job_id for job_id in running if self.owners[job_id] == owner]
        if owner is not None and len(mine) >= MAX_RUNNING_PER_KEY:
            raise TooManyJobs(f"This key has {len(mine)} jobs running, the most one key may run at once.",
                              fix=f"Wait for {mine[0]} to finish, then start this one.")

    def _start(self, kind: str, params: Any) -> dict:
        if kind == "train":
            job_id = core_api.start_training(params, self.manager, home=self.home)
        else:
            job_id = executors.new_job_id(kind)
            work = self._export(params) if kind == "export" else self._bench(params)
            with session(self.home) as (_, catalog):
                catalog.create_run(job_id, kind, params, os.getpid())
            self.manager.start(job_id, self._persisted(job_id, work))
        self.kinds[job_id] = kind
        return {"id": job_id, "kind": kind, "status": "running"}

    def _persisted(self, job_id: str, work: Callable[[Callable], dict]):
        def run(deliver: Callable, stop: threading.Event) -> dict:
            def on_event(event: dict) -> None:  # logged as training logs its events: other workers stream it from there
                append_event(self.ws.run_log(job_id), event)
                deliver(event)

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

    def _export(self, given: Any) -> Callable[[Callable], dict]:
        from targets import api as targets_api

        args = params.check(targets_api.ExportParams, given)
        self._known(args["model"])

        def work(on_event: Callable) -> dict:
            model, target = args.pop("model"), args.pop("target")  # EDGEFACTORY_EXECUTOR says where it runs
            return executors.call("export", targets_api.export, gpus=targets_api.gpus_needed(target, args.get("device")),
                                  ref=model, target=target, home=self.home, **args,
                                  log=executors.event_callbacks(on_event)["log"])
        return work

    def _bench(self, given: Any) -> Callable[[Callable], dict]:
        from benchmarks import api as bench_api
        from targets import api as targets_api

        args = params.check(bench_api.BenchParams, given)
        self._known(args["model"])

        def work(on_event: Callable) -> dict:
            if args.get("report") or args.get("target") is None:
                out = executors.call("report", bench_api.report, ref=args["model"], home=self.home,
                                     **executors.event_callbacks(on_event))
                return {k: out[k] for k in ("json", "html", "measured_rows", "warnings")}
            return executors.call("bench", bench_api.bench, gpus=targets_api.gpus_needed(args["target"]),
                                  ref=args["model"], target=args["target"],
                                  precision=args.get("precision", "fp32"), home=self.home)
        return work

    def _known(self, ref: str) -> None:
        """An unknown model is refused now (404 with a suggestion), not reported later by a failed job."""
        with session(self.home) as (_, catalog):
            resolve_model(catalog, ref)

    def status(self, job_id: str, key: dict | None = None) -> dict:
        """The job's status; a key that neither started it nor may use every model is told there is no such job."""
        with session(self.home) as (_, catalog):
            run = catalog.run(job_id)
            owner = catalog.select("SELECT key_id FROM job_owners WHERE job_id = ?", (job_id,))
        if run is not None and key is not None and "*" not in key["scopes"] and [{"key_id": key["id"]}] != owner:
            run = None
        if run is None:
            raise NotFoundError(f"No job {job_id!r}.", fix="Start one with POST /v1/jobs, or list runs with `edgefactory runs list`.")
        events = self.events(job_id)
        return {"id": job_id, "kind": run["kind"], "status": run["status"], "progress": run["progress"],
                "result": run["result"], "error": run["error"], "events": len(events),
                "last_event": events[-1] if events else None}

    def events(self, job_id: str) -> list[dict]:
        """The job's events so far: this process's own job's from memory, another process's from its log."""
        try:
            return list(self.manager.get(job_id).events)
        except NotFoundError:
            return read_events(self.ws.run_log(job_id))

    def finished(self, job_id: str) -> bool:
        """Whether the job ended: this process's own by its thread, another's by its catalog status and process."""
        try:
            return not self.manager.get(job_id).thread.is_alive()
        except NotFoundError:
            pass
        with session(self.home) as (_, catalog):
            run = catalog.run(job_id)
        return run is None or run["status"] not in ("queued", "running") or processes.gone(run["pid"], run["pid_started"],
                                                                                           run.get("host"))

