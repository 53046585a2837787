"""`intentlab report RUN_OR_DIR... --out DIR`: a comparison report built from run folders alone.

Reads each run's typed record and test predictions (never imports training code or torch), groups
runs by name (default: method), aggregates mean ± std over seeds, runs paired tests on the test
predictions, writes charts, and renders `report.md` plus one self-contained `report.html`.
Findings are sentences generated from the numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from intentlab import methods as M
from intentlab.errors import UserError
from intentlab.folders import FolderLock, check_folder_path
from intentlab.reporting import charts, curves_section, ood_section
from intentlab.reporting.document import Doc
from intentlab.reporting.findings import findings, ood_findings
from intentlab.reporting.load import RunRecord, check_same_split, discover, group, size_key
from intentlab.reporting.stats import PairedResult
from intentlab.reporting.summary import (
    epoch_table,
    paired_tests,
    representatives,
    summarize,
    summary_table,
    tests_table,
)
from intentlab.runs.files import RUN_MARKER

# what a report writes into its folder (which may hold other things: docs/results keeps runs/ there)
REPORT_ENTRIES = ("report.md", "report.html", "summary.json", "charts")


def build_report(paths: list[str | Path], out: str | Path) -> dict[str, Any]:
    """Write report.md, report.html and charts/ under `out`; returns the summary numbers."""
    check_folder_path(out)
    with FolderLock(Path(out)).acquire(f"report folder {out}"):
        check_report_folder(Path(out))
        return _build_report(paths, out)


def check_report_folder(out: Path) -> None:
    """A report replaces the report files in `out` only where intentlab wrote them (its summary.json is
    beside them): a user's own report.md is never overwritten."""
    if (out / RUN_MARKER).is_file():
        raise UserError(f"--out {out} is a run folder (it holds {RUN_MARKER}). Write the report elsewhere.")
    present = [name for name in REPORT_ENTRIES if (out / name).exists()]
    if present and not _is_report_summary(out / "summary.json"):
        raise UserError(
            f"--out {out} already holds {', '.join(present)}, not written by `intentlab report`. "
            "Move them away or choose another --out."
        )


def _is_report_summary(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"summary", "tests"} <= data.keys()


def _build_report(paths: list[str | Path], out: str | Path) -> dict[str, Any]:
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
    top = largest_size(groups)  # a learning curve: method comparisons at its largest train size
    tests = paired_tests(top)
    ood = ood_section.analyse(top)
    curves = curves_section.analyse(groups)
    out = Path(out)
    figs = out / "charts"
    doc = _header(runs, groups)
    doc.h("Findings")
    main = [r for r in summary if r["name"] in top]
    doc.bullets(findings(main, tests) + ood_findings(ood) + curves_section.findings(curves), kind="finding")
    _summary_section(doc, summary, tests)
    curves_section.section(doc, curves, figs)
    ood_section.section(doc, top, ood, figs)
    _charts_section(doc, top, [r for r in summary if r["name"] in top], figs)
    _errors_section(doc, groups, figs)
    _dataset_section(doc, _dataset(runs), figs)
    _runs_section(doc, groups)
    if problems:
        doc.h("Runs left out")
        doc.bullets(problems, kind="warn")
    _provenance_section(doc, runs, paths, out)
    out.mkdir(parents=True, exist_ok=True)
    from intentlab.folders import write_json_atomic, write_text_atomic

    write_text_atomic(out / "report.md", doc.markdown(out))
    write_text_atomic(out / "report.html", doc.html())
    write_json_atomic(
        out / "summary.json",
        {
            "summary": summary,
            "tests": {f"{a} vs {b}": vars(t) for (a, b), t in tests.items()},
            "out_of_scope": {
                "rows": ood.get("rows", []),
                "tests": {f"{a} vs {b}": vars(t) for (a, b), t in ood.get("tests", {}).items()},
            },
            "left_out": problems,
        },
    )
    return {"summary": summary, "tests": tests, "problems": problems}


