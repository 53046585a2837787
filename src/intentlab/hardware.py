"""What the hardware can do fast, decided once per run.

bf16 autocast is a large win only where matrix units support it: CUDA GPUs with bf16, and x86 CPUs with
AVX512-BF16 or AMX. On a CPU without them (AVX2 only) oneDNN falls back to a reference path and bf16
matmuls run ~50x slower than fp32 (measured: 2 vs 107 GFLOP/s on a 2-core AMD EPYC), so `--bf16`
defaults to on only where it pays.

oneDNN, which runs torch's bf16 matmuls on CPUs, can be told to use older instructions only
(`ONEDNN_MAX_CPU_ISA=AVX2`, its documented dispatcher control). Where that cap rules out the bf16 units,
bf16 is not fast either, so the cap is honoured here and named in `machine_kind()`: a run made under it
says so in its result.json.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

FAST_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN's instruction sets in the order of its dispatcher (dnnl_cpu_isa_t), and the lowest cap that
# still lets it use each bf16 flag above
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
)
BF16_FLAG_NEEDS = {"avx512_bf16": "AVX512_CORE_BF16", "amx_bf16": "AVX10_1_512_AMX"}
# oneDNN's cap, under its current name and its older one (read in this order)
ONEDNN_CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def onednn_isa_cap() -> str | None:
    """The instruction-set cap set for oneDNN (`ONEDNN_MAX_CPU_ISA`, or its older name `DNNL_MAX_CPU_ISA`),
    upper-cased; None where none is set (or it is `ALL`/`DEFAULT`, which cap nothing)."""
    for name in ONEDNN_CAP_VARS:
        value = os.environ.get(name, "").strip().upper()
        if value:
            return None if value in ("ALL", "DEFAULT") else value
    return None


def fast_bf16_flags() -> list[str]:
    """The CPU's bf16 flags that oneDNN may use: all of them unless an instruction-set cap rules some out
    (a cap oneDNN does not know is treated as no cap, as oneDNN ignores it)."""
    flags = [f for f in FAST_BF16_CPU_FLAGS if f in cpu_flags()]
    cap = onednn_isa_cap()
    if cap not in ONEDNN_ISAS:
        return flags
    return [f for f in flags if ONEDNN_ISAS.index(cap) >= ONEDNN_ISAS.index(BF16_FLAG_NEEDS[f])]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def warn_if_oversubscribed(threads: int, what: str = "training") -> None:
    """More torch threads than the cores this process may use is allowed but slows every step (OpenMP
    threads then wait on each other), so it is said on stderr."""
    cores = usable_cores()
    if threads > cores:
        print(
            f"intentlab: warning: threads {threads} is more than the {cores} CPU core(s) this process may "
            f"use; the extra threads share cores and slow {what} (leave --threads unset for the default)",
            file=sys.stderr,
        )


def sleeping_openmp_threads() -> None:
    """Make torch's OpenMP threads sleep between parallel regions instead of spinning
    (OMP_WAIT_POLICY=PASSIVE), for every command that runs the model.

    Spinning threads take the CPU from everything else on the machine, and from each other when the
    machine is busy: with another job on it, `serve`'s one-text requests took 60-105 ms instead of
    22-25 ms, and `train --method head` on 2,000 texts 2 min 9 s instead of 51 s (issue 36's
    measurement, AVX2 kind, load 3 on 2 cores); `benchmarks/wait_policy.py` measures both policies on
    a quiet and a busy machine. OpenMP reads the policy when torch loads, so this only acts before
    torch is imported; a user's own OMP_WAIT_POLICY wins, and OMP_WAIT_POLICY=default leaves OpenMP
    its own default (spin a while, then sleep)."""
    if "torch" in sys.modules:
        return
    if os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "default":
        del os.environ["OMP_WAIT_POLICY"]  # not a value OpenMP knows: it means "leave it unset"
    else:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_torch_threads(threads: int | None) -> None:
    """torch's intra-op threads as a run's config asks (None: torch's own choice, the physical cores)."""
    if not threads:
        return
    import torch

    torch.set_num_threads(threads)
    warn_if_oversubscribed(threads)


def fast_bf16(device_type: str = "cpu") -> bool:
    """True where bf16 matmuls beat fp32 on `device_type` ('cpu' or 'cuda')."""
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(fast_bf16_flags())


def machine_kind() -> str:
    """'fast bf16 (avx512_bf16)' / '(amx_bf16)' where bf16 CPU matmuls beat fp32, else the AVX2 kind;
    with ', oneDNN capped at X' where ONEDNN_MAX_CPU_ISA is set. Recorded with every run, so a time is
    never read as if it came from the other kind of CPU."""
    fast = fast_bf16_flags()
    kind = f"fast bf16 ({', '.join(fast)})" if fast else "no fast bf16 (AVX2: bf16 is emulated)"
    cap = onednn_isa_cap()
    return f"{kind}, oneDNN capped at {cap}" if cap else kind


def default_device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
