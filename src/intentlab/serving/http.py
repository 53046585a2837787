"""HTTP-level defences of `intentlab serve`: slow and stuck clients cannot hold the server.

- A deadline for a request's line and headers on uvicorn's protocol (httptools when installed, else
  h11): uvicorn has none, its keep-alive timeout only covers the idle time between requests. A
  connection that has not sent a whole header block within `header_timeout_s` gets 408 and is
  closed, so idle or trickling connections cannot pile up.
- `BodyLimit`: ASGI middleware that reads a request body whole before the app sees it, within a size
  limit (413) and a *total* deadline (408): one byte every few seconds does not keep it open.
- `server_config()`: the uvicorn settings `intentlab serve` runs with (tests start the same server).
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from intentlab.errors import UserError

HEADER_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
HEADER_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def _too_large(protocol: Any, waiting: bool, data: bytes) -> bool:
    """Count header bytes while the headers are incomplete; past the limit, answer 431 and close (an
    endless header block would otherwise grow the server's memory within the header deadline)."""
    if not waiting:
        protocol._header_bytes = 0
        return False
    protocol._header_bytes = getattr(protocol, "_header_bytes", 0) + len(data)
    if protocol._header_bytes <= protocol.max_header_bytes:
        return False
    _disarm(protocol)
    body = json.dumps({"detail": f"request headers over {protocol.max_header_bytes} bytes"}).encode()
    if not protocol.transport.is_closing():
        protocol.transport.write(HEADER_431 % (len(body), body))
        protocol.transport.close()
    return True


class RequestDeadlineProtocol(H11Protocol):
    """h11 protocol that closes connections whose request headers do not arrive in time, or are too long."""

    header_timeout_s = 10.0
    max_header_bytes = 64 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # a new request on a kept-alive connection
        if _too_large(self, self.conn.their_state is h11.IDLE, data):
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the request line and headers are in

    def connection_lost(self, exc: Exception | None) -> None:
        _disarm(self)
        super().connection_lost(exc)

    def _arm(self) -> None:
        _arm(self, lambda: self.conn.their_state is h11.IDLE)

    def _disarm(self) -> None:
        _disarm(self)


def _arm(protocol: Any, waiting: Any) -> None:
    """(Re)start the header deadline of `protocol`; on expiry, if `waiting()` still holds, 408 + close."""
    _disarm(protocol)

    def expire() -> None:
        protocol._header_timer = None
        if waiting() and not protocol.transport.is_closing():
            body = json.dumps(
                {"detail": f"request headers not received within {protocol.header_timeout_s:g} s"}
            )
            protocol.transport.write(HEADER_408 % (len(body), body.encode()))
            protocol.transport.close()

    protocol._header_timer = asyncio.get_running_loop().call_later(protocol.header_timeout_s, expire)


def _disarm(protocol: Any) -> None:
    timer = getattr(protocol, "_header_timer", None)
    if timer is not None:
        timer.cancel()
        protocol._header_timer = None


def _httptools_protocol() -> type | None:
    """The same deadline on uvicorn's faster httptools protocol, when httptools is installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class HttpToolsDeadlineProtocol(HttpToolsProtocol):
        header_timeout_s = 10.0
        max_header_bytes = 64 * 1024

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._headers_in = False
            _arm(self, lambda: not self._headers_in)

        def data_received(self, data: bytes) -> None:
            if _too_large(self, not self._headers_in, data):
                return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._headers_in = False
            _arm(self, lambda: not self._headers_in)

        def on_headers_complete(self) -> None:
            self._headers_in = True
            _disarm(self)
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            _disarm(self)
            super().connection_lost(exc)

    return HttpToolsDeadlineProtocol


def protocol_with(header_timeout_s: float, max_header_bytes: int = 64 * 1024) -> type:
    """The deadline protocol (httptools when installed, else h11) with this header timeout and size."""
    base = _httptools_protocol() or RequestDeadlineProtocol
    return type(
        base.__name__, (base,), {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes}
    )


class BodyLimit:
    """ASGI middleware: reads a request body whole before the app sees it, with two limits.

    413 when the body is over `max_bytes` (declared by Content-Length or streamed); 408 when the
    whole body has not arrived within `timeout_s` of the request's start (a total deadline, not a
    per-chunk one). A slow or stuck client holds no handler meanwhile: other requests are served.
    """

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    @staticmethod
    async def _reply(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _read(self, receive: Any) -> bytes | int | None:
        """The whole body; 413 when too big; None when the client went away."""
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return None
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return 413
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        too_big = f"request body over {self.max_bytes} bytes"
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reply(send, 413, too_big)
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except asyncio.TimeoutError:
            return await self._reply(send, 408, f"request body not received within {self.timeout_s:g} s")
        if body is None:
            return None
        if body == 413:
            return await self._reply(send, 413, too_big)
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive_again() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        return await self.app(scope, receive_again, send)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), made before any run is loaded: a port in use or a bad address is
    a one-line error at once, not a traceback after the models have loaded. uvicorn serves on it."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port number. Pass 1-65535 (0: any free port).")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: accepted connections inherit it, and asyncio turns Nagle's algorithm off
    # (TCP_NODELAY) only on sockets that say TCP; with 0 a kept-alive client waited ~40 ms per response
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn sets it
    try:
        sock.bind((host, port))
    except socket.gaierror as e:
        sock.close()
        raise UserError(
            f"--host {host}: no such address ({e.strerror or e}). Pass an address such as 127.0.0.1 or 0.0.0.0."
        ) from None
    except OSError as e:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror or e}). "
            "Stop what uses that port or pass another --port (or --host)."
        ) from None
    return sock


def server_config(
    app: Any, host: str, port: int, header_timeout_s: float = 10.0, max_header_bytes: int = 64 * 1024
) -> Any:
    """uvicorn settings for `intentlab serve`: the deadline protocol, a short keep-alive, and no
    connection-count limit (idle connections are closed by the deadlines instead of turning every
    other request into a 503)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_with(header_timeout_s, max_header_bytes),
        log_level="warning",
        timeout_keep_alive=5,
        limit_concurrency=None,
    )