def largest_size(groups: dict[str, list[RunRecord]]) -> dict[str, list[RunRecord]]:
    """The groups trained at the study's largest train size (all of them when there are no train sizes):
    methods are only compared on equal data; a method missing from that size is compared, size by size,
    in the learning-curve section."""
    top = max(size_key(runs[0].size) for runs in groups.values())
    return {name: runs for name, runs in groups.items() if size_key(runs[0].size) == top}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _dataset(runs: list[RunRecord]) -> dict[str, Any]:
    """The dataset description of the runs (one with token lengths when any has them)."""
    described = [r.result.run.dataset for r in runs]
    return next((d for d in described if "train_token_lengths" in d), described[0])


def _header(runs: list[RunRecord], groups: dict[str, list[RunRecord]]) -> Doc:
    first = runs[0].result.run
    encoder = next((r.result.run.model for r in runs if M.get(r.method).encoder), first.model)
    doc = Doc(f"intentlab report — {first.data}")
    methods = len({r.method for r in runs})
    what = f"{_plural(len(runs), 'run')} of {_plural(methods, 'method')}"
    if len(groups) > methods:
        what += f" in {len(groups)} groups (a method at one train size, or a plan variant)"
    doc.p(
        f"{what} on **{first.data}** (encoder `{encoder}`). Every number below is read from the run "
        "folders; the findings are generated from them."
    )
    return doc


def _summary_section(
    doc: Doc, summary: list[dict[str, Any]], tests: dict[tuple[str, str], PairedResult]
) -> None:
    doc.h("Summary (mean ± std over seeds)")
    doc.table(*summary_table(summary))
    doc.p(
        "± is the sample standard deviation over seeds (ddof=1), here and in the charts' bands. Train time "
        "includes the per-epoch validation passes. Peak memory is the process's peak resident memory on CPU "
        "(or peak allocated GPU memory). Checkpoint size counts weight files only; adapters need the shared "
        "base model beside them."
    )
    if not tests:
        return
    doc.h("Is the difference real? Paired tests on the test predictions")
    doc.table(*tests_table(tests))
    doc.p(
        "The bootstrap resamples test examples, with each example's correctness averaged over seeds; McNemar "
        "uses the first seed of each; Welch's t-test compares the per-seed test accuracies (two or more seeds "
        "on both sides). A difference is called real only when all of them agree: the interval excludes zero "
        "and both p-values are below 0.05."
    )


def _charts_section(
    doc: Doc, groups: dict[str, list[RunRecord]], summary: list[dict[str, Any]], figs: Path
) -> None:
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


def _errors_section(doc: Doc, groups: dict[str, list[RunRecord]], figs: Path) -> None:
    """Error analysis of the most accurate run: the full confusion matrix, per-intent scores,
    confidence of right and wrong answers."""
    best = max((r for g in groups.values() for r in g), key=lambda r: r.result.test.accuracy)
    if not best.preds:
        return
    p, labels = best.preds, best.preds["labels"]
    tag = f"{best.name}, seed {best.seed}"
    doc.h(f"Error analysis of the most accurate run ({tag})")
    matrix = charts.confusion_matrix(
        labels, p["y_true"], p["y_pred"], f"Confusion matrix of {tag} (test)", figs / "confusion_matrix.png"
    )
    doc.img(matrix, "full confusion matrix")
    per = best.result.test.per_class
    if per:
        rows = [
            [
                lab,
                f"{100 * s['precision']:.1f}",
                f"{100 * s['recall']:.1f}",
                f"{100 * s['f1']:.1f}",
                str(s["support"]),
            ]
            for lab, s in sorted(per.items(), key=lambda kv: kv[1]["f1"])
        ]
        doc.p("Per-intent scores on test, worst F1 first (click a column header in report.html to sort).")
        doc.table(["intent", "precision (%)", "recall (%)", "F1 (%)", "support"], rows, sortable=True)
    if "confidence" in p:
        correct = [t == q for t, q in zip(p["y_true"], p["y_pred"], strict=True)]
        title = f"Top probability of right and wrong answers ({tag})"
        doc.img(
            charts.confidence_histogram(p["confidence"], correct, title, figs / "confidence.png"),
            "confidence",
        )


