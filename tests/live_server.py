"""A real uvicorn server on a free loopback port, in a thread, for tests that need sockets or a browser."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app: Any, header_timeout_s: float = 10.0) -> Iterator[tuple[str, int]]:
    """The app behind the same uvicorn settings `intentlab serve` uses."""
    import uvicorn

    from intentlab.serving.http import server_config

    port = free_port()
    srv = uvicorn.Server(server_config(app, "127.0.0.1", port, header_timeout_s))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        srv.should_exit = True
        thread.join(5)
