"""Shared helpers for the benchmarks: Banking77 location, subsets, medians, machine description.

Benchmarks are not tests: they print measurements and ratios against a baseline measured in the same
run, so a noisy shared machine shifts both sides alike.
"""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def banking77_dir() -> Path:
    for cand in (os.environ.get("INTENTLAB_DATA_DIR"), ROOT.parent / "shared" / "data" / "banking77"):
        if cand and (Path(cand) / "train.csv").is_file():
            return Path(cand)
    raise SystemExit("Banking77 not found: set INTENTLAB_DATA_DIR to the folder with train.csv and test.csv.")


def subset(n: int, out: Path, seed: int = 0) -> Path:
    """A folder with the first `n` shuffled Banking77 training rows as train.csv and the real test.csv."""
    import random

    src = banking77_dir()
    rows = list(csv.DictReader((src / "train.csv").open(encoding="utf-8")))
    random.Random(seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "train.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "category"])
        w.writeheader()
        w.writerows(rows[:n])
    (out / "test.csv").write_text((src / "test.csv").read_text(encoding="utf-8"), encoding="utf-8")
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine() -> str:
    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.python_version()}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