def _mistakes(r: RunRecord, k: int = 20) -> tuple[list[str], list[list[str]]] | None:
    """A run's k most confident misclassified test texts."""
    p = r.preds
    if not p or "texts" not in p or "confidence" not in p:
        return None
    labels = p["labels"]
    wrong = [i for i, (t, q) in enumerate(zip(p["y_true"], p["y_pred"], strict=True)) if t != q]
    wrong.sort(key=lambda i: -p["confidence"][i])
    rows = [
        [p["texts"][i], labels[p["y_true"][i]], labels[p["y_pred"][i]], f"{p['confidence'][i]:.3f}"]
        for i in wrong[:k]
    ]
    return ["text", "true intent", "predicted", "confidence"], rows


def _runs_section(doc: Doc, groups: dict[str, list[RunRecord]]) -> None:
    doc.h("Per-run training tables")
    for name, g in groups.items():
        for r in g:
            inner = Doc(str(r.path))
            inner.table(*epoch_table(r.rows))
            t = r.result.test
            inner.p(
                f"Test: accuracy {t.accuracy:.4f}, macro-F1 {t.f1_macro:.4f}, weighted F1 {t.f1_weighted:.4f}."
            )
            mistakes = _mistakes(r)
            if mistakes and mistakes[1]:
                inner.p(f"Its {len(mistakes[1])} most confident mistakes on test:")
                inner.table(*mistakes)
            doc.details(f"{name} · seed {r.seed} · {r.path.name}", inner)


def _provenance_section(doc: Doc, runs: list[RunRecord], paths: list[str | Path], out: Path) -> None:
    doc.h("Provenance")
    meta = runs[0].result.meta
    versions = meta.get("versions", {})
    doc.p(
        f"intentlab {versions.get('intentlab')}, torch {versions.get('torch')}, transformers "
        f"{versions.get('transformers')}, peft {versions.get('peft')}; {meta.get('cpu')} "
        f"({meta.get('cpu_count')} CPUs{', ' + meta['machine_kind'] if meta.get('machine_kind') else ''}); "
        f"git {meta.get('git', {}).get('commit', 'unknown')[:10]}."
    )
    kinds = sorted({str(r.result.meta.get("machine_kind", "not recorded")) for r in runs})
    if len(kinds) > 1:
        doc.p(
            f"The runs come from different kinds of machine ({'; '.join(kinds)}): compare times within one kind."
        )
    doc.code("intentlab report " + " ".join(map(str, paths)) + f" --out {out}")


def _per_class_charts(doc: Doc, groups: dict[str, list[RunRecord]], figs: Path) -> None:
    by_method = representatives({n: g[0].method for n, g in groups.items()})
    best = max((r for g in groups.values() for r in g), key=lambda r: r.result.test.accuracy)
    labels = best.preds["labels"] if best.preds else None
    pair = next(iter(M.pairs(by_method)), None)
    if pair and labels:
        a, b = by_method[pair[0]], by_method[pair[1]]

        def mean_f1(name: str) -> dict[str, float]:
            per = [r.result.test.per_class for r in groups[name]]
            return {lab: float(np.mean([p[lab]["f1"] for p in per])) for lab in labels}

        doc.img(
            charts.per_class_difference(
                labels, mean_f1(a), mean_f1(b), a, b, figs / "per_class_difference.png"
            ),
            f"per-intent F1 difference, {a} vs {b}",
        )
    if best.preds:
        title = f"Most confused intents of the best run ({best.name}, seed {best.seed}): true → predicted"
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
