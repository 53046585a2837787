"""Shared helpers for the benchmarks: Banking77 location, subsets, medians, the machine and its kind,
and `isolated()`, which runs each measured configuration in its own fresh process.

Benchmarks are not tests: they print measurements and ratios against a baseline measured in the same
run, so a noisy shared machine shifts both sides alike. Every configuration runs in its own process,
so no global state (Accelerate's mixed precision, torch threads, allocator caches) leaks from one side
into the other.
"""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from intentlab.hardware import (
    ONEDNN_CAP_VARS,
    machine_kind,  # noqa: F401  (re-exported for the benchmark scripts)
)

ROOT = Path(__file__).resolve().parents[1]
# The documented switches that keep torch's three kernel libraries on older instructions: oneDNN (bf16
# matmuls; intentlab.hardware honours its cap), MKL (fp32 matmuls) and ATen's own vectorised kernels.
# With all three at AVX2 a newer CPU runs the AVX2 kind's code paths and instructions -- on its own
# cores, clocks and memory, so its figures are that CPU's under the cap, never the AVX2 kind's.
ISA_CAPS = (*ONEDNN_CAP_VARS, "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")
AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def banking77_dir() -> Path:
    for cand in (os.environ.get("INTENTLAB_DATA_DIR"), ROOT.parent / "shared" / "data" / "banking77"):
        if cand and (Path(cand) / "train.csv").is_file():
            return Path(cand)
    raise SystemExit("Banking77 not found: set INTENTLAB_DATA_DIR to the folder with train.csv and test.csv.")


def subset(n: int, out: Path, seed: int = 0, test_rows: int = 770) -> Path:
    """A folder with `n` shuffled Banking77 training rows, intents taken in turn so every intent appears
    (train.csv), and `test_rows` Banking77 test rows of those intents, half as validation.csv, half as
    test.csv (so no validation is carved from a small train set)."""
    import random
    from itertools import chain, zip_longest

    src = banking77_dir()
    rng = random.Random(seed)
    rows = list(csv.DictReader((src / "train.csv").open(encoding="utf-8")))
    rng.shuffle(rows)
    by_label: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_label.setdefault(r["category"], []).append(r)
    interleaved = [r for r in chain.from_iterable(zip_longest(*by_label.values())) if r]
    train = interleaved[:n]
    rng.shuffle(train)
    seen = {r["category"] for r in train}
    test = [r for r in csv.DictReader((src / "test.csv").open(encoding="utf-8")) if r["category"] in seen]
    rng.shuffle(test)
    out.mkdir(parents=True, exist_ok=True)
    half = test_rows // 2
    for name, part in (
        ("train.csv", train),
        ("validation.csv", test[:half]),
        ("test.csv", test[half:test_rows]),
    ):
        with (out / name).open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["text", "category"])
            w.writeheader()
            w.writerows(part)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    threads = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    line = f"{cpu}, {os.cpu_count()} CPUs, {threads}, {platform.python_version()}, intentlab on {shipped_malloc()}"
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if os.environ.get(k)]
    if caps:
        line += f"; instruction sets capped ({', '.join(caps)}; ATen dispatches {torch.backends.cpu.get_cpu_capability()})"
    return line


def shipped_malloc() -> str:
    """The allocator intentlab's measured processes run on, as `intentlab train` would (allocator.py)."""
    from intentlab import allocator

    lib = allocator.wanted()
    return "glibc malloc" if lib is None else f"tcmalloc ({lib})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def isolated(fn: Any, *args: Any, shipped_malloc: bool = True) -> Any:
    """`fn(*args)` in a freshly spawned Python process; returns its (picklable) result. The process runs
    on the allocator `intentlab train` runs on (tcmalloc where installed, intentlab/allocator.py), or,
    with `shipped_malloc=False`, on this process's own (glibc's, unless LD_PRELOAD says otherwise)."""
    import multiprocessing as mp
    from unittest import mock

    from intentlab import allocator

    # a spawned child starts from this environment; patch.dict puts it back afterwards
    env = allocator.child_env() if shipped_malloc else {}
    with mock.patch.dict(os.environ, env), mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def malloc_line(trainer_shipped: bool = False) -> str:
    """Which allocator the Trainer side of an intentlab / Trainer benchmark runs on."""
    theirs = (
        shipped_malloc()
        if trainer_shipped
        else "this process's (glibc malloc unless LD_PRELOAD says otherwise)"
    )
    return f"Trainer on {theirs}; intentlab on {shipped_malloc()}"


def train_epoch_stats(method: str, overrides: dict[str, Any], out: str) -> dict[str, Any]:
    """Train one run (in whatever process calls this) and return its first epoch's numbers."""
    from intentlab.config import resolve
    from intentlab.models.loading import quiet_transformers
    from intentlab.training.loop import train

    quiet_transformers()
    res = train(resolve(method, None, overrides), out, progress=False)
    row = res.train.epochs[0]
    return {
        "train_examples_per_second": row.train_examples_per_second,
        "epoch_seconds": row.epoch_seconds,
        "padding_fraction": row.padding_fraction,
        "tokens": res.train.train_tokens_per_epoch,
        "bf16": bool(res.run.config["bf16"]),
        "val_accuracy": row.val_accuracy,
        "test_accuracy": res.test.accuracy,
        "train_seconds": res.train.train_seconds,
    }


def epoch_flops(method: str, overrides: dict[str, Any]) -> dict[str, float]:
    """The matmul FLOPs of one training epoch as `train` runs it, counted by torch's `FlopCounterMode`
    over every step (forward and backward, adapters and attention included; only the products autograd
    really computes, so frozen layers below the lowest adapter count their forward pass only). Returns
    the FLOPs done on the padded batches and the share of real tokens, so that
    `flops * real_share` is the work the real tokens needed."""
    from torch.utils.flop_counter import FlopCounterMode

    from intentlab.config import resolve
    from intentlab.models.loading import quiet_transformers
    from intentlab.training.loop import for_this_machine, train_step
    from intentlab.training.setup import Setup, make_accelerator

    quiet_transformers()
    cfg = for_this_machine(resolve(method, None, overrides))
    accelerator = make_accelerator(cfg)
    setup = Setup(cfg, accelerator)
    setup.model.train()
    lengths = [len(t) for t in setup.tokens["train"]]
    real = padded = 0
    with FlopCounterMode(display=False) as counter:
        for batch in setup.sampler.batches():
            padded += train_step(setup, accelerator, batch)[2]
            real += sum(lengths[i] for i in batch)
    return {"flops": float(counter.get_total_flops()), "real_share": real / padded}
