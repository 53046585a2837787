"""Measurements recorded with each run: memory, token lengths, the fingerprint of a data split, the rows
train accuracy is measured on, and the record's `run` section built from them."""

from __future__ import annotations

import contextlib
import os
import resource
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from intentlab.data.run_data import split_fingerprint, test_fingerprint
from intentlab.runs import EpochRow, RunInfo, TrainInfo

# train accuracy (the generalisation gap's other side) is measured on at most this many training examples:
# scoring all 9,003 of Banking77's took ~20 s of a 4-minute LoRA run; 2,500 keep its standard error below
# half a point above 95% accuracy, and cover a 30-per-intent learning-curve cell whole
TRAIN_ACCURACY_EXAMPLES = 2500


def train_accuracy_rows(n: int, seed: int) -> list[int]:
    """The training rows train accuracy is measured on: all of them, or a seeded sample (in order)."""
    if n <= TRAIN_ACCURACY_EXAMPLES:
        return list(range(n))
    import numpy as np

    rng = np.random.default_rng([seed, n])
    return sorted(rng.choice(n, TRAIN_ACCURACY_EXAMPLES, replace=False).tolist())


def train_accuracy(
    labels: Sequence[int], seed: int, scores_for: Callable[[list[int]], Any]
) -> tuple[float, int]:
    """(accuracy, rows) on the training rows of `train_accuracy_rows`; `scores_for(rows)` gives their
    logits or margins, in that order."""
    from intentlab.inference.metrics import metrics

    rows = train_accuracy_rows(len(labels), seed)
    return metrics([labels[i] for i in rows], scores_for(rows))["accuracy"], len(rows)


def run_info(
    cfg: Any,
    ds: Any,
    started: str,
    model: str,
    dataset: dict[str, Any],
    num_processes: int = 1,
    device: str = "cpu",
    resumed: int = 0,
) -> RunInfo:
    """The `run` section of a record: what was trained, on which data split, where and when."""
    from datetime import datetime, timezone

    return RunInfo(
        method=cfg.method,
        model=model,
        seed=cfg.seed,
        data=ds.name,
        split_fingerprint=split_fingerprint(ds),
        test_fingerprint=test_fingerprint(ds),
        started_at=started,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=cfg.to_dict(),
        dataset=dataset,
        num_processes=num_processes,
        device=device,
        resumed=resumed,
    )


def length_histogram(ids: list[list[int]]) -> dict[str, int]:
    """{tokens: count} over a split, for the report's length histogram."""
    counts = Counter(len(t) for t in ids)
    return {str(k): counts[k] for k in sorted(counts)}


def rss_mb() -> float:
    """Current resident memory of this process (Linux), MB."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM), so a run in a long-lived process measures its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _vm_hwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_memory_mb(device: Any = None) -> tuple[float, str]:
    """Peak allocated GPU memory on CUDA; else the process's peak resident memory since the last
    `reset_peak_rss()` (Linux VmHWM), falling back to getrusage's lifetime peak."""
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    hwm = _vm_hwm_mb()
    if hwm is not None:
        return hwm, "process_peak_rss"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss_lifetime"


def one_pass_train_info(
    val: dict[str, Any],
    seconds: float,
    examples: int,
    params: int,
    checkpoint_bytes: int,
    train_accuracy: tuple[float, int],
    val_loss: float | None,
    lr: float | None,
) -> TrainInfo:
    """The training record of a method fitted in one pass (TF-IDF, SetFit): one row, the best epoch
    is that pass, every parameter trained; `examples` are what the pass went through (texts, pairs);
    `train_accuracy` is (accuracy, examples it was measured on)."""
    row = EpochRow(
        epoch=1,
        train_loss=None,
        val_loss=val_loss,
        val_accuracy=val["accuracy"],
        val_f1_macro=val["f1_macro"],
        val_f1_weighted=val["f1_weighted"],
        epoch_seconds=seconds,
        train_examples_per_second=examples / seconds,
        lr=lr,
        elapsed_seconds=seconds,
    )
    return TrainInfo(
        epochs=[row],
        best_epoch=1,
        best_val_accuracy=val["accuracy"],
        trainable_params=params,
        total_params=params,
        train_seconds=seconds,
        peak_memory_mb=peak_memory_mb()[0],
        memory_kind="process_peak_rss",
        checkpoint_bytes=checkpoint_bytes,
        train_accuracy=train_accuracy[0],
        train_accuracy_examples=train_accuracy[1],
    )
