"""The numbers of a report: per-method mean and standard deviation over seeds, paired tests, and the
tables that show them. Standard deviations are sample standard deviations (ddof=1) everywhere:
tables, chart bands and findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from intentlab import methods as M
from intentlab.reporting.load import RunRecord
from intentlab.reporting.stats import PairedResult, compare_predictions

# summary key -> how to read it from a typed record
SUMMARY_KEYS = {
    "test_accuracy": lambda r: r.test.accuracy,
    "test_f1_macro": lambda r: r.test.f1_macro,
    "test_f1_weighted": lambda r: r.test.f1_weighted,
    "best_val_accuracy": lambda r: r.train.best_val_accuracy,
    "train_seconds": lambda r: r.train.train_seconds,
    "epoch_seconds": lambda r: r.train.mean_epoch_seconds,
    "examples_per_second": lambda r: r.train.train_examples_per_second,
    "peak_memory_mb": lambda r: r.train.peak_memory_mb,
    "checkpoint_bytes": lambda r: r.train.checkpoint_bytes,
}
DDOF = 1  # sample standard deviation over seeds


def mean_std(values: list[float | None]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one value) of the values that are set; NaN when none are."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return (float("nan"), float("nan"))
    return float(arr.mean()), float(arr.std(ddof=DDOF)) if arr.size > 1 else 0.0


def summarize(groups: dict[str, list[RunRecord]]) -> list[dict[str, Any]]:
    """One row per group: mean and std (over seeds) of every headline number."""
    rows = []
    for name, runs in groups.items():
        first = runs[0].result
        row: dict[str, Any] = {
            "name": name,
            "method": first.run.method,
            "n": len(runs),
            "seeds": [r.seed for r in runs],
            "trainable_params": first.train.trainable_params,
            "total_params": first.train.total_params,
            "trainable_percent": first.train.trainable_percent,
            "epochs": mean_std([r.result.train.epochs_run for r in runs]),
        }
        for key, read in SUMMARY_KEYS.items():
            row[key] = mean_std([read(r.result) for r in runs])
        if first.teacher:  # a distilled group: its teacher, shown beside its name
            row["teacher"] = {
                "run": Path(first.teacher.path).name,
                "test_accuracy": first.teacher.test_accuracy,
            }
        rows.append(row)
    return rows


def representatives(methods: dict[str, str]) -> dict[str, str]:
    """method -> the group that stands for it, from group name -> method: the group named after the
    method (`lora`, not the variant `lora-cls`), else the first of its groups."""
    out: dict[str, str] = {}
    for name, method in methods.items():
        if name == method or method not in out:
            out[method] = name
    return out


def variant_pairs(methods: dict[str, str]) -> list[tuple[str, str]]:
    """(variant, its method's representative) for every other group of a method, e.g. lora-cls vs lora."""
    rep = representatives(methods)
    return [(name, rep[m]) for name, m in methods.items() if name != rep[m]]


def paired_tests(groups: dict[str, list[RunRecord]]) -> dict[tuple[str, str], PairedResult]:
    """The method table's pairs (e.g. LoRA vs full), each variant against its method's own group (e.g.
    lora-cls vs lora), and every group vs the baseline, on test predictions."""
    methods = {name: g[0].method for name, g in groups.items()}
    by_method = representatives(methods)
    pairs = [(by_method[a], by_method[b]) for a, b in M.pairs(by_method)]
    pairs += [p for p in variant_pairs(methods) if p not in pairs]
    floor = M.floor_of(by_method)
    if floor:
        pairs += [
            (n, by_method[floor])
            for n in groups
            if n != by_method[floor] and (n, by_method[floor]) not in pairs
        ]
    out = {}
    for a, b in pairs:
        ra, rb = groups[a], groups[b]
        if all(r.preds for r in ra + rb):
            y = ra[0].preds["y_true"]  # type: ignore[index]
            out[(a, b)] = compare_predictions(
                y,
                [r.preds["y_pred"] for r in ra],  # type: ignore[index]
                [r.preds["y_pred"] for r in rb],  # type: ignore[index]
            )
    return out


def fmt(ms: tuple[float, float], scale: float = 1.0, digits: int = 2, n: int = 1) -> str:
    m, s = ms
    if m != m:  # NaN
        return "–"
    return f"{m * scale:.{digits}f}" if n == 1 else f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


SUMMARY_HEADER = [
    "method",
    "seeds",
    "trainable params",
    "% of total",
    "train time (s)",
    "s / epoch",
    "train ex/s",
    "peak memory (MB)",
    "checkpoint (MB)",
    "best val acc (%)",
    "test acc (%)",
    "test macro-F1 (%)",
    "test weighted F1 (%)",
]


def summary_table(summary: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for r in summary:
        n = r["n"]
        teacher = r.get("teacher")
        taught = (
            f" (distilled from {teacher['run']}: {100 * teacher['test_accuracy']:.2f}%)" if teacher else ""
        )
        rows.append(
            [
                f"**{r['name']}**{taught}",
                str(n),
                f"{r['trainable_params']:,}",
                f"{r['trainable_percent']:.2f}",
                fmt(r["train_seconds"], digits=0, n=n),
                fmt(r["epoch_seconds"], digits=1, n=n),
                fmt(r["examples_per_second"], digits=0, n=n),
                fmt(r["peak_memory_mb"], digits=0, n=n),
                fmt(r["checkpoint_bytes"], 1 / 2**20, 2, n),
                fmt(r["best_val_accuracy"], 100, n=n),
                fmt(r["test_accuracy"], 100, n=n),
                fmt(r["test_f1_macro"], 100, n=n),
                fmt(r["test_f1_weighted"], 100, n=n),
            ]
        )
    return SUMMARY_HEADER, rows


def tests_table(tests: dict[tuple[str, str], PairedResult]) -> tuple[list[str], list[list[str]]]:
    header = [
        "pair",
        "accuracy difference (points)",
        "95% bootstrap CI",
        "only A right / only B right",
        "McNemar p",
        "across-seeds Welch p",
        "verdict",
    ]
    rows = [
        [
            f"{a} vs {b}",
            f"{t.diff * 100:+.2f}",
            f"[{t.low * 100:+.2f}, {t.high * 100:+.2f}]",
            f"{t.a_only} / {t.b_only}",
            f"{t.p_mcnemar:.3g}",
            "–" if t.p_seeds is None else f"{t.p_seeds:.3g}",
            "**real**" if t.significant else "within noise",
        ]
        for (a, b), t in tests.items()
    ]
    return header, rows


def epoch_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The study's per-epoch format, with macro-F1 added."""
    header = ["Epoch", "Training Loss", "Validation Loss", "Accuracy", "F1", "F1 (macro)", "seconds"]

    def f(v: Any, d: int = 4) -> str:
        return "–" if v is None else f"{v:.{d}f}"

    return header, [
        [
            str(r["epoch"]),
            f(r["train_loss"]),
            f(r["val_loss"]),
            f(r["val_accuracy"]),
            f(r["val_f1_weighted"]),
            f(r["val_f1_macro"]),
            f(r["epoch_seconds"], 1),
        ]
        for r in rows
    ]
