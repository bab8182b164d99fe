"""`edgefactory serve --workers N`: N server processes on the same listening sockets, each with its own app (models
loaded, inference threads), all on the workspace's one catalog.

The parent binds the sockets (the API's and the phone listener's) and starts the workers (spawned, so none inherits
a half-initialised runtime), restarts one that dies (and gives up, saying so, when they die at start), and stops
them all on Ctrl-C or SIGTERM; a worker whose supervisor dies stops too. The kernel spreads new
connections over the workers. What clients see is shared through the catalog, read on each request: deployments, API
keys and their revocation, preview links (signed with the workspace's one secret, made before the workers start).

Prometheus runs in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, a fresh folder per server): every worker's
/metrics shows the totals over all workers, and `edgefactory_worker_requests` the requests each live worker served
(one series per PID).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

from factory.errors import ConfigError, FactoryError, NotFoundError

RESTART_PAUSE_S = 1.0  # between a worker's death and its replacement (a worker dying at start must not spin)
QUICK_DEATH_S = 20.0  # a worker that dies sooner than this after its start died of its start-up
MAX_QUICK_DEATHS = 5  # in a row: then the server stops and says why, rather than restart it forever
STOP_GRACE_S = 15.0  # how long the workers may finish their requests after SIGTERM before they are killed


class WorkersFailed(FactoryError):
    code = "WORKERS_FAILED"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port that the workers share (made inheritable, as uvicorn's --workers does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror}.",
                          fix="Another server may hold the port (`edgefactory serve`?): stop it or pass another "
                              "--port / --phone-port.") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _log(line: str, role: str = "worker") -> None:
    print(f"[{role} {os.getpid()}] {line}", file=sys.stderr, flush=True)


def _supervisor_log(line: str) -> None:
    _log(line, "server")


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when the supervisor dies (killed, out of memory), so no worker keeps
    serving the port on its own."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor's own stop still applies
        pass


def worker(settings: dict, sockets: list[socket.socket]) -> None:
    """One worker: the app on the API socket (and the phone listener on the second socket, when there is one). The
    chat is not mounted: its sessions live in one process, and the kernel would spread one session's requests over
    the workers."""
    _die_with_parent()
    if os.getppid() != settings["supervisor"]:  # it died before the line above
        return
    import uvicorn

    from serving import listeners
    from serving.app import UVICORN_OPTIONS, create_app

    app = create_app(settings["home"], log=_log, base_url=settings["api_url"], apps=False)

    async def no_chat():
        raise NotFoundError("The chat is not served by `serve --workers N`: a chat session lives in one process.",
                            fix="Start another `edgefactory serve` (one worker) on another --port for the chat; the API "
                                "is here.")

    app.add_api_route("/", no_chat, methods=["GET"], include_in_schema=False)
    tls = settings["tls"]
    servers = [uvicorn.Server(uvicorn.Config(app, **UVICORN_OPTIONS, **(tls if settings["https"] else {})))]
    if len(sockets) > 1:
        servers.append(uvicorn.Server(uvicorn.Config(listeners.PhoneOnly(app, settings["api_url"]), lifespan="off",
                                                     **UVICORN_OPTIONS, **tls)))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches every process of the terminal's group
        asyncio.run(listeners.serve_all(servers, sockets))


class Supervisor:
    """Starts `count` workers on `sockets`, keeps that many alive, and stops them when asked."""

    def __init__(self, count: int, sockets: list[socket.socket], settings: dict, log=_supervisor_log):
        self.count, self.sockets, self.log = count, sockets, log
        self.settings = {**settings, "supervisor": os.getpid()}
        self.context = multiprocessing.get_context("spawn")
        self.stopping = False  # set by the signal handler: a plain flag (an Event's lock could deadlock there)
        self.processes: list = []
        self.started: dict[int, float] = {}
        self.quick_deaths = 0

    def _start(self):
        process = self.context.Process(target=worker, args=(self.settings, self.sockets), daemon=False)
        process.start()
        self.started[process.pid] = time.monotonic()
        return process

    def _stop(self, *_) -> None:
        self.stopping = True

    def run(self) -> None:
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.processes = [self._start() for _ in range(self.count)]
            while not self.stopping:
                multiprocessing.connection.wait([p.sentinel for p in self.processes], 0.5)
                for i, process in enumerate(self.processes):
                    if not process.is_alive() and not self.stopping:
                        self.processes[i] = self._replace(process)
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _replace(self, process):
        """A new worker for one that died; refuses after MAX_QUICK_DEATHS deaths at start in a row."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid)
        quick = time.monotonic() - self.started.pop(process.pid, 0.0) < QUICK_DEATH_S
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        if self.quick_deaths >= MAX_QUICK_DEATHS:
            raise WorkersFailed(f"{self.quick_deaths} workers in a row died while starting (the last with exit code "
                                f"{process.exitcode}).", fix="Run `edgefactory serve` without --workers to see the error.")
        self.log(f"worker {process.pid} exited ({process.exitcode}): starting another")
        time.sleep(RESTART_PAUSE_S)
        return self._start()

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)  # uvicorn finishes the requests under way, then the lifespan
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def serve(count: int, sockets: list[socket.socket], settings: dict) -> None:
    """Run `count` workers until Ctrl-C or SIGTERM, with a fresh Prometheus multiprocess folder (removed after)."""
    from serving import access
    from factory.workspace import Workspace

    access.signing_key(Workspace.open(settings["home"]))  # made once here, not raced by the workers
    metrics_dir = tempfile.mkdtemp(prefix="edgefactory-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by each spawned worker's prometheus_client
    try:
        Supervisor(count, sockets, settings).run()
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for s in sockets:
            s.close()
