"""What the hardware can do fast, decided once per run.

bf16 autocast is a large win only where matrix units support it: CUDA GPUs with bf16, and x86 CPUs with
AVX512-BF16 or AMX. On a CPU without them (AVX2 only) oneDNN falls back to a reference path and bf16
matmuls run ~50x slower than fp32 (measured: 2 vs 107 GFLOP/s on a 2-core AMD EPYC), so `--bf16`
defaults to on only where it pays.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

FAST_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def fast_bf16(device_type: str = "cpu") -> bool:
    """True where bf16 matmuls beat fp32 on `device_type` ('cpu' or 'cuda')."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return any(f in cpu_flags() for f in FAST_BF16_CPU_FLAGS)


def machine_kind() -> str:
    """'fast bf16 (avx512_bf16)' / '(amx_bf16)' where bf16 CPU matmuls beat fp32, else the AVX2 kind.
    Recorded with every run, so a time is never read as if it came from the other kind of CPU."""
    fast = [f for f in FAST_BF16_CPU_FLAGS if f in cpu_flags()]
    return f"fast bf16 ({', '.join(fast)})" if fast else "no fast bf16 (AVX2: bf16 is emulated)"


def default_device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
