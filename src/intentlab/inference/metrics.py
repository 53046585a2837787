"""Classification metrics from logits: loss, accuracy, macro/weighted F1 and per-class scores; and the
out-of-scope metrics of a scorer (separation, decisions at a threshold, per group).

Pure numpy/scipy/scikit-learn (no torch), so reports can recompute numbers from saved predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from intentlab.inference import ood as O


def metrics(y_true: Sequence[int], logits: np.ndarray, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """loss (mean cross-entropy), accuracy, macro and weighted F1, n; per-class scores when labels given.

    Closed-set numbers: rows whose class id is -1 (out-of-scope) are left out here and scored by the
    out-of-scope metrics instead."""
    y = np.asarray(y_true, dtype=np.int64)
    keep = y >= 0
    y, logits = y[keep], np.asarray(logits)[keep]
    pred = logits.argmax(axis=1)
    out: dict[str, Any] = {
        "loss": float(-log_softmax(logits.astype(np.float64), axis=1)[np.arange(len(y)), y].mean()),
        "accuracy": float(accuracy_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y, pred, average="weighted", zero_division=0)),
        "n": len(y),
    }
    if labels is not None:
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(len(labels)), zero_division=0)
        out["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        }
    return out


ROC_POINTS = 60


def _curve(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """At most ROC_POINTS points of a curve, for charts."""
    idx = np.unique(np.linspace(0, len(x) - 1, min(len(x), ROC_POINTS)).astype(int))
    return [[round(float(x[i]), 5), round(float(y[i]), 5)] for i in idx]


def separation(inscope_scores: np.ndarray, oos_scores: np.ndarray) -> dict[str, Any]:
    """AUROC and AUPR (out-of-scope as the positive class), FPR at 95% in-scope recall, ROC points."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    truth = np.r_[np.zeros(len(inscope_scores)), np.ones(len(oos_scores))]
    s = -np.r_[inscope_scores, oos_scores]  # higher = more out of scope
    fpr, tpr, _ = roc_curve(truth, s)
    keep95 = np.quantile(inscope_scores, 0.05)  # the cut that keeps 95% of in-scope texts
    return {
        "auroc": float(roc_auc_score(truth, s)),
        "aupr": float(average_precision_score(truth, s)),
        "fpr_at_95_recall": float(np.mean(oos_scores >= keep95)),
        "roc": _curve(fpr, tpr),
    }


def scorer_metrics(
    y: np.ndarray, pred: np.ndarray, scores: np.ndarray, threshold: float, groups: list[str] | None
) -> dict[str, Any]:
    """Every out-of-scope number of one scorer on one split (y == -1: out-of-scope rows)."""
    from sklearn.metrics import precision_recall_fscore_support

    inscope = y >= 0
    d = O.decisions(pred, scores, threshold)
    out: dict[str, Any] = {
        "threshold": threshold,
        "inscope_accuracy_closed": float(np.mean(pred[inscope] == y[inscope])),
        "inscope_accuracy_with_rejection": float(np.mean(d[inscope] == y[inscope])),
        "inscope_kept": float(np.mean(d[inscope] >= 0)),
        "macro_f1_with_oos": O.macro_f1_with_oos(y, d),
    }
    if not (~inscope).any():
        return out
    p, r, f, _ = precision_recall_fscore_support(~inscope, d < 0, average="binary", zero_division=0)
    out.update(oos_precision=float(p), oos_recall=float(r), oos_f1=float(f))
    out.update(separation(scores[inscope], scores[~inscope]))
    tradeoff = [
        (
            float(np.mean(O.decisions(pred, scores, c)[inscope] == y[inscope])),
            float(np.mean(scores[~inscope] < c)),
        )
        for c in np.quantile(scores, np.linspace(0, 1, 41))
    ]
    out["tradeoff"] = [[round(a, 5), round(b, 5)] for a, b in tradeoff]  # (in-scope accuracy, OOS recall)
    if groups is not None:
        g = np.asarray(groups)
        out["groups"] = {
            name: {
                **{k: v for k, v in separation(scores[inscope], scores[(g == name) & ~inscope]).items()},
                "recall": float(np.mean(scores[(g == name) & ~inscope] < threshold)),
                "n": int(((g == name) & ~inscope).sum()),
            }
            for name in sorted(set(g[~inscope]))
        }
    return out
