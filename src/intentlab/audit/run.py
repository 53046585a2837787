"""One audit, end to end: read the rows, compute features once, out-of-fold probabilities, the issues,
then issues.csv, summary.json, report.md + report.html and, when asked, a cleaned copy of the data.

    intentlab audit --data banking77 --out audits/banking77
    intentlab audit --data my.csv --out audits/mine --write-clean clean/ [--relabel]
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.audit import issues as I
from intentlab.audit.data import AuditData, load_audit_data, write_clean
from intentlab.errors import UserError
from intentlab.folders import OutputDir, write_text_atomic

AUDIT_MARKER = "summary.json"  # an audit folder holds it; --overwrite replaces only such folders
AUDIT_ENTRIES = frozenset({"summary.json", "issues.csv", "report.md", "report.html", "charts"})
CSV_COLUMNS = ("file", "row", "text", "given_label", "suggested_label", "issue", "score", "detail")


@dataclass
class AuditOptions:
    data: str = "banking77"
    data_dir: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    method: str = "head"
    folds: int = 5
    run: str | None = None
    model: str | None = None
    seed: int = 42
    write_clean: str | None = None
    relabel: bool = False
    overwrite: bool = False


@dataclass
class AuditResult:
    data: AuditData
    findings: I.Findings
    seconds: dict[str, float]
    out: Path


def run_audit(opts: AuditOptions, out: str | Path) -> AuditResult:
    """Audit `opts.data` into the folder `out` (claimed like a run folder: never over another's files)."""
    from intentlab.config import resolve
    from intentlab.methods import METHODS
    from intentlab.models.storage import of_method

    I.import_cleanlab()  # a missing extra is a one-line error before any work
    if opts.method not in METHODS:
        raise UserError(f"--method {opts.method!r} is not a method. Choose one of {', '.join(METHODS)}.")
    if opts.relabel and not opts.write_clean:
        raise UserError("--relabel changes the copy --write-clean writes. Add --write-clean DIR.")
    if opts.write_clean and Path(opts.write_clean).exists() and any(Path(opts.write_clean).iterdir()):
        raise UserError(f"--write-clean {opts.write_clean} exists and is not empty. Choose a new folder.")
    folder = OutputDir(out, opts.overwrite, marker=AUDIT_MARKER, entries=AUDIT_ENTRIES, complete=AUDIT_MARKER)
    try:
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        data = load_audit_data(opts.data, opts.data_dir, opts.text_column, opts.label_column)
        if opts.write_clean and Path(opts.write_clean).resolve() in {
            p.parent.resolve() for p in data.sources.values()
        }:
            raise UserError(
                "--write-clean names the data's own folder: the input is never modified. Choose another."
            )
        from intentlab.audit.crossval import check_folds

        check_folds(np.asarray(data.ids()), opts.folds)  # before any work
        cfg = resolve("head", None, {"model": opts.model} if opts.model else {})
        features, test_features = _features(data, cfg, opts.run)
        seconds["features"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        y = np.asarray(data.ids())
        if of_method(opts.method).frozen_encoder:  # the frozen encoder + head: a linear head on the features
            from intentlab.audit.crossval import head_probabilities

            probs = head_probabilities(features, y, opts.folds, opts.seed)
        else:
            from intentlab.audit.crossval import method_probabilities

            overrides = {"model": opts.model} if opts.model else {}
            probs = method_probabilities(
                data.texts, data.labels, data.classes, opts.folds, opts.seed, opts.method, overrides
            )
        seconds["cross_validation"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        findings = I.find_all(
            data.texts, data.labels, data.classes, probs, features, data.test_texts, test_features
        )
        seconds["issues"] = time.perf_counter() - t2
        target = folder.claim()
        _write_outputs(target, data, findings, opts, seconds)
        if opts.write_clean:
            write_clean(data, clean_changes(data, findings, opts.relabel), Path(opts.write_clean))
    except BaseException:
        folder.abort()
        raise
    folder.commit()
    return AuditResult(data, findings, seconds, Path(out))


def _features(data: AuditData, cfg: Any, run: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Features of the audited rows and of the test texts, in one pass."""
    from intentlab.audit.features import encoder_features, run_features

    texts = data.texts + data.test_texts
    every = run_features(texts, run) if run else encoder_features(texts, cfg)
    n = len(data.texts)
    return every[:n], (every[n:] if data.test_texts else None)


def clean_changes(data: AuditData, findings: I.Findings, relabel: bool) -> dict[tuple[str, int], str | None]:
    """What the cleaned copy changes: each label issue's row dropped, or given its suggested label with
    `relabel`; a conflicting duplicate is dropped either way (no label is right for both copies)."""
    changes: dict[tuple[str, int], str | None] = {}
    for issue in findings.of_kind("label"):
        changes[(data.files[issue.index], data.rows[issue.index])] = issue.suggested if relabel else None
    for issue in findings.of_kind("conflicting_duplicate"):
        changes.setdefault((data.files[issue.index], data.rows[issue.index]), None)
    return changes


def issues_csv(data: AuditData, findings: I.Findings) -> str:
    """Every flagged row, most certain first within each kind."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for kind in I.KINDS:
        for issue in findings.of_kind(kind):
            i = issue.index
            writer.writerow(
                [
                    data.files[i],
                    data.rows[i],
                    data.texts[i],
                    data.labels[i],
                    issue.suggested or "",
                    kind,
                    f"{issue.score:.4f}",
                    issue.detail,
                ]
            )
    return buffer.getvalue()


def summary(
    data: AuditData, findings: I.Findings, opts: AuditOptions, seconds: dict[str, float]
) -> dict[str, Any]:
    return {
        "data": data.name,
        "files": {k: str(v) for k, v in data.sources.items()},
        "rows": len(data.texts),
        "classes": len(data.classes),
        "test_rows": len(data.test_texts),
        "method": opts.method,
        "run": opts.run,
        "folds": opts.folds,
        "seed": opts.seed,
        "out_of_fold_accuracy": findings.accuracy,
        "counts": findings.counts,
        "flagged_rows": len({i.index for i in findings.issues}),
        "imbalance": findings.imbalance,
        "confusable": findings.confusable,
        "seconds": seconds,
    }


def _write_outputs(
    out: Path, data: AuditData, findings: I.Findings, opts: AuditOptions, seconds: dict[str, float]
) -> None:
    from intentlab.audit.report import write_report

    write_text_atomic(out / "issues.csv", issues_csv(data, findings))
    write_report(out, data, findings, opts)
    write_text_atomic(out / AUDIT_MARKER, json.dumps(summary(data, findings, opts, seconds), indent=2) + "\n")
