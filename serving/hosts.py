"""Which names the server answers to, against DNS rebinding: a web page the local user visits can point its own
name at 127.0.0.1 and then drive the keyless loopback API and the chat from the browser. Every request must carry a
Host this server is serving as (loopback names, this machine's names and LAN address, the public URL it was started
with, EDGEFACTORY_ALLOWED_HOSTS); a request that changes state and carries an Origin must come from one of them too
(a cross-site form or fetch POST does; curl and the SDKs send none)."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ENV = "EDGEFACTORY_ALLOWED_HOSTS"  # more names (comma-separated), e.g. a reverse proxy's public name


def hostname(value: str) -> str:
    """The name in a Host header ("name:port", "[::1]:8000") or an Origin URL, lower-case, without the port."""
    if "://" in value:
        return (urlsplit(value).hostname or "").lower()
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(base_url: str, lan_ip: str | None = None) -> frozenset[str]:
    names = {*LOOPBACK_NAMES, hostname(base_url)}
    machine = socket.gethostname().lower()
    names |= {machine, f"{machine}.local"}
    if lan_ip:
        names.add(lan_ip)
    names |= {hostname(n) for n in os.environ.get(ENV, "").split(",") if n.strip()}
    return frozenset(n for n in names if n)


class HostGuard:
    """ASGI middleware: 400 HOST_NOT_ALLOWED for a Host outside `hosts`, 403 CROSS_SITE_REQUEST for a
    state-changing request whose Origin is outside them."""

    def __init__(self, app, hosts: frozenset[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            host, origin = headers.get(b"host", ""), headers.get(b"origin")
            if host and not self.allowed(hostname(host)):
                return await self._refuse(scope, send, 400, "HOST_NOT_ALLOWED",
                                          f"This server does not answer to the name {hostname(host)!r}.",
                                          f"Use its address, or add the name to {ENV} (comma-separated) and restart it.")
            method = scope.get("method", "GET")
            # "null" is what a sandboxed frame or a file:// page sends: never one of this server's own pages
            if origin and method not in SAFE_METHODS and (origin == "null" or not (
                    hostname(origin) in self.hosts or hostname(origin) == hostname(host))):  # same origin, or ours
                return await self._refuse(scope, send, 403, "CROSS_SITE_REQUEST",
                                          f"A {method} from the page at {origin} was refused (another site).",
                                          "Call the API from its own pages, or without an Origin (curl, SDKs).")
        await self.app(scope, receive, send)

    def allowed(self, name: str) -> bool:
        """One of this server's names, or an address typed as such (an IP literal cannot be rebound: a page that
        reaches this server by an address is the browser talking to that address, not to another site's name)."""
        if name in self.hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    @staticmethod
    async def _refuse(scope, send, status: int, code: str, message: str, fix: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": {"code": code, "message": message, "fix": fix}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
