"""Run-directory I/O: atomic writes, the result.json schema, provenance, and safe (re)creation.

A run directory holds:

    config.yaml        the resolved config (every default written out)
    metrics.jsonl      one JSON object per epoch
    result.json        {"run", "train", "test", "meta"}; written last, so its presence marks completion
    test_predictions.json   gold and predicted label ids on the test split (for paired statistics)
    model/             tokenizer + label map + adapter (or full weights); loadable on its own
    plots/             per-run charts

This module imports neither torch nor training code: reports and serving read runs through it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from intentlab.errors import UserError

SCHEMA_VERSION = 1
RESULT = "result.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
PREDICTIONS = "test_predictions.json"
EPOCH_KEYS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_f1_macro",
    "val_f1_weighted",
    "epoch_seconds",
    "train_examples_per_second",
    "lr",
)


# ----------------------------------------------------------------------------- atomic writes
def write_text_atomic(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------- creating run dirs
def is_complete(run: str | Path) -> bool:
    return (Path(run) / RESULT).is_file()


class RunDir:
    """Claims an output folder for a new run without ever losing what was there.

    Without `overwrite`, an existing non-empty folder is an error. With it, the old folder is moved
    aside and deleted only once the new run completes; if the new run fails, the old one is restored.
    """

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.backup: Path | None = None
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} is a file. Choose a folder path for the run.")
        if self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
            state = "a complete run" if is_complete(self.path) else "an incomplete run or other files"
            raise UserError(
                f"output folder {self.path} already exists and holds {state}. "
                "Choose another --out, or pass --overwrite to replace it (or --resume to continue it)."
            )

    def claim(self) -> Path:
        """Create the folder (moving an old one aside if overwriting). Call after inputs validated."""
        if self.path.is_dir() and any(self.path.iterdir()):
            self.backup = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}-{int(time.time())}")
            self.path.rename(self.backup)
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def commit(self) -> None:
        if self.backup is not None:
            shutil.rmtree(self.backup, ignore_errors=True)
            self.backup = None

    def abort(self) -> None:
        """Remove the half-written run; put back whatever was there before."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.backup is not None:
            self.backup.rename(self.path)
            self.backup = None


# ----------------------------------------------------------------------------- provenance
def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the intentlab checkout, when it is a git repository."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": bool(dirty)} if commit else {}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """Versions, code revision, machine and command line: enough to say where a number came from."""
    pkgs = ("intentlab", "torch", "transformers", "peft", "accelerate", "scikit-learn", "numpy", "tokenizers")
    return {
        "schema_version": SCHEMA_VERSION,
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in pkgs}},
        "git": git_info(),
        "command": sys.argv,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
    }


# ----------------------------------------------------------------------------- reading runs
def read_config(run: str | Path) -> Any:
    """The recorded `config.yaml` of a run as a validated `Config` (every reader goes through here)."""
    from intentlab.config import Config, merge, read_yaml

    path = Path(run) / CONFIG
    if not path.is_file():
        raise UserError(
            f"{run} is not a run folder (no {CONFIG}). Pass a folder written by `intentlab train`."
        )
    return merge(Config(), read_yaml(path), str(path))


def load_result(run: str | Path) -> dict[str, Any]:
    """result.json of a complete run; a missing, incomplete or newer-schema run is a UserError."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"run folder {run} not found. Pass a folder written by `intentlab train`.")
    path = run / RESULT
    if not path.is_file():
        raise UserError(
            f"run {run} is incomplete (no {RESULT}): it was interrupted or is still running. "
            "Resume it with `intentlab train --resume` or train it again."
        )
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt ({e}). Train the run again.") from None
    version = result.get("meta", {}).get("schema_version") if isinstance(result, dict) else None
    if version != SCHEMA_VERSION:
        raise UserError(
            f"run {run} has schema version {version}, this intentlab reads version {SCHEMA_VERSION}. "
            "Use the intentlab version that wrote it, or train it again."
        )
    return result
