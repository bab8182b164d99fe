"""`edgefactory serve --workers N`: N server processes on the same listening sockets, each with its own app (models
loaded, inference threads), all on the workspace's one catalog.

The parent binds the sockets (the API's and the phone listener's) and starts the workers (spawned, so none inherits
a half-initialised runtime), restarts one that dies, and stops them all on Ctrl-C or SIGTERM. The kernel spreads new
connections over the workers. What clients see is shared through the catalog, read on each request: deployments, API
keys and their revocation, preview links (signed with the workspace's one secret, made before the workers start).

Prometheus runs in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, a fresh folder per server): every worker's
/metrics shows the totals over all workers, and `edgefactory_worker_requests` the requests each live worker served
(one series per PID).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path

RESTART_PAUSE_S = 1.0  # between a worker's death and its replacement (a worker dying at start must not spin)
STOP_GRACE_S = 15.0  # how long a worker may finish its requests after SIGTERM before it is killed


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that the workers share (uvicorn's own binding, as its --workers does)."""
    import uvicorn

    return uvicorn.Config(app=None, host=host, port=port).bind_socket()


def _log(line: str, role: str = "worker") -> None:
    print(f"[{role} {os.getpid()}] {line}", file=sys.stderr, flush=True)


def _supervisor_log(line: str) -> None:
    _log(line, "server")


def worker(settings: dict, sockets: list[socket.socket]) -> None:
    """One worker: the app on the API socket (and the phone listener on the second socket, when there is one)."""
    import uvicorn

    from serving import listeners
    from serving.app import UVICORN_OPTIONS, create_app

    app = create_app(settings["home"], log=_log, base_url=settings["api_url"])
    tls = settings["tls"]
    servers = [uvicorn.Server(uvicorn.Config(app, **UVICORN_OPTIONS, **(tls if settings["https"] else {})))]
    if len(sockets) > 1:
        servers.append(uvicorn.Server(uvicorn.Config(listeners.PhoneOnly(app, settings["api_url"]), lifespan="off",
                                                     **UVICORN_OPTIONS, **tls)))
    asyncio.run(listeners.serve_all(servers, sockets))


class Supervisor:
    """Starts `count` workers on `sockets`, keeps that many alive, and stops them when asked."""

    def __init__(self, count: int, sockets: list[socket.socket], settings: dict, log=_supervisor_log):
        self.count, self.sockets, self.settings, self.log = count, sockets, settings, log
        self.context = multiprocessing.get_context("spawn")
        self.stop = threading.Event()
        self.processes: list = []

    def _start(self):
        process = self.context.Process(target=worker, args=(self.settings, self.sockets), daemon=False)
        process.start()
        return process

    def run(self) -> None:
        from prometheus_client import multiprocess

        previous = {s: signal.signal(s, lambda *_: self.stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.processes = [self._start() for _ in range(self.count)]
            while not self.stop.wait(0.5):
                for i, process in enumerate(self.processes):
                    if not process.is_alive() and not self.stop.is_set():
                        self.log(f"worker {process.pid} exited ({process.exitcode}): starting another")
                        multiprocess.mark_process_dead(process.pid)
                        self.stop.wait(RESTART_PAUSE_S)
                        self.processes[i] = self._start()
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)  # uvicorn finishes the requests under way, then the lifespan
        for process in self.processes:
            process.join(STOP_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()


def serve(count: int, sockets: list[socket.socket], settings: dict, home: Path) -> None:
    """Run `count` workers until Ctrl-C or SIGTERM, with a fresh Prometheus multiprocess folder (removed after)."""
    from serving import access
    from factory.workspace import Workspace

    access.signing_key(Workspace.open(home))  # made once here, not raced by the workers
    metrics_dir = tempfile.mkdtemp(prefix="edgefactory-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by each spawned worker's prometheus_client
    try:
        Supervisor(count, sockets, settings).run()
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for s in sockets:
            s.close()
