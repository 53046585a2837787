"""Confidence calibration: one temperature for the logits, fitted on validation (Guo et al., 2017),
the expected calibration error before and after, and the reliability curve the report draws."""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 15


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 that minimises the validation negative log-likelihood of softmax(z / T)
    (in-scope rows only)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    keep = np.asarray(y) >= 0
    z, y = np.asarray(logits, dtype=np.float64)[keep], np.asarray(y)[keep]
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Confidence against accuracy in equal-width confidence bins, and the expected calibration error
    (the bins' |accuracy - confidence| weighted by their share of texts); in-scope rows only."""
    keep = np.asarray(y) >= 0
    p, y = np.asarray(probs)[keep], np.asarray(y)[keep]
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    which = np.minimum((conf * bins).astype(int), bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            acc, c = float(correct[sel].mean()), float(conf[sel].mean())
            ece += sel.mean() * abs(acc - c)
            rows.append({"bin": b, "confidence": c, "accuracy": acc, "count": int(sel.sum())})
    return {"ece": float(ece), "bins": rows}
