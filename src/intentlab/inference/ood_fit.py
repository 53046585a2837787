"""Fitting a trained run's out-of-scope scorers, thresholds and calibration: computed here, written by
the run writer (`training/writer.py`), which `train` and `intentlab ood` both end in.

Scorers are fitted on the training split's in-scope rows, thresholds and the temperature on
validation, and everything is measured on test, per scorer and per group (`--group-column`):
closed-set in-scope accuracy, in-scope accuracy with rejection, out-of-scope precision, recall and
F1 at the threshold, AUROC, AUPR and the false-positive rate at 95% in-scope recall.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.inference import calibration
from intentlab.inference import ood as O
from intentlab.inference.metrics import scorer_metrics
from intentlab.runs.record import OodSummary


@dataclass
class OodFit:
    """What a fit produces: the scorers' state (RUN/ood/), the record's summary and the test decisions."""

    state: O.OodState
    summary: OodSummary
    decisions: dict[str, Any]


def wants_ood(cfg: Any, ds: Any) -> bool:
    """Fit scorers after training when validation or test has out-of-scope rows, or when asked."""
    return bool(cfg.ood or ds.has_oos(ds.validation) or ds.has_oos(ds.test))


def fit_ood(run: Path, ds: Any, cfg: Any, k: int | None = None, target_recall: float | None = None) -> OodFit:
    """Fit and measure the scorers of the trained run in `run` on its data `ds` (nothing is written)."""
    from scipy.special import softmax

    from intentlab.inference.opener import open_run

    k = cfg.ood_k if k is None else k
    target_recall = cfg.ood_target_recall if target_recall is None else target_recall
    if k < 1 or not 0.5 <= target_recall < 1:
        raise UserError(
            f"--k must be at least 1 and --target-recall in [0.5, 1); got {k} and {target_recall}."
        )
    y = {s: np.asarray(ds.ids(ds.split(s))) for s in ("train", "validation", "test")}
    if not (y["validation"] >= 0).any():
        raise UserError(
            f"the validation split of {run} has no in-scope rows, so no threshold can be picked. "
            "Give a validation file with in-scope texts."
        )
    predictor = open_run(run, ood=False)
    out = {s: predictor.outputs(ds.split(s).texts, predictor.probabilistic, progress=f"ood: {s}") for s in y}
    temperature = calibration.fit_temperature(out["validation"].logits, y["validation"])
    state = O.fit(out["train"].features, y["train"], len(ds.labels), k, temperature)
    state = O.choose(
        state, y["validation"], out["validation"].logits, out["validation"].features, target_recall
    )
    test_pred = out["test"].logits.argmax(axis=1)
    scores = {name: state.score(name, out["test"].logits, out["test"].features) for name in state.scorers}
    summary = OodSummary(
        scorers={
            name: scorer_metrics(y["test"], test_pred, scores[name], state.thresholds[name], ds.test.groups)
            for name in state.scorers
        },
        chosen=state.chosen,
        rule=state.rule,
        k=k,
        target_recall=target_recall,
        temperature=temperature,
        calibration={
            "before": calibration.reliability(
                softmax(out["test"].logits.astype(np.float64), axis=1), y["test"]
            ),
            "after": calibration.reliability(softmax(out["test"].logits / temperature, axis=1), y["test"]),
        },
        oos_rows={s: int((y[s] < 0).sum()) for s in ("validation", "test")},
        probabilistic=predictor.probabilistic,
    )
    decisions = {
        "y_true": y["test"].tolist(),
        "groups": ds.test.groups,
        "decisions": {
            name: O.decisions(test_pred, scores[name], state.thresholds[name]).tolist()
            for name in state.scorers
        },
    }
    return OodFit(state, summary, decisions)
