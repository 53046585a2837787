"""Classification metrics from logits: loss, accuracy, macro/weighted F1 and per-class scores.

Pure numpy/scipy/scikit-learn (no torch), so reports can recompute numbers from saved predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support


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
