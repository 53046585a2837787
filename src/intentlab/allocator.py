"""Which C memory allocator the model commands run on: tcmalloc where the machine has it.

A training step on a CPU allocates and frees the same activation and gradient buffers thousands of
times an epoch. glibc's malloc hands large blocks back to the kernel and takes them again (page faults
and zeroing every step); tcmalloc keeps them. Measured with `python benchmarks/allocator.py`: same
results bit for bit, and faster epochs (figures in docs/tuning.md); inference over many texts gains
too. The allocator has to be chosen before the process starts, so the commands that run the model
(`intentlab train|compare|sweep|evaluate|predict|ood|export|serve`, `cli.MODEL_COMMANDS`) re-execute
themselves once with tcmalloc in `LD_PRELOAD`, as PyTorch's own CPU launcher
(`torch.backends.xeon.run_cpu`) does.

    INTENTLAB_ALLOCATOR=auto     # default: tcmalloc if installed (Debian/Ubuntu: libtcmalloc-minimal4)
    INTENTLAB_ALLOCATOR=system   # keep the C library's malloc
    INTENTLAB_ALLOCATOR=/path/libtcmalloc_minimal.so.4   # this library (must exist)

Linux only; elsewhere, or where no tcmalloc is installed, nothing changes. Runs record the allocator
they ran on (`meta.allocator` in result.json).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from intentlab.errors import UserError

ENV = "INTENTLAB_ALLOCATOR"
_REEXECUTED = "_INTENTLAB_ALLOCATOR_REEXECUTED"  # set in the re-executed process: never loop
NAMES = ("tcmalloc_minimal", "tcmalloc")  # gperftools' libraries, the minimal one first
KNOWN = ("tcmalloc", "jemalloc", "mimalloc")


def find_tcmalloc() -> str | None:
    """tcmalloc's library where the dynamic linker (or the active venv/conda env) can find it."""
    for name in NAMES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    for env in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        if os.environ.get(env):
            for name in NAMES:
                hits = sorted(Path(os.environ[env], "lib").glob(f"lib{name}.so*"))
                if hits:
                    return str(hits[0])
    return None


def wanted(env: Mapping[str, str] | None = None) -> str | None:
    """The library to preload under `env`'s INTENTLAB_ALLOCATOR, or None for the C library's malloc."""
    env = os.environ if env is None else env
    choice = env.get(ENV, "auto").strip() or "auto"
    if choice == "system" or not sys.platform.startswith("linux"):
        return None
    if choice == "auto":
        return find_tcmalloc()
    if not Path(choice).is_file():
        raise UserError(
            f"{ENV}={choice} is not a file. Point it at an allocator library "
            "(e.g. /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4), or set it to auto or system."
        )
    return choice


def active() -> str:
    """The allocator this process runs on: 'tcmalloc', 'jemalloc', 'mimalloc', or 'system'."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return next((name for name in KNOWN if f"lib{name}" in maps), "system")


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the wanted allocator added to LD_PRELOAD, for a new process."""
    env = dict(os.environ if env is None else env)
    lib = wanted(env)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    if lib and not any(name in p for p in preload for name in KNOWN):  # one allocator, the user's first
        env["LD_PRELOAD"] = ":".join([lib, *preload])
        # tcmalloc reports every allocation over 1 GiB on stderr; a large cache is not news
        env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
    return env


def reexec_if_wanted() -> None:
    """Replace this process with itself on the wanted allocator (same pid, argv and file descriptors);
    returns where nothing is to change: already on it, none wanted or found, or already re-executed."""
    if os.environ.get(_REEXECUTED) or not sys.executable or active() != "system":
        return
    env = child_env()
    if env.get("LD_PRELOAD", "") == os.environ.get("LD_PRELOAD", ""):
        return
    env[_REEXECUTED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:  # could not start it: carry on, on the C library's malloc
        return
