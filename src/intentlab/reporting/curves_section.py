"""The report's learning-curve section: how each method's accuracy, cost and generalisation gap move
with the number of training examples per intent, and generated findings (the smallest size at which
each method beats the TF-IDF baseline for real, where curves cross, the cheapest method within noise
of the best at each size). Needs runs at two or more train sizes (`compare --train-sizes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from intentlab import methods as M
from intentlab.reporting.charts import _save, colours
from intentlab.reporting.document import Doc
from intentlab.reporting.load import RunRecord, size_key
from intentlab.reporting.plots import _pyplot
from intentlab.reporting.stats import PairedResult, compare_predictions
from intentlab.reporting.summary import mean_std


def per_intent(r: RunRecord) -> float:
    """Training examples per intent of a run (its sample, or the whole training split)."""
    d = r.result.run.dataset
    return d.get("sizes", {}).get("train", 0) / max(d.get("num_labels", 1), 1)


def by_method_and_size(groups: dict[str, list[RunRecord]]) -> dict[str, dict[str | None, list[RunRecord]]]:
    out: dict[str, dict[str | None, list[RunRecord]]] = {}
    for runs in groups.values():
        out.setdefault(runs[0].base_name, {})[runs[0].size] = runs
    return out


def _test(a: list[RunRecord], b: list[RunRecord]) -> PairedResult | None:
    if not all(r.preds for r in a + b) or a[0].preds["y_true"] != b[0].preds["y_true"]:  # type: ignore[index]
        return None
    return compare_predictions(
        a[0].preds["y_true"],  # type: ignore[index]
        [r.preds["y_pred"] for r in a],  # type: ignore[index]
        [r.preds["y_pred"] for r in b],  # type: ignore[index]
    )


def analyse(groups: dict[str, list[RunRecord]]) -> dict[str, Any]:
    """Per method and size: accuracy, macro-F1, time, train/validation accuracy; and the paired tests
    the findings need. {} with fewer than two train sizes."""
    table = by_method_and_size(groups)
    sizes = sorted({s for per in table.values() for s in per}, key=size_key)
    if len(sizes) < 2:
        return {}
    rows = []
    for base, per in table.items():
        for size in sorted(per, key=size_key):
            runs = per[size]
            rows.append(
                {
                    "method": base,
                    "size": size,
                    "n": len(runs),
                    "per_intent": float(np.mean([per_intent(r) for r in runs])),
                    "test_accuracy": mean_std([r.result.test.accuracy for r in runs]),
                    "test_f1_macro": mean_std([r.result.test.f1_macro for r in runs]),
                    "train_seconds": mean_std([r.result.train.train_seconds for r in runs]),
                    "train_accuracy": mean_std([r.result.train.train_accuracy for r in runs]),
                    "val_accuracy": mean_std([r.result.train.best_val_accuracy for r in runs]),
                    "epochs": mean_std([r.result.train.epochs_run for r in runs]),
                }
            )
    floor = M.floor_of(table)
    vs_floor = {
        (b, s): _test(table[b][s], table[floor][s])
        for b in table
        if floor and b != floor
        for s in sizes
        if s in table[b] and s in table[floor]
    }
    pairs = [(a, b) for a, b in M.pairs(table) if b != floor]
    crossings = {
        (a, b, s): _test(table[a][s], table[b][s])
        for a, b in pairs
        for s in sizes
        if s in table[a] and s in table[b]
    }
    every = [r for per in table.values() for runs in per.values() for r in runs]
    return {
        "rows": rows,
        "compute": {
            "runs": len(every),
            "train_seconds": sum(r.result.train.train_seconds for r in every),
            "wall_seconds": sum(_wall_seconds(r) for r in every),
        },
        # the most training rows any run measured its train accuracy on, when some runs used a sample
        "train_sample": max(
            (r.result.train.train_accuracy_examples or 0 for r in every if _train_sampled(r)), default=0
        ),
        "sizes": sizes,
        "floor": floor,
        "vs_floor": vs_floor,
        "crossings": crossings,
        "table": table,
    }


def _train_sampled(r: RunRecord) -> bool:
    n = r.result.train.train_accuracy_examples
    return n is not None and n < r.result.run.dataset.get("sizes", {}).get("train", n)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _wall_seconds(r: RunRecord) -> float:
    """started -> finished of a run (its training, evaluation and writing); its train time if unknown."""
    from datetime import datetime

    info = r.result.run
    try:
        span = datetime.fromisoformat(info.finished_at) - datetime.fromisoformat(info.started_at)
        return span.total_seconds()
    except ValueError:
        return r.result.train.train_seconds


def _chart(
    rows: list[dict[str, Any]], keys: list[tuple[str, str]], title: str, out: Path, log_y: bool = False
) -> Path:
    plt = _pyplot()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    c = colours(methods)
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5.6 * len(keys), 4.2), constrained_layout=True, squeeze=False
    )
    for ax, (key, label) in zip(axes[0], keys, strict=True):
        for m in methods:
            mine = [r for r in rows if r["method"] == m and r[key][0] == r[key][0]]
            if not mine:
                continue
            x = np.array([r["per_intent"] for r in mine])
            y = np.array([r[key][0] for r in mine])
            s = np.array([r[key][1] for r in mine])
            ax.plot(x, y, "o-", color=c[m], label=m)
            ax.fill_between(x, y - s, y + s, color=c[m], alpha=0.2)
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set(xlabel="training examples per intent (log scale)", ylabel=label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, out)


def _gap_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["train_accuracy"][0] == r["train_accuracy"][0]:
            gap = r["train_accuracy"][0] - r["val_accuracy"][0]
            out.append({**r, "gap": (gap, 0.0)})
    return out


def section(doc: Doc, analysis: dict[str, Any], figs: Path) -> None:
    if not analysis:
        return
    rows = analysis["rows"]
    doc.h("Learning curves: accuracy against training examples per intent")
    doc.p(
        "Each cell samples its training data with its own seed (stratified, the same number of examples per "
        "intent); its validation split is as many unused training texts per intent, what a user with that little "
        "labelled data could hold out; the test split is always the whole official test set. Runs on small data "
        "take at least `min_steps` optimizer steps (more epochs)."
        + (
            f" Train accuracy is measured after training on at most {analysis['train_sample']:,} training rows "
            "(a seeded sample where a cell has more)."
            if analysis.get("train_sample")
            else ""
        )
    )
    doc.table(
        [
            "method",
            "examples per intent",
            "seeds",
            "test acc (%)",
            "test macro-F1 (%)",
            "train acc (%)",
            "val acc (%)",
            "epochs",
            "train time (s)",
        ],
        [
            [
                r["method"],
                f"{r['per_intent']:.0f}",
                str(r["n"]),
                f"{100 * r['test_accuracy'][0]:.2f} ± {100 * r['test_accuracy'][1]:.2f}",
                f"{100 * r['test_f1_macro'][0]:.2f}",
                "–"
                if r["train_accuracy"][0] != r["train_accuracy"][0]
                else f"{100 * r['train_accuracy'][0]:.2f}",
                f"{100 * r['val_accuracy'][0]:.2f}",
                f"{r['epochs'][0]:.0f}",
                f"{r['train_seconds'][0]:.0f}",
            ]
            for r in rows
        ],
        sortable=True,
    )
    c = analysis["compute"]
    doc.p(
        f"Total compute: {c['runs']} runs, {_duration(c['train_seconds'])} of training (the sum of every "
        f"run's train time) and {_duration(c['wall_seconds'])} from start to finish of each run (evaluation "
        "and writing included), summed over runs."
    )
    doc.img(
        _chart(
            rows,
            [("test_accuracy", "test accuracy"), ("test_f1_macro", "test macro-F1")],
            "Learning curves (mean ± std over seeds)",
            figs / "learning_curves.png",
        ),
        "learning curves",
    )
    doc.img(
        _chart(
            rows,
            [("train_seconds", "training seconds (log scale)")],
            "Training time against data",
            figs / "train_time_by_size.png",
            log_y=True,
        ),
        "training time by train size",
    )
    gaps = _gap_rows(rows)
    if gaps:
        doc.img(
            _chart(
                gaps,
                [("gap", "train accuracy minus best validation accuracy")],
                "Generalisation gap",
                figs / "generalisation_gap.png",
            ),
            "generalisation gap",
        )


def _fmt_size(size: str | None, rows: list[dict[str, Any]]) -> str:
    per = next((r["per_intent"] for r in rows if r["size"] == size), 0)
    return (
        f"{per:.0f} examples per intent"
        if size is None
        else (f"{size} per intent" if "." not in size else f"{float(size):.0%} of the data")
    )


def findings(analysis: dict[str, Any]) -> list[str]:
    if not analysis:
        return []
    rows, sizes, floor = analysis["rows"], analysis["sizes"], analysis["floor"]
    out = []
    if floor:
        for m in dict.fromkeys(r["method"] for r in rows if r["method"] != floor):
            real = [
                s for s in sizes if (t := analysis["vs_floor"].get((m, s))) and t.significant and t.diff > 0
            ]
            out.append(
                f"{M.prose(m)[0].upper() + M.prose(m)[1:]} beat the TF-IDF baseline for real from "
                f"{_fmt_size(real[0], rows)} on."
                if real
                else f"{M.prose(m)[0].upper() + M.prose(m)[1:]} never beat the TF-IDF baseline for real at the sizes measured."
            )
    for (a, b, s), t in analysis["crossings"].items():
        if t is None:
            continue
        lead = M.prose(a) if t.diff > 0 else M.prose(b)
        verdict = "a real difference" if t.significant else "within noise"
        out.append(
            f"At {_fmt_size(s, rows)}, {M.prose(a)} against {M.prose(b)}: {lead} ahead by "
            f"{100 * abs(t.diff):.2f} points ({verdict}, McNemar p={t.p_mcnemar:.2g})."
        )
    table = analysis["table"]
    for s in sizes:
        here = [r for r in rows if r["size"] == s]
        best = max(here, key=lambda r: r["test_accuracy"][0])
        close = [
            r
            for r in here
            if r is best
            or (
                (t := _test(table[r["method"]][s], table[best["method"]][s])) is not None
                and not t.significant
            )
        ]
        cheapest = min(close, key=lambda r: r["train_seconds"][0])
        out.append(
            f"At {_fmt_size(s, rows)}, the most accurate method was {M.prose(best['method'])} "
            f"({100 * best['test_accuracy'][0]:.2f}%); the cheapest within noise of it was "
            f"{M.prose(cheapest['method'])} ({cheapest['train_seconds'][0]:.0f} s of training)."
        )
    return out
