"""Where phones reach this workspace's server. `edgefactory serve` listens twice: the REST API and the chat on
--host:--port (loopback by default, keyless until API keys exist), and the phone previews on every interface over
HTTPS (PHONE_PORT, with the self-signed certificate of serving.tls), a listener that answers the preview routes
and nothing else. The running server records its URLs in serving/listeners.json, with its PID and start time,
so that `qr` (CLI, chat, REST) makes codes whose scheme, host and port are those of a listener that is up."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from factory import processes
from factory.workspace import Workspace, atomic_write_bytes

PHONE_PORT = 8443
PHONE_PATHS = ("/p/", "/static/ort/", "/static/preview/")  # the page, its routes and the files it loads


class PhoneOnly:
    """ASGI wrapper for the phone listener: the preview routes pass, any other path gets 404 (the API and the chat
    are not served to the LAN here, whatever the client)."""

    def __init__(self, app, api_url: str):
        self.app, self.api_url = app, api_url

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith(PHONE_PATHS):
            body = json.dumps({"error": {
                "code": "PHONE_LISTENER_ONLY", "message": f"This address serves phone previews only ({scope['path']}).",
                "fix": f"Use the API and the chat at {self.api_url}, or serve them to the LAN with API keys "
                       "(`edgefactory serve --host 0.0.0.0`)."}}).encode()
            await send({"type": "http.response.start", "status": 404, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


def _path(ws: Workspace) -> Path:
    return ws.home / "serving" / "listeners.json"


def record(ws: Workspace, api_url: str, phone_url: str | None, fingerprint: str | None) -> None:
    """Say that this process serves the workspace at these URLs (phone_url None: no listener phones reach)."""
    entry = {"pid": os.getpid(), "started": processes.started(), "api": api_url, "phone": phone_url,
             "fingerprint": fingerprint}
    _path(ws).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(_path(ws), json.dumps(entry, indent=2).encode())


def clear(ws: Workspace) -> None:
    """Remove this process's record (another server's stays)."""
    entry = running(ws)
    if entry is not None and entry["pid"] == os.getpid():
        _path(ws).unlink(missing_ok=True)


def running(ws: Workspace) -> dict | None:
    """The record of the server that serves this workspace now, or None (none started, or it died)."""
    try:
        entry = json.loads(_path(ws).read_text())
    except (OSError, ValueError):
        return None
    return entry if processes.alive(entry.get("pid"), entry.get("started")) else None


async def serve_all(servers: list, sockets: list | None = None) -> None:
    """Run uvicorn servers in one event loop: the first runs the app's lifespan and takes Ctrl-C; the others (on
    the same app, lifespan off) start once it is up and stop with it. With `sockets` (one per server, bound by a
    parent process: serving.workers), each server listens on its socket instead of binding its own."""
    def serve(i: int, server):
        return server.serve(sockets=[sockets[i]]) if sockets else server.serve()

    main, *others = servers
    main_task = asyncio.ensure_future(serve(0, main))
    while not main.started and not main_task.done():
        await asyncio.sleep(0.05)
    tasks = [asyncio.ensure_future(serve(i + 1, server)) for i, server in enumerate(others)] if main.started else []
    try:
        await main_task
    finally:
        for server in others:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
