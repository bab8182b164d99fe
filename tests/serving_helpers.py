"""A real server on loopback for the serving tests: uvicorn in a thread of the test process."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import uvicorn

from serving.app import UVICORN_OPTIONS, create_app


def deployed_copy(source: Path, home: Path, model: str, targets: tuple[str, ...]) -> Path:
    """A copy of workspace `source` at `home` with `model:v1` exported to `targets` and deployed (on the first)."""
    from serving import api as serving_api
    from targets import api as targets_api
    from tests.conftest import copy_home

    copy_home(source, home)
    for target in targets:
        targets_api.export(f"{model}:v1", target, home=home)
    serving_api.deploy(model, home=home, target=targets[0])
    return home


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(home: Path, host: str = "127.0.0.1", **ssl) -> Iterator[str]:
    """Start the app on a free port; yields its base URL; stops it on exit."""
    port = free_port(host)
    logs: list[str] = []
    scheme = "https" if ssl else "http"
    app = create_app(home, log=logs.append, base_url=f"{scheme}://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **UVICORN_OPTIONS, **ssl))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError(f"server did not start: {logs}")
        time.sleep(0.05)
    try:
        yield f"{scheme}://{'127.0.0.1' if host in ('0.0.0.0', '127.0.0.1') else host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
