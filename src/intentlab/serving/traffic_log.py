"""`intentlab serve --log DIR`: what the server saw, for review and drift (opt-in, off by default).

Each prediction becomes one JSON line: time, adapter, the text (with `--log-redact` patterns masked
before anything is written), the top intents with their probabilities, the out-of-scope decision
and score, and the request's latency. Writing never slows or fails a request: records go into a
bounded in-memory queue that one background thread drains into a size-bounded, rotating file (the
standard library's `QueueListener` and `RotatingFileHandler`). When the queue is full, the disk is
full or the folder cannot be written, the record is dropped and counted; `/healthz` shows the counts
and the last error. One writer thread per process writes whole lines, so records never interleave;
each process writes its own file (`traffic-HOST-PID.jsonl`), so several servers can share a folder.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import re
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentlab.errors import UserError

REDACTED = "[REDACTED]"
LOG_GLOB = "traffic-*.jsonl*"  # the files (and their rotated copies) readers look at


class _CountingHandler(logging.handlers.RotatingFileHandler):
    """Rotating file handler that counts what it could not write instead of printing tracebacks."""

    def __init__(self, path: Path, max_bytes: int, backups: int, owner: TrafficLog) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if getattr(record, "_failed", False) is False:
            self.owner._written()

    def handleError(self, record: logging.LogRecord) -> None:
        record._failed = True  # type: ignore[attr-defined]
        self.owner._dropped(str(sys.exc_info()[1]))


class TrafficLog:
    """The served predictions, appended to `folder` without ever holding up a request."""

    def __init__(
        self,
        folder: str | Path,
        redact: list[str] | None = None,
        max_bytes: int = 50 * 2**20,
        backups: int = 5,
        queue_size: int = 10_000,
    ) -> None:
        self.folder = Path(folder)
        try:
            self.patterns = [re.compile(p) for p in redact or []]
        except re.error as e:
            raise UserError(
                f"--log-redact {e.pattern!r} is not a regular expression ({e}). Fix the pattern."
            ) from None
        self.lock = threading.Lock()
        self.written = self.dropped = 0
        self.last_error: str | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # served anyway: every record is dropped and counted
            self._dropped(f"cannot create {self.folder}: {e.strerror}", count=False)
        name = f"traffic-{socket.gethostname()}-{os.getpid()}.jsonl"
        self.handler = _CountingHandler(self.folder / name, max_bytes, backups, self)
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.queue: queue.Queue[logging.LogRecord] = queue.Queue(queue_size)
        self.listener = logging.handlers.QueueListener(self.queue, self.handler)
        self.listener.start()

    def redacted(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def record(
        self, adapter: str, texts: list[str], predictions: list[dict[str, Any]], latency_ms: float
    ) -> None:
        """Queue one line per text (never blocks: a full queue drops and counts)."""
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for text, p in zip(texts, predictions, strict=True):
            line = json.dumps(
                {
                    "time": now,
                    "adapter": adapter,
                    "text": self.redacted(text),
                    "top": [[i["intent"], round(i["probability"], 5)] for i in p["intents"]],
                    "out_of_scope": p.get("out_of_scope"),
                    "score": p.get("score"),
                    "latency_ms": round(latency_ms, 2),
                },
                ensure_ascii=False,
            )
            record = logging.LogRecord("intentlab.traffic", logging.INFO, "", 0, line, None, None)
            try:
                self.queue.put_nowait(record)
            except queue.Full:
                self._dropped("the log queue is full (the disk is slower than the traffic)")

    def _written(self) -> None:
        with self.lock:
            self.written += 1

    def _dropped(self, error: str, count: bool = True) -> None:
        with self.lock:
            if count:
                self.dropped += 1
            first = self.last_error is None
            self.last_error = error
        if first:
            print(
                f"intentlab serve: warning: traffic log: {error}; records are dropped and counted",
                file=sys.stderr,
            )

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "folder": str(self.folder),
                "written": self.written,
                "dropped": self.dropped,
                "last_error": self.last_error,
            }

    def close(self) -> None:
        """Drain the queue and close the file. A full disk at this last flush is reported like any
        other write failure: the server's shutdown never fails on the log."""
        self.listener.stop()  # drains the queue first
        try:
            self.handler.close()
        except OSError as e:
            self._dropped(f"closing the log: {e.strerror}", count=False)
            stream, self.handler.stream = self.handler.stream, None
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def read_log(path: str | Path, adapter: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """The records of a traffic log (a folder of `traffic-*.jsonl` files, or one file), oldest first,
    and how many lines were malformed (skipped)."""
    from intentlab.runs.safe_files import read_regular

    path = Path(path)
    files = sorted(path.glob(LOG_GLOB)) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise UserError(f"{path} holds no traffic log (traffic-*.jsonl). Serve with --log {path} first.")
    records, bad = [], 0
    for f in files:
        for line in read_regular(f, max_bytes=2**31).decode("utf-8", errors="replace").splitlines():
            try:
                r = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                bad += 1
                continue
            if not isinstance(r, dict) or not isinstance(r.get("text"), str) or not r["text"].strip():
                bad += 1
                continue
            if adapter is None or r.get("adapter") == adapter:
                records.append(r)
    records.sort(key=lambda r: str(r.get("time", "")))
    return records, bad
