"""Opening a stranger's files: regular files only, within a size, and JSON and safetensors headers
checked before anything is built from them.

A run folder may come from anyone. A FIFO or a symlink to /dev/zero in it must not hang or flood
whoever opens it (`read_regular` opens with O_NOFOLLOW|O_NONBLOCK, then checks it is a regular file),
a JSON file nested a thousand deep must be a one-line error, not a RecursionError, and a safetensors
file whose header declares a million tensors is refused from its first bytes (`check_safetensors`).
Every check here is file-level and quick: the server runs them off its model thread, with a deadline,
before a load is allowed near the shared base (`preflight`).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from pathlib import Path
from typing import Any

from intentlab.errors import UserError

MAX_JSON_BYTES = 64 * 2**20  # a run's JSON files (result.json with per-class scores: ~1 MB for 77 intents)
MAX_HEADER_BYTES = 16 * 2**20  # a safetensors header (a full BERT-base: ~20 KB)
MAX_TENSORS = 20_000  # tensors in one safetensors file (BERT-large: ~400)


def _open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, which must be a regular file and not a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP: a symlink
        raise UserError(
            f"{path} cannot be opened safely ({e.strerror}): a run's files must be regular files."
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(
            f"{path} is not a regular file (a FIFO, device or folder). The run folder was tampered with."
        )
    return fd


def read_regular(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (FileNotFoundError when it is missing)."""
    path = Path(path)
    fd = _open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise UserError(f"{path} is {size:,} bytes, over the {max_bytes:,} this file may have.")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    finally:
        os.close(fd)


def read_json(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A regular file's JSON; unreadable, non-UTF-8, too big or too deeply nested: one UserError."""
    raw = read_regular(path, max_bytes)
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as e:
        raise UserError(
            f"{path} is not valid JSON ({type(e).__name__}). The run's files are corrupt."
        ) from None


def sha256_regular(path: str | Path) -> str:
    """The SHA-256 of a regular file, read in chunks."""
    fd = _open_regular(Path(path))
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_safetensors(path: str | Path) -> None:
    """Refuse a safetensors file that is not a regular file, or whose header is too large or declares
    too many tensors, from its first bytes (before safetensors parses it whole)."""
    path = Path(path)
    fd = _open_regular(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            head = f.read(8)
            if len(head) < 8:
                raise UserError(f"{path} is not a safetensors file (too short). The run's files are corrupt.")
            (size,) = struct.unpack("<Q", head)
            if size > MAX_HEADER_BYTES:
                raise UserError(
                    f"{path}: a safetensors header of {size:,} bytes is refused (at most {MAX_HEADER_BYTES:,})."
                )
            header = f.read(size)
    finally:
        os.close(fd)
    try:
        names = json.loads(header.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError):
        raise UserError(f"{path} has a corrupt safetensors header. The run's files are corrupt.") from None
    if not isinstance(names, dict) or len(names) > MAX_TENSORS + 1:
        raise UserError(
            f"{path} declares {len(names) if isinstance(names, dict) else '?'} tensors; at most {MAX_TENSORS} are read."
        )


def check_inside(root: Path, folder: Path) -> None:
    """Every entry under `folder` (symlinks followed) must resolve inside `root`."""
    root = root.resolve()
    for base, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            entry = Path(base) / name
            try:
                target = entry.resolve(strict=False)
            except (OSError, RuntimeError) as e:
                raise UserError(f"{entry} cannot be resolved ({e}).") from None
            if not target.is_relative_to(root):
                raise UserError(f"{entry} points outside the runs root {root} (to {target}). Refused.")
