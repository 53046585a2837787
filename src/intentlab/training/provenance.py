"""Provenance: versions, code revision, machine and command line, recorded in every run's `meta`."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from intentlab import allocator
from intentlab.hardware import machine_kind
from intentlab.runs.record import SCHEMA_VERSION

COMMAND: list[str] = []  # the intentlab command line being run (set by cli.main)


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
        "command": COMMAND or sys.argv,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "machine_kind": machine_kind(),
        "allocator": allocator.active(),
    }
