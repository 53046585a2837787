"""`intentlab report RUN_OR_DIR... --out DIR`: a comparison report built from run folders alone.

Reads `result.json` and `test_predictions.json` of each run (never imports training code or torch),
groups runs by name (default: method), aggregates mean ± std over seeds, runs paired tests on the test
predictions, writes charts, and renders `report.md` plus one self-contained `report.html`.
Findings are sentences generated from the numbers.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.models import methods as M
from intentlab.reporting import charts
from intentlab.reporting.document import Doc
from intentlab.reporting.findings import findings
from intentlab.reporting.stats import PairedResult, compare_predictions
from intentlab.runs import CONFIG, PREDICTIONS, RESULT, load_result

SUMMARY_KEYS = {
    "test_accuracy": ("test", "accuracy"),
    "test_f1_macro": ("test", "f1_macro"),
    "test_f1_weighted": ("test", "f1_weighted"),
    "best_val_accuracy": ("train", "best_val_accuracy"),
    "train_seconds": ("train", "train_seconds"),
    "epoch_seconds": ("train", "mean_epoch_seconds"),
    "examples_per_second": ("train", "train_examples_per_second"),
    "peak_memory_mb": ("train", "peak_memory_mb"),
    "checkpoint_bytes": ("train", "checkpoint_bytes"),
}


@dataclass
class RunRecord:
    path: Path
    result: dict[str, Any]
    preds: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.result["run"].get("config", {}).get("name") or self.result["run"]["method"]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.result["train"]["epochs"]


# ----------------------------------------------------------------------------- loading
def _candidates(path: Path) -> list[Path]:
    if (path / RESULT).is_file() or (path / CONFIG).is_file():
        return [path]
    found = {p.parent for pattern in (RESULT, CONFIG) for p in path.rglob(pattern)}
    return sorted(
        p
        for p in found
        if not any(part.startswith(".") or part == "model" for part in p.relative_to(path).parts)
    )


def discover(paths: list[str | Path]) -> tuple[list[RunRecord], list[str]]:
    """Complete runs under `paths`, and one line per run that was left out (and why)."""
    runs, problems = [], []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(f"{path}: not found")
            continue
        for cand in _candidates(path):
            try:
                result = load_result(cand)
            except UserError as e:
                problems.append(str(e))
                continue
            preds_file = cand / PREDICTIONS
            preds = json.loads(preds_file.read_text()) if preds_file.is_file() else None
            runs.append(RunRecord(cand, result, preds))
    return runs, problems


def check_same_split(runs: list[RunRecord]) -> None:
    """Refuse to mix datasets or data splits in one comparison."""
    by_split: dict[str, list[str]] = {}
    for r in runs:
        key = f"{r.result['run']['data']}:{r.result['run'].get('split_fingerprint')}"
        by_split.setdefault(key, []).append(str(r.path))
    if len(by_split) > 1:
        parts = "; ".join(f"{k} ({len(v)} runs, e.g. {v[0]})" for k, v in by_split.items())
        raise UserError(
            f"these runs use different datasets or data splits, so their test scores are not comparable: {parts}. "
            "Report each group separately."
        )


def group(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for r in sorted(runs, key=lambda r: (r.result["run"]["seed"], str(r.path))):
        groups.setdefault(r.name, []).append(r)

    def order(name: str) -> tuple[int, str]:
        return (M.order(groups[name][0].result["run"]["method"]), name)

    return {k: groups[k] for k in sorted(groups, key=order)}


# ----------------------------------------------------------------------------- numbers
def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return (float("nan"), float("nan"))
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarize(groups: dict[str, list[RunRecord]]) -> list[dict[str, Any]]:
    """One row per group: mean and std (over seeds) of every headline number."""
    rows = []
    for name, runs in groups.items():
        first = runs[0].result
        row: dict[str, Any] = {
            "name": name,
            "method": first["run"]["method"],
            "n": len(runs),
            "seeds": [r.result["run"]["seed"] for r in runs],
            "trainable_params": first["train"]["trainable_params"],
            "total_params": first["train"]["total_params"],
            "trainable_percent": first["train"]["trainable_percent"],
            "epochs": mean_std([len(r.rows) for r in runs]),
        }
        for key, (section, field) in SUMMARY_KEYS.items():
            row[key] = mean_std([r.result[section].get(field) for r in runs])
        rows.append(row)
    return rows


def paired_tests(groups: dict[str, list[RunRecord]]) -> dict[tuple[str, str], PairedResult]:
    """The method table's pairs (e.g. LoRA vs full) and every method vs the baseline, on test predictions."""
    by_method = {g[0].result["run"]["method"]: name for name, g in groups.items()}
    pairs = [(by_method[a], by_method[b]) for a, b in M.pairs(by_method)]
    if M.floor_of(by_method):
        floor = by_method[M.floor_of(by_method)]  # type: ignore[index]
        pairs += [(n, floor) for n in groups if n != floor and (n, floor) not in pairs]
    out = {}
    for a, b in pairs:
        ra, rb = groups[a], groups[b]
        if all(r.preds for r in ra + rb):
            y = ra[0].preds["y_true"]  # type: ignore[index]
            out[(a, b)] = compare_predictions(
                y, [r.preds["y_pred"] for r in ra], [r.preds["y_pred"] for r in rb]
            )  # type: ignore[index]
    return out


