"""`intentlab ood RUN`: fit (or refit) a trained run's out-of-scope scorers, thresholds and calibration.

    intentlab ood runs/lora                     # train does this itself when validation holds OOS rows

Scorers are fitted on the training split's in-scope rows, thresholds and the temperature on
validation, and everything is measured on test, per scorer and per group (`--group-column`):
closed-set in-scope accuracy, in-scope accuracy with rejection, out-of-scope precision, recall and
F1 at the threshold, AUROC, AUPR and the false-positive rate at 95% in-scope recall. The state goes to
`RUN/ood/`, the numbers to `result.json`'s `ood` section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.inference import calibration
from intentlab.inference import ood as O

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


def wants_ood(cfg: Any, ds: Any) -> bool:
    """Fit scorers after training when validation or test has out-of-scope rows, or when asked."""
    return bool(cfg.ood or ds.has_oos(ds.validation) or ds.has_oos(ds.test))


def fit_run_ood(
    run: str | Path,
    data_dir: str | None = None,
    k: int | None = None,
    target_recall: float | None = None,
    locked: bool = False,
) -> dict[str, Any]:
    """Fit and measure a run's scorers; writes RUN/ood/ and result.json's `ood`; returns the summary."""
    from contextlib import nullcontext

    from intentlab.folders import FolderLock

    run = Path(run).absolute()
    with nullcontext() if locked else FolderLock(run).acquire(str(run)):
        return _fit(run, data_dir, k, target_recall)


def _fit(run: Path, data_dir: str | None, k: int | None, target_recall: float | None) -> dict[str, Any]:
    from intentlab.folders import write_json_atomic
    from intentlab.inference.evaluate import run_dataset
    from intentlab.inference.predictor import Predictor
    from intentlab.runs import RESULT, load_result

    ds, cfg = run_dataset(run, data_dir)
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
    predictor = Predictor.from_run(run, ood=False)
    has_features = predictor.probabilistic
    out = {s: predictor.outputs(ds.split(s).texts, features=has_features) for s in y}
    temperature = calibration.fit_temperature(out["validation"].logits, y["validation"])
    state = O.fit(out["train"].features, y["train"], len(ds.labels), k, temperature)
    state = O.choose(
        state, y["validation"], out["validation"].logits, out["validation"].features, target_recall
    )
    test_pred = out["test"].logits.argmax(axis=1)
    per_scorer = {
        name: scorer_metrics(
            y["test"],
            test_pred,
            state.score(name, out["test"].logits, out["test"].features),
            state.thresholds[name],
            ds.test.groups,
        )
        for name in state.scorers
    }
    from scipy.special import softmax

    summary = {
        "scorers": per_scorer,
        "chosen": state.chosen,
        "rule": state.rule,
        "k": k,
        "target_recall": target_recall,
        "temperature": temperature,
        "calibration": {
            "before": calibration.reliability(
                softmax(out["test"].logits.astype(np.float64), axis=1), y["test"]
            ),
            "after": calibration.reliability(softmax(out["test"].logits / temperature, axis=1), y["test"]),
        },
        "oos_rows": {s: int((y[s] < 0).sum()) for s in ("validation", "test")},
        "probabilistic": predictor.probabilistic,
    }
    O.save(state, run, {"chosen": state.chosen, "rule": state.rule})
    write_json_atomic(
        run / O.FOLDER / "test_decisions.json",
        {
            "y_true": y["test"].tolist(),
            "groups": ds.test.groups,
            "decisions": {
                name: O.decisions(
                    test_pred,
                    state.score(name, out["test"].logits, out["test"].features),
                    state.thresholds[name],
                ).tolist()
                for name in state.scorers
            },
        },
    )
    result = load_result(run)
    result.ood = summary
    write_json_atomic(run / RESULT, result.to_dict())
    from intentlab.deploy.card import write_run_cards

    write_run_cards(run)  # the card states the threshold
    from intentlab.folders import share_modes

    share_modes(run / O.FOLDER)
    return summary
