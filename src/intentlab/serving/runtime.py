"""How `intentlab serve` runs: its limits, its threads, OpenMP's wait policy and the admin token.

The serve command's options are checked here, before anything loads: `Limits` refuses limits that
make no sense, `check_options` the combinations that cannot work.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from intentlab.errors import UserError


@dataclass
class Limits:
    max_texts: int = 64
    max_chars: int = 2000
    max_body_bytes: int = 256 * 1024
    max_top_k: int = 20
    batch_wait_ms: float = 0.0  # continuous batching: requests queued during a batch form the next
    max_batch_texts: int = 256
    parallel_batches: int = 1  # onnxruntime only: batches run at once, the CPU cores shared between them
    body_timeout_s: float = 10.0  # total time to send a request body
    header_timeout_s: float = 10.0  # time to send the request line and headers
    max_header_bytes: int = 64 * 1024  # request line and headers together (431 above)
    load_check_s: float = 30.0  # an admin load's file checks must finish within this, off the model thread
    stuck_after_s: float = 120.0  # /healthz says 503 "stuck" when one model-thread job runs longer
    admin_failures: int = 5  # wrong admin tokens from one client before it must wait (429)
    admin_lockout_s: float = 60.0  # ... this long

    def __post_init__(self) -> None:
        """Every limit is a one-line error when it makes no sense (the serve flags that set them)."""
        for flag, value in (("--max-texts", self.max_texts), ("--max-chars", self.max_chars)):
            if value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}.")
        if self.max_body_bytes < 1024:
            raise UserError(f"--max-body-bytes must be at least 1024, got {self.max_body_bytes}.")
        if self.batch_wait_ms < 0:
            raise UserError(f"--batch-wait-ms must be 0 or more, got {self.batch_wait_ms}.")
        if self.parallel_batches < 1:
            raise UserError(f"--parallel-batches must be 1 or more, got {self.parallel_batches}.")


def check_options(
    runs: list[str],
    names: list[str] | None,
    backend: str,
    limits: Limits,
    threads: int | None,
    runs_root: str | None,
) -> None:
    """The serve options that cannot work together, as one-line errors."""
    if names and len(names) != len(runs):
        raise UserError(f"--name was given {len(names)} times for {len(runs)} runs. Name every run, or none.")
    if limits.parallel_batches > 1 and backend != "onnxruntime":
        raise UserError(
            "--parallel-batches needs --backend onnxruntime: torch adapters share one base whose active "
            "adapter is switched per batch. Drop it, or serve an ONNX export."
        )
    if runs_root and not Path(runs_root).is_dir():
        raise UserError(f"--runs-root {runs_root} is not a folder. Pass the folder runs are loaded from.")
    if threads is not None and (threads < 1 or backend != "torch"):
        raise UserError(
            f"--threads {threads}: give 1 or more, with --backend torch (ONNX Runtime shares the cores "
            "between --parallel-batches)."
        )


def serving_threads(given: int | None) -> int:
    """torch threads for `serve`: as given, else the CPU cores less one, left to the event loop (HTTP,
    JSON, tokenizing). On 2 cores one thread answered one-text requests in 23 ms against 36-44 ms with
    two, and 1.2-1.3x the requests/s under 8 clients (benchmarks/README.md, "Serving backends")."""
    from intentlab.hardware import usable_cores, warn_if_oversubscribed

    if given:
        warn_if_oversubscribed(given, "serving")
    return given or max(1, usable_cores() - 1)


def admin_token(token_file: str | None, token: str | None) -> str | None:
    """The admin token from --admin-token-file (first line), else --admin-token, else the environment."""
    if token_file:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
            token = lines[0].strip() if lines else ""
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--admin-token-file {token_file}: {e}. Give a readable text file.") from None
        if not token:
            raise UserError(f"--admin-token-file {token_file} is empty. Put the token on its first line.")
        return token
    if token:
        print(
            "intentlab serve: warning: --admin-token is visible to other users in the process list; "
            "prefer INTENTLAB_ADMIN_TOKEN or --admin-token-file",
            file=sys.stderr,
        )
    return token or os.environ.get("INTENTLAB_ADMIN_TOKEN") or None
