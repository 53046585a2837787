"""The audit's report: counts, the top label issues with their texts, confusable intent pairs, leaks,
duplicates and outliers, and three charts, as report.md and a self-contained report.html (the
reports' own document model, `reporting/document.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentlab.audit import issues as I
from intentlab.audit.data import AuditData
from intentlab.folders import write_text_atomic
from intentlab.reporting.charts import _save, label_counts
from intentlab.reporting.document import Doc
from intentlab.reporting.plots import _pyplot

TOP = 30  # label issues listed in the report (issues.csv has them all)
KIND_NAMES = {
    "label": "label issue",
    "conflicting_duplicate": "duplicate with another label",
    "near_duplicate": "near-duplicate",
    "outlier": "outlier",
    "test_leak": "also in test",
}


def _issue_counts_chart(counts: dict[str, int], out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8), constrained_layout=True)
    names = [KIND_NAMES[k] for k in counts]
    ax.barh(names[::-1], list(counts.values())[::-1], color="#C44E52")
    for y, v in enumerate(list(counts.values())[::-1]):
        ax.text(v, y, f" {v:,}", va="center", fontsize=8)
    ax.set(xlabel="flagged rows", title="Issues found, by kind")
    return _save(fig, out)


def _confusable_chart(pairs: list[dict[str, Any]], out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(pairs) + 1.2), constrained_layout=True)
    names = [f"{p['a']} / {p['b']}" for p in pairs][::-1]
    ax.barh(names, [100 * p["rate"] for p in pairs][::-1], color="#8172B3")
    ax.tick_params(axis="y", labelsize=7)
    ax.set(xlabel="% of both intents' rows mixed up (out-of-fold)", title="Most confusable intent pairs")
    return _save(fig, out)


def build(data: AuditData, findings: I.Findings, opts: Any, charts: Path) -> Doc:
    doc = Doc(f"intentlab audit — {data.name}")
    flagged = len({i.index for i in findings.issues})
    how = f"a trained run's features ({Path(opts.run).name})" if opts.run else "the frozen encoder's features"
    doc.p(
        f"{len(data.texts):,} labelled rows in {len(data.classes)} intents ({', '.join(sorted(set(data.files)))}); "
        f"{flagged:,} flagged. Out-of-fold probabilities from {opts.folds}-fold cross-validation of "
        f"`{opts.method}` on {how} (out-of-fold accuracy {100 * findings.accuracy:.2f}%); label issues, "
        "outliers and near-duplicates by cleanlab's Datalab. Every flagged row is in `issues.csv`, with its "
        "row number in your file. The test set is only checked for leaks, never cleaned."
    )
    doc.img(_issue_counts_chart(findings.counts, charts / "issues.png"), "issues found, by kind")
    doc.h("Label issues")
    top = findings.of_kind("label")[:TOP]
    doc.p(
        f"The {len(top)} rows cleanlab is most sure are mislabelled (of {findings.counts['label']:,}), with the "
        "label the out-of-fold model suggests. Read them: some are real errors, some are texts that fit two intents."
    )
    doc.table(
        ["score", "row", "text", "given", "suggested"],
        [
            [
                f"{i.score:.3f}",
                f"{data.files[i.index]}:{data.rows[i.index]}",
                data.texts[i.index],
                data.labels[i.index],
                i.suggested or "",
            ]
            for i in top
        ],
        sortable=True,
    )
    doc.h("Confusable intents")
    if findings.confusable:
        doc.p(
            "The intent pairs the out-of-fold predictions mix up most, as a share of both intents' rows: candidates "
            "to merge, or to relabel with a clearer rule."
        )
        doc.img(
            _confusable_chart(findings.confusable, charts / "confusable.png"), "most confusable intent pairs"
        )
        doc.table(
            ["pair", "mixed up", "rate", "examples of the first", "examples of the second"],
            [
                [
                    f"{p['a']} / {p['b']}",
                    str(p["mixed"]),
                    f"{100 * p['rate']:.1f}%",
                    " · ".join(p["examples_a"]),
                    " · ".join(p["examples_b"]),
                ]
                for p in findings.confusable
            ],
        )
    else:
        doc.p("The out-of-fold predictions mix up no two intents.")
    doc.h("Duplicates, leaks and outliers")
    leaks = findings.leaks
    doc.bullets(
        [
            f"{findings.counts['conflicting_duplicate']:,} rows share their text (exactly, or at cosine ≥ {I.NEAR_COSINE}) "
            "with a row of another label: no model can get both right.",
            f"{findings.counts['test_leak']:,} rows are also in test ({sum(x['kind'] == 'exact' for x in leaks):,} exactly, "
            f"{sum(x['kind'] == 'near' for x in leaks):,} nearly): test scores on them are optimistic.",
            f"{findings.counts['near_duplicate']:,} near-duplicates and {findings.counts['outlier']:,} outliers (cleanlab).",
        ]
    )
    conflicts = findings.of_kind("conflicting_duplicate")[:10]
    if conflicts:
        doc.table(
            ["row", "text", "label", "other"],
            [
                [
                    f"{data.files[i.index]}:{data.rows[i.index]}",
                    data.texts[i.index],
                    data.labels[i.index],
                    i.detail,
                ]
                for i in conflicts
            ],
            caption="Duplicates with another label (first 10)",
        )
    outliers = findings.of_kind("outlier")[:10]
    if outliers:
        doc.table(
            ["score", "row", "text", "label"],
            [
                [
                    f"{i.score:.3f}",
                    f"{data.files[i.index]}:{data.rows[i.index]}",
                    data.texts[i.index],
                    data.labels[i.index],
                ]
                for i in outliers
            ],
            caption="Most unusual rows (first 10)",
        )
    doc.h("Class balance")
    imb = findings.imbalance
    doc.p(
        f"{imb['classes']} intents, {imb['smallest']} to {imb['largest']} rows each (ratio {imb['ratio']:.1f}); smallest: "
        f"{', '.join(imb['smallest_classes'])}."
    )
    counts: dict[str, int] = {}
    for y in data.labels:
        counts[y] = counts.get(y, 0) + 1
    doc.img(label_counts(counts, charts / "label_counts.png"), "rows per intent")
    return doc


def write_report(out: Path, data: AuditData, findings: I.Findings, opts: Any) -> None:
    doc = build(data, findings, opts, out / "charts")
    write_text_atomic(out / "report.md", doc.markdown(out))
    write_text_atomic(out / "report.html", doc.html())
