"""The report's out-of-scope section: per method and scorer, the separation of in-scope texts from
each out-of-scope group, what the validation-picked threshold catches and costs, calibration, and
paired tests on the out-of-scope decisions. Reads `result.json`'s `ood` section and
`ood/test_decisions.json` only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from intentlab import methods as M
from intentlab.reporting import ood_charts
from intentlab.reporting.document import Doc
from intentlab.reporting.load import RunRecord
from intentlab.reporting.stats import compare_predictions
from intentlab.reporting.summary import fmt, mean_std
from intentlab.runs.files import OOD, OOD_DECISIONS


def decisions(run: RunRecord, scorer: str) -> tuple[list[int], list[int]] | None:
    """(true ids with -1 for out-of-scope, decided ids with -1 for rejected) on the test split."""
    path = run.path / OOD / OOD_DECISIONS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        y, d = data["y_true"], data["decisions"][scorer]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = (
        isinstance(y, list)
        and isinstance(d, list)
        and len(y) == len(d)
        and all(type(v) is int for v in y + d)
    )
    return (y, d) if ok else None


def _best_scorer(runs: list[RunRecord]) -> str:
    """The scorer the method's runs chose most often (ties: the first seed's)."""
    chosen = [r.result.ood.chosen for r in runs if r.result.ood]
    return max(chosen, key=lambda s: (chosen.count(s), s == chosen[0]))


def summarize(groups: dict[str, list[RunRecord]]) -> list[dict[str, Any]]:
    """One row per (method, scorer): mean and std over seeds of every out-of-scope number."""
    rows = []
    for name, runs in groups.items():
        with_ood = [r for r in runs if r.result.ood]
        if not with_ood:
            continue
        chosen = _best_scorer(with_ood)
        summaries = [r.result.ood for r in with_ood if r.result.ood]
        for scorer in summaries[0].scorers:
            per = [s.scorers[scorer] for s in summaries if scorer in s.scorers]
            row: dict[str, Any] = {
                "name": name,
                "method": with_ood[0].method,
                "scorer": scorer,
                "n": len(per),
                "chosen": scorer == chosen,
            }
            for key in (
                "inscope_accuracy_closed",
                "inscope_accuracy_with_rejection",
                "auroc",
                "oos_recall",
                "oos_precision",
                "fpr_at_95_recall",
                "macro_f1_with_oos",
            ):
                row[key] = mean_std([p.get(key) for p in per])
            for g in sorted({g for p in per for g in p.get("groups", {})}):
                for key in ("auroc", "recall", "fpr_at_95_recall"):
                    row[f"{g}:{key}"] = mean_std([p.get("groups", {}).get(g, {}).get(key) for p in per])
            rows.append(row)
    return rows


def analyse(groups: dict[str, list[RunRecord]]) -> dict[str, Any]:
    """The section's numbers: per (method, scorer) rows and paired tests on the decisions ({} without
    any fitted scorer)."""
    rows = summarize(groups)
    return {"rows": rows, "tests": paired_tests(groups)} if rows else {}


def section(doc: Doc, groups: dict[str, list[RunRecord]], analysis: dict[str, Any], figs: Path) -> None:
    """Add the out-of-scope section (if any run has fitted scorers)."""
    if not analysis:
        return
    rows = analysis["rows"]
    doc.h("Out-of-scope detection")
    ood = next(r.result.ood for g in groups.values() for r in g if r.result.ood)
    names = sorted({k.split(":")[0] for r in rows for k in r if ":" in k})
    doc.p(
        f"Scorers are fitted on the training split, thresholds on validation ({ood.rule}); every number "
        f"is on the test split ({ood.oos_rows.get('test', 0)} out-of-scope texts"
        + (f", grouped by {', '.join(names)}" if names else "")
        + "). AUROC and FPR at 95% in-scope recall do not depend on the threshold; recall and in-scope accuracy "
        "with rejection are at the validation-picked threshold. **Bold**: the scorer each method uses."
    )
    doc.table(*_table(rows, names))
    _charts(doc, groups, figs)
    tests = analysis["tests"]
    if tests:
        doc.p(
            "Paired tests on the out-of-scope decisions: a test text is handled right when an in-scope text gets "
            "its intent and is kept, and an out-of-scope text is rejected."
        )
        doc.table(
            [
                "pair",
                "difference in texts handled right (points)",
                "95% bootstrap CI",
                "McNemar p",
                "across-seeds Welch p",
                "verdict",
            ],
            [
                [
                    f"{a} vs {b}",
                    f"{t.diff * 100:+.2f}",
                    f"[{t.low * 100:+.2f}, {t.high * 100:+.2f}]",
                    f"{t.p_mcnemar:.3g}",
                    "–" if t.p_seeds is None else f"{t.p_seeds:.3g}",
                    "**real**" if t.significant else "within noise",
                ]
                for (a, b), t in tests.items()
            ],
        )


def _table(rows: list[dict[str, Any]], groups: list[str]) -> tuple[list[str], list[list[str]]]:
    header = [
        "method",
        "scorer",
        "seeds",
        "in-scope acc (closed, %)",
        "in-scope acc with rejection (%)",
        "OOS recall (%)",
    ]
    header += (
        [f"AUROC vs {g}" for g in groups]
        + [f"FPR@95 vs {g}" for g in groups]
        + [f"recall {g} (%)" for g in groups]
    )
    if not groups:
        header += ["AUROC", "FPR@95"]
    out = []
    for r in rows:
        n, b = r["n"], "**" if r["chosen"] else ""
        cells = [
            f"{b}{r['name']}{b}",
            f"{b}{r['scorer']}{b}",
            str(n),
            fmt(r["inscope_accuracy_closed"], 100, n=n),
            fmt(r["inscope_accuracy_with_rejection"], 100, n=n),
            fmt(r["oos_recall"], 100, n=n),
        ]
        cells += [fmt(r.get(f"{g}:auroc", (float("nan"), 0)), digits=3, n=n) for g in groups]
        cells += [fmt(r.get(f"{g}:fpr_at_95_recall", (float("nan"), 0)), digits=3, n=n) for g in groups]
        cells += [fmt(r.get(f"{g}:recall", (float("nan"), 0)), 100, n=n) for g in groups]
        if not groups:
            cells += [fmt(r["auroc"], digits=3, n=n), fmt(r["fpr_at_95_recall"], digits=3, n=n)]
        out.append(cells)
    return header, out


def _charts(doc: Doc, groups: dict[str, list[RunRecord]], figs: Path) -> None:
    curves, trade, cal = {}, {}, {}
    for name, runs in groups.items():
        ood = next((r.result.ood for r in runs if r.result.ood), None)
        if ood is None:
            continue
        chosen = ood.scorers[_best_scorer(runs)]
        if "groups" in chosen:
            curves[name] = {g: v["roc"] for g, v in chosen["groups"].items()}
        elif "roc" in chosen:
            curves[name] = {"out-of-scope": chosen["roc"]}
        if "tradeoff" in chosen:
            trade[name] = chosen["tradeoff"]
        if ood.probabilistic:
            cal[name] = ood.calibration
    if curves:
        doc.img(ood_charts.roc_by_group(curves, figs / "ood_roc.png"), "ROC curves by out-of-scope group")
    if trade:
        doc.img(
            ood_charts.tradeoff(trade, figs / "ood_tradeoff.png"),
            "in-scope accuracy against out-of-scope recall",
        )
    if cal:
        doc.p(
            "Calibration: a temperature fitted on validation rescales the logits; the expected calibration error "
            "(ECE, 15 bins, test in-scope texts) before and after is in each legend. predict and serve return the "
            "calibrated probabilities."
        )
        doc.img(ood_charts.reliability(cal, figs / "reliability.png"), "reliability diagram")


def paired_tests(groups: dict[str, list[RunRecord]]) -> dict[tuple[str, str], Any]:
    """The method table's pairs, compared on the out-of-scope decisions of each one's scorer."""
    by_method = {g[0].method: n for n, g in groups.items() if any(r.result.ood for r in g)}
    tests = {}
    for a, b in [(by_method[x], by_method[y]) for x, y in M.pairs(by_method)]:
        per = []
        for name in (a, b):
            runs = [r for r in groups[name] if r.result.ood]
            per.append([decisions(r, _best_scorer(runs)) for r in runs])
        da, db = per
        if not (da and db and all(da) and all(db)) or da[0][0] != db[0][0]:  # type: ignore[index]
            continue
        y = np.asarray(da[0][0])  # type: ignore[index]
        # "prediction" 0 = handled right, 1 = wrong, against an all-zero truth: the paired tests then
        # compare the share of texts each method handles right
        right_a = [np.where(np.asarray(d[1]) == y, 0, 1).tolist() for d in da]  # type: ignore[index]
        right_b = [np.where(np.asarray(d[1]) == y, 0, 1).tolist() for d in db]  # type: ignore[index]
        tests[(a, b)] = compare_predictions([0] * len(y), right_a, right_b)
    return tests
