"""Writing output folders safely: atomic files, one writer per folder, and nothing ever lost.

- `write_text_atomic` (and its JSON/JSONL forms): temp file in the same folder, fsync, rename; the
  file gets the permissions the umask gives (not mkstemp's 0600).
- `FolderLock`: an exclusive lock (the `filelock` library, released by the kernel when the process
  dies) held for a folder's whole life as an output; a second writer gets "in use by pid N".
- `OutputDir`: claims a run (or export) folder. An existing folder is replaced only with
  `overwrite`, only when it is a folder intentlab wrote, and only once the new one is complete: the
  old one waits beside it as `.NAME.replaced-PID-TIME`. A SIGKILL at any moment leaves either the
  old or the new folder whole; the next command that claims the folder puts a lost old copy back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from intentlab.errors import UserError

_umask_lock = threading.Lock()


# ----------------------------------------------------------------------------- atomic writes
def umask() -> int:
    """The process umask (read without changing it for longer than a moment)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def share_modes(folder: str | Path) -> None:
    """Give every file and folder under `folder` the permissions the umask gives (0644/0755 under the
    usual 022). Libraries write some files owner-only (safetensors 0.8 writes weights 0600), and then
    another user, or a container with another uid, could read a run's config but not load its model."""
    mask = umask()
    for root, dirs, files in os.walk(folder):
        for name, mode in [(d, 0o777) for d in dirs] + [(f, 0o666) for f in files]:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, mode & ~mask)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------- one writer per folder
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def real_path(path: str | Path) -> Path:
    """`path` with every symlink resolved (also when it does not exist yet): what a lock keys on, so
    that `--out run` and `--out alias` (a link to run) are one folder with one writer."""
    return Path(os.path.realpath(Path(path).expanduser()))


def check_folder_path(path: str | Path, flag: str = "--out") -> None:
    """A one-line UserError when `path`, or a folder above it, is a file: it can never be a folder."""
    full = Path(path).absolute()
    for parent in full.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{flag} {path}: {parent} is a file, not a folder. Choose a folder path.")
    if full.exists() and not full.is_dir():
        raise UserError(f"{flag} {path} is a file. Choose a folder path.")


class FolderLock:
    """An exclusive, non-blocking lock on an output folder (`.NAME.lock` beside it).

    The kernel drops the lock when its process dies, so a SIGKILL never leaves a folder locked. The
    holder's pid is written to `.NAME.owner` for the message a second writer gets.
    """

    def __init__(self, folder: Path) -> None:
        from filelock import FileLock

        # the real folder, symlinks resolved: two names for one folder take one lock
        folder = real_path(folder)
        self.folder = folder
        self.owner = folder.with_name(f".{folder.name}.owner")
        self._lock = FileLock(str(folder.with_name(f".{folder.name}.lock")), timeout=0, thread_local=False)

    def acquire(self, what: str = "") -> FolderLock:
        from filelock import Timeout

        self.folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            pid = self.owner.read_text().strip() if self.owner.is_file() else "?"
            raise UserError(
                f"{what or self.folder} is in use by another intentlab process (pid {pid}). "
                "Wait for it to finish, or choose another output folder."
            ) from None
        write_text_atomic(self.owner, f"{os.getpid()}\n")
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            self.owner.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ----------------------------------------------------------------------------- claiming folders
def foreign_entries(folder: Path, marker: str, entries: frozenset[str] | None) -> list[str]:
    """Entries of `folder` that intentlab did not write there (empty: the folder is intentlab's)."""
    if not (folder / marker).is_file():
        return sorted(p.name for p in folder.iterdir())[:5] or ["(no " + marker + ")"]
    if entries is None:
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name not in entries and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def _backups(folder: Path) -> list[Path]:
    return sorted(folder.parent.glob(f".{folder.name}.replaced-*")) if folder.parent.is_dir() else []


