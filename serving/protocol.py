"""How uvicorn reads a request off the socket, with the limits it lacks: a request head must arrive within
HEAD_TIMEOUT_S of its first byte (or of the connection, or of the previous response), and its body may pause
at most BODY_IDLE_S between reads; a slow or half-sent request is answered 408 and closed instead of holding a
connection open forever. A request framed both by Content-Length and by chunked encoding is refused (the two
can disagree, which is how requests are smuggled past a proxy)."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
BODY_IDLE_S = 30.0
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    b"content-length: %d\r\n\r\n%s")
TIMEOUT_BODY = (b'{"error":{"code":"REQUEST_TIMEOUT","message":"The request was not sent in time.",'
                b'"fix":"Send the whole request at once."}}')


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head and an idle limit for each body."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._wait(HEAD_TIMEOUT_S)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if self.transport.is_closing():
            self._stop()
        elif state is h11.SEND_BODY:
            self._wait(BODY_IDLE_S)  # restarted on every read: a body may be slow, not stalled
        elif state is not h11.IDLE:  # the request is in (IDLE: its head is still coming, the deadline runs on)
            self._stop()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait(HEAD_TIMEOUT_S)  # the next request's head, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _wait(self, seconds: float) -> None:
        self._stop()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _stop(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE % (len(TIMEOUT_BODY), TIMEOUT_BODY))
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()  # an app waiting for the body learns the client is gone
        self.transport.close()


class FramingGuard:
    """ASGI middleware: a request with both Content-Length and Transfer-Encoding is answered 400 and the connection
    closed, before the app reads a byte of it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            names = {name for name, _ in scope["headers"]}
            if b"content-length" in names and b"transfer-encoding" in names:
                body = (b'{"error":{"code":"INPUT_FORMAT_ERROR","message":"The request has both Content-Length and '
                        b'Transfer-Encoding.","fix":"Send one of them."}}')
                await send({"type": "http.response.start", "status": 400, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