# ----------------------------------------------------------------------------- the report
def fmt(ms: tuple[float, float], scale: float = 1.0, digits: int = 2, n: int = 1) -> str:
    m, s = ms
    if m != m:  # NaN
        return "–"
    return f"{m * scale:.{digits}f}" if n == 1 else f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def summary_table(summary: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = [
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
    rows = []
    for r in summary:
        n = r["n"]
        rows.append(
            [
                f"**{r['name']}**",
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


def build_report(paths: list[str | Path], out: str | Path) -> dict[str, Any]:
    """Write report.md, report.html and charts/ under `out`; returns the summary numbers."""
    runs, problems = discover(paths)
    for line in problems:
        print(f"intentlab report: warning: skipped {line}", file=sys.stderr)
    if not runs:
        raise UserError(
            "no complete runs found in "
            + ", ".join(map(str, paths))
            + ". Pass run folders written by `intentlab train` or `compare`."
        )
    check_same_split(runs)
    groups = group(runs)
    summary = summarize(groups)
    tests = paired_tests(groups)
    out = Path(out)
    figs = out / "charts"
    first = runs[0].result["run"]
    dataset = next(
        (r.result["run"]["dataset"] for r in runs if "train_token_lengths" in r.result["run"]["dataset"]),
        first["dataset"],
    )

    doc = Doc(f"intentlab report — {first['data']}")
    doc.p(
        f"{len(runs)} runs of {len(groups)} methods on **{first['data']}** "
        f"(encoder `{next((r.result['run']['model'] for r in runs if r.result['run']['method'] != 'baseline'), first['model'])}`). "
        "Every number below is read from the run folders; the findings are generated from them."
    )
    doc.h("Findings")
    doc.bullets(findings(summary, tests), kind="finding")
    doc.h("Summary (mean ± std over seeds)")
    header, rows = summary_table(summary)
    doc.table(header, rows)
    doc.p(
        "Train time includes the per-epoch validation passes. Peak memory is the process's peak resident memory "
        "on CPU (or peak allocated GPU memory). Checkpoint size counts weight files only; adapters need the "
        "shared base model beside them."
    )
    if tests:
        doc.h("Is the difference real? Paired tests on the test predictions")
        trows = [
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
        doc.table(
            [
                "pair",
                "accuracy difference (points)",
                "95% bootstrap CI",
                "only A right / only B right",
                "McNemar p",
                "across-seeds Welch p",
                "verdict",
            ],
            trows,
        )
        doc.p(
            "The bootstrap resamples test examples, with each example's correctness averaged over seeds; McNemar "
            "uses the first seed of each; Welch's t-test compares the per-seed test accuracies (two or more seeds "
            "on both sides). A difference is called real only when all of them agree: the interval excludes zero "
            "and both p-values are below 0.05."
        )
    doc.h("Charts")
    curve_groups = {
        n: [r.rows for r in g] for n, g in groups.items() if g[0].rows[0].get("val_loss") is not None
    }
    if curve_groups:
        doc.img(charts.curves(curve_groups, figs / "curves.png"), "validation accuracy and loss per epoch")
        base_val = next((s["best_val_accuracy"][0] for s in summary if M.floor_of([s["method"]])), None)
        doc.img(
            charts.accuracy_vs_time(curve_groups, base_val, figs / "accuracy_vs_time.png"),
            "validation accuracy against wall-clock time",
        )
    doc.img(charts.frontier(summary, figs / "frontier.png"), "test accuracy against trainable parameters")
    _per_class_charts(doc, groups, figs)
    _dataset_section(doc, dataset, figs)
    doc.h("Per-run training tables")
    for name, g in groups.items():
        for r in g:
            inner = Doc(str(r.path))
            h, rows_ = epoch_table(r.rows)
            inner.table(h, rows_)
            t = r.result["test"]
            inner.p(
                f"Test: accuracy {t['accuracy']:.4f}, macro-F1 {t['f1_macro']:.4f}, weighted F1 {t['f1_weighted']:.4f}."
            )
            doc.details(f"{name} · seed {r.result['run']['seed']} · {r.path.name}", inner)
    if problems:
        doc.h("Runs left out")
        doc.bullets(problems, kind="warn")
    doc.h("Provenance")
    meta = runs[0].result["meta"]
    doc.p(
        f"intentlab {meta['versions'].get('intentlab')}, torch {meta['versions'].get('torch')}, transformers "
        f"{meta['versions'].get('transformers')}, peft {meta['versions'].get('peft')}; {meta.get('cpu')} "
        f"({meta.get('cpu_count')} CPUs); git {meta.get('git', {}).get('commit', 'unknown')[:10]}."
    )
    doc.code("intentlab report " + " ".join(map(str, paths)) + f" --out {out}")
    out.mkdir(parents=True, exist_ok=True)
    from intentlab.runs import write_json_atomic, write_text_atomic

    write_text_atomic(out / "report.md", doc.markdown(out))
    write_text_atomic(out / "report.html", doc.html())
    write_json_atomic(
        out / "summary.json",
        {
            "summary": summary,
            "tests": {f"{a} vs {b}": vars(t) for (a, b), t in tests.items()},
            "left_out": problems,
        },
    )
    return {"summary": summary, "tests": tests, "problems": problems}


def _per_class_charts(doc: Doc, groups: dict[str, list[RunRecord]], figs: Path) -> None:
    by_method = {g[0].result["run"]["method"]: n for n, g in groups.items()}
    best = max((r for g in groups.values() for r in g), key=lambda r: r.result["test"]["accuracy"])
    labels = best.preds["labels"] if best.preds else None
    pair = next(iter(M.pairs(by_method)), None)
    if pair and labels:
        a, b = by_method[pair[0]], by_method[pair[1]]

        def mean_f1(name: str) -> dict[str, float]:
            per = [r.result["test"]["per_class"] for r in groups[name]]
            return {lab: float(np.mean([p[lab]["f1"] for p in per])) for lab in labels}

        doc.img(
            charts.per_class_difference(
                labels, mean_f1(a), mean_f1(b), a, b, figs / "per_class_difference.png"
            ),
            f"per-intent F1 difference, {a} vs {b}",
        )
    if best.preds:
        title = f"Most confused intents of the best run ({best.name}, seed {best.result['run']['seed']}): true → predicted"
        doc.img(
            charts.confusions(
                best.preds["labels"],
                best.preds["y_true"],
                best.preds["y_pred"],
                title,
                figs / "confusions.png",
            ),
            "most confused intent pairs",
        )


def _dataset_section(doc: Doc, dataset: dict[str, Any], figs: Path) -> None:
    doc.h("The data")
    sizes = dataset["sizes"]
    counts = dataset["train_label_counts"]
    doc.p(
        f"**{dataset['name']}**: {dataset['num_labels']} intents; train {sizes['train']:,}, validation "
        f"{sizes['validation']:,}, test {sizes['test']:,} texts"
        + (
            f" (validation carved from train, stratified, seed {dataset['source'].get('split_seed')})"
            if "validation" in dataset.get("source", {}).get("carved", [])
            else ""
        )
        + f". Examples per intent in train: {min(counts.values())}–{max(counts.values())}."
    )
    doc.img(charts.label_counts(counts, figs / "examples_per_intent.png"), "examples per intent")
    if "train_token_lengths" in dataset:
        hist = {int(k): v for k, v in dataset["train_token_lengths"].items()}
        lengths = np.repeat(list(hist), list(hist.values()))
        doc.p(
            f"Tokens per text (with [CLS]/[SEP]): mean {lengths.mean():.1f}, median {np.median(lengths):.0f}, "
            f"95th percentile {np.percentile(lengths, 95):.0f}, max {lengths.max()}. Batches are padded to their "
            "longest text, not to a fixed length."
        )
        doc.img(
            charts.token_lengths(dataset["train_token_lengths"], figs / "token_lengths.png"), "text lengths"
        )


__all__ = ["build_report", "discover", "summarize"]