def recover_replaced(folder: Path, marker: str, complete: str) -> list[str]:
    """Put back an old copy that a killed `--overwrite` left as `.NAME.replaced-PID-TIME`.

    The old copy returns when the folder is missing or incomplete and the copy is complete; a
    complete folder next to an old copy is reported, never deleted. Returns what was done, one line
    each (callers print them)."""
    notes = []
    for backup in _backups(folder):
        try:
            pid = int(backup.name.rsplit("-", 2)[1])
        except (IndexError, ValueError):
            continue
        if _alive(pid) and pid != os.getpid():
            continue  # a live writer (that holds no lock: an older intentlab) is still replacing it
        current_ok = folder.is_dir() and (folder / marker).is_file() and (folder / complete).is_file()
        if not current_ok and (backup / marker).is_file():
            if folder.exists():
                shutil.rmtree(folder)
            backup.rename(folder)
            notes.append(f"restored {folder} from {backup.name}, left by an interrupted --overwrite")
        else:
            notes.append(
                f"{backup} is the previous copy of {folder}, left by an interrupted --overwrite; "
                f"{folder.name} is complete, so you can delete it"
            )
    return notes


class OutputDir:
    """Claims an output folder for a new run (or export) without ever losing what was there.

    Construction checks everything and takes the folder's lock (held until `release()`); `claim()`
    creates the folder, moving an existing one aside when overwriting; `commit()` deletes the old
    copy once the new folder is complete; `abort()` removes the new one and puts the old one back.
    """

    def __init__(
        self,
        path: str | Path,
        overwrite: bool = False,
        lock: bool = True,
        *,
        marker: str,
        entries: frozenset[str] | None,
        complete: str,
        flag: str = "--out",
        staged: bool = False,
    ) -> None:
        self.path = real_path(path)
        # staged: everything is written into `.NAME.partial-PID-TIME` and renamed into place at commit, so
        # a kill leaves the old folder (or none), never a half-written one at the final name
        self.staged = staged
        self.partial: Path | None = None
        self.backup: Path | None = None
        self.claimed = False
        self.marker = marker
        self.complete = complete  # the file whose presence marks the folder finished
        check_folder_path(path, flag)
        self.lock = FolderLock(self.path).acquire(str(path)) if lock else None
        try:
            for note in recover_replaced(self.path, marker, complete):
                print(f"intentlab: {note}", file=sys.stderr)
            for old in (
                self.path.parent.glob(f".{self.path.name}.partial-*") if self.path.parent.is_dir() else []
            ):
                shutil.rmtree(old, ignore_errors=True)  # a killed writer's leftovers (we hold the lock)
            self._check(overwrite, entries, flag)
        except BaseException:
            self.release()
            raise

    def _check(self, overwrite: bool, entries: frozenset[str] | None, flag: str) -> None:
        if not (self.path.is_dir() and any(self.path.iterdir())):
            return
        if not overwrite:
            done = (self.path / self.complete).is_file()
            state = "a complete run" if done else "an incomplete run or other files"
            raise UserError(
                f"output folder {self.path} already exists and holds {state}. "
                f"Choose another {flag}, or pass --overwrite to replace it."
            )
        foreign = foreign_entries(self.path, self.marker, entries)
        if foreign:
            raise UserError(
                f"--overwrite refuses to replace {self.path}: it holds files intentlab did not write "
                f"({', '.join(foreign)}). Move them away or choose another {flag}."
            )

    def claim(self) -> Path:
        """Create the folder (moving an old one aside if overwriting), or the staging folder that
        `commit` renames into place. Call after inputs validated; write into what it returns."""
        if self.staged:
            self.partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}-{time.time_ns()}")
            self.partial.mkdir(parents=True)
            self.claimed = True
            return self.partial
        if self.path.is_dir() and any(self.path.iterdir()):
            self.backup = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}-{time.time_ns()}")
            self.path.rename(self.backup)
        self.path.mkdir(parents=True, exist_ok=True)
        self.claimed = True
        return self.path

    def commit(self) -> None:
        if self.partial is not None:  # staged: the finished folder takes the final name now
            share_modes(self.partial)
            if self.path.exists():
                self.backup = self.path.with_name(
                    f".{self.path.name}.replaced-{os.getpid()}-{time.time_ns()}"
                )
                self.path.rename(self.backup)
            self.partial.rename(self.path)
            self.partial = None
        share_modes(self.path)  # one policy for everything an output folder holds (weights included)
        if self.backup is not None:
            shutil.rmtree(self.backup, ignore_errors=True)
            self.backup = None
        self.release()

    def abort(self) -> None:
        """Remove the half-written folder (if claimed); put back whatever was there before."""
        if self.partial is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            self.partial = None
        elif self.claimed:
            shutil.rmtree(self.path, ignore_errors=True)
        self.claimed = False
        if self.backup is not None:
            self.backup.rename(self.path)
            self.backup = None
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()
