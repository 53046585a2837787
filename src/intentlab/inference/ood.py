"""Out-of-scope detection: scorers fitted on a trained run, thresholds picked on validation.

Every scorer maps a text's logits (and pooled features) to an *in-scope score*: higher means more
like the training intents. A text is out of scope when its score is below the scorer's threshold.

    msp          maximum softmax probability (of the calibrated logits)
    energy       logsumexp of the logits
    mahalanobis  minus the smallest Mahalanobis distance to a class mean (shared covariance, Ledoit-Wolf)
    knn          cosine similarity to the k-th nearest training text

Mahalanobis and k-NN need pooled features; a run without them (the TF-IDF baseline) gets msp and
energy only. The fitted state is data, never a pickle: `RUN/ood/ood.json` (scorer names, thresholds,
the rule that picked them, temperature, k) and `RUN/ood/state.safetensors` (class means, precision
matrix, normalised training features).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.runs.files import OOD
from intentlab.runs.safe_files import check_safetensors, read_json

SCORERS = ("msp", "energy", "mahalanobis", "knn")
FEATURE_SCORERS = ("mahalanobis", "knn")
# validation out-of-scope rows below which the scorer is chosen by AUROC, not by macro-F1 at a cut
# (`choose`); BANKING77-OOS's validation holds 728
FEW_OOS = 300
DEFAULT_SCORER = "mahalanobis"  # best AUROC in DESIGN.md's measurements; used when validation has no OOS rows
FORMAT = "intentlab.ood/1"


@dataclass
class OodState:
    """What a run needs to say "none of these": the fitted scorers and their thresholds."""

    scorers: list[str]
    thresholds: dict[str, float]
    chosen: str  # the scorer predict and serve use
    rule: str  # how the thresholds were picked (recorded for the report)
    temperature: float = 1.0
    k: int = 10
    class_means: np.ndarray | None = field(default=None, repr=False)
    precision: np.ndarray | None = field(default=None, repr=False)
    train_features: np.ndarray | None = field(default=None, repr=False)  # L2-normalised

    def score(self, name: str, logits: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        return score(name, logits, features, self)

    def decide(self, logits: np.ndarray, features: np.ndarray | None, threshold: float | None = None):
        """(in-scope scores, out-of-scope flags) of the chosen scorer, at `threshold` or its own."""
        s = self.score(self.chosen, logits, features)
        return s, s < (self.thresholds[self.chosen] if threshold is None else threshold)


# ----------------------------------------------------------------------------- scorers
def score(name: str, logits: np.ndarray, features: np.ndarray | None, state: OodState) -> np.ndarray:
    """In-scope scores (higher: more in-scope) of one scorer."""
    from scipy.special import logsumexp, softmax

    z = np.asarray(logits, dtype=np.float64)
    if name == "msp":
        return softmax(z / state.temperature, axis=1).max(axis=1)
    if name == "energy":
        return logsumexp(z, axis=1)
    if features is None:
        raise ValueError(f"scorer {name} needs pooled features")
    x = np.asarray(features, dtype=np.float64)
    if name == "mahalanobis":
        assert state.class_means is not None and state.precision is not None
        mu, prec = state.class_means, state.precision
        xp = x @ prec  # (x - mu) P (x - mu) = xPx - 2 xP mu + mu P mu, without an (n, classes, d) array
        dist = (xp * x).sum(1)[:, None] - 2 * xp @ mu.T + ((mu @ prec) * mu).sum(1)[None, :]
        return -dist.min(axis=1)
    if name == "knn":
        assert state.train_features is not None
        x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        train = state.train_features.astype(np.float32)
        k = min(state.k, len(train))
        out = np.empty(len(x))
        for i in range(0, len(x), 1024):  # bounded memory: 1024 x train similarities at a time
            sims = x[i : i + 1024] @ train.T
            out[i : i + 1024] = np.partition(sims, -k, axis=1)[:, -k]
        return out
    raise ValueError(f"unknown scorer {name}")


def fit(
    train_features: np.ndarray | None, train_y: np.ndarray, n_classes: int, k: int, temperature: float
) -> OodState:
    """Fit the feature scorers on the training split (in-scope rows only)."""
    from sklearn.covariance import LedoitWolf

    state = OodState(
        scorers=["msp", "energy"], thresholds={}, chosen="msp", rule="", temperature=temperature, k=k
    )
    if train_features is None:
        return state
    x = np.asarray(train_features, dtype=np.float64)
    y = np.asarray(train_y)
    means = np.stack(
        [x[y == c].mean(axis=0) if (y == c).any() else np.zeros(x.shape[1]) for c in range(n_classes)]
    )
    state.class_means = means
    state.precision = (
        LedoitWolf().fit(x - means[y]).precision_
    )  # shared covariance of the class-centred features
    state.train_features = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    state.scorers += list(FEATURE_SCORERS)
    state.chosen = DEFAULT_SCORER
    return state


# ----------------------------------------------------------------------------- thresholds
def decisions(pred: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted class ids, with -1 (out of scope) where the score is below the threshold."""
    return np.where(scores < threshold, -1, pred)


def macro_f1_with_oos(y: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over the in-scope intents plus "out of scope" (-1) as one more class."""
    from sklearn.metrics import f1_score

    return float(
        f1_score(y, pred, labels=np.unique(np.concatenate([y, [-1]])), average="macro", zero_division=0)
    )


def pick_threshold(
    y: np.ndarray, pred: np.ndarray, scores: np.ndarray, target_recall: float
) -> tuple[float, str]:
    """The threshold for one scorer on validation, and the rule used.

    With out-of-scope rows (y == -1): the cut that maximises macro-F1 over the intents plus "out of
    scope". Without: the cut that keeps `target_recall` of the in-scope rows."""
    inscope = y >= 0
    if (~inscope).any():
        cuts = np.unique(np.quantile(scores, np.linspace(0, 1, 401)))
        f1 = [macro_f1_with_oos(y, decisions(pred, scores, c)) for c in cuts]
        best = int(np.argmax(f1))  # first best: the lowest cut, i.e. the fewest rejections
        return float(cuts[best]), "best macro-F1 over the intents plus out-of-scope on validation"
    return float(np.quantile(scores[inscope], 1 - target_recall)), (
        f"keep {100 * target_recall:.0f}% of in-scope validation texts (validation has no out-of-scope rows)"
    )


def choose(
    state: OodState, y: np.ndarray, logits: np.ndarray, features: np.ndarray | None, target_recall: float
) -> OodState:
    """Set every scorer's threshold on validation and pick the scorer predict and serve use.

    - Enough out-of-scope rows (FEW_OOS or more): each scorer's threshold is its best validation
      macro-F1 over the intents plus out of scope, and the scorer with the best such F1 is chosen.
    - A few (1 to FEW_OOS - 1): a macro-F1 at one cut rests on those few rows and picks by chance. The
      scorer is chosen by validation AUROC instead (every in-scope/out-of-scope pair counts), and the
      thresholds keep `target_recall` of the in-scope validation texts (no out-of-scope row needed).
    - None: the thresholds keep `target_recall` of in-scope texts; the default scorer is chosen.
    """
    y = np.asarray(y)
    pred = np.asarray(logits).argmax(axis=1)
    n_oos = int((y < 0).sum())
    scores = {name: state.score(name, logits, features) for name in state.scorers}
    if 0 < n_oos < FEW_OOS:
        from sklearn.metrics import roc_auc_score

        auroc = {name: float(roc_auc_score(y < 0, -s)) for name, s in scores.items()}
        for name, s in scores.items():
            state.thresholds[name], _ = pick_threshold(y[y >= 0], pred[y >= 0], s[y >= 0], target_recall)
        state.chosen = max(state.scorers, key=lambda n: (auroc[n], n == DEFAULT_SCORER))
        state.rule = (
            f"only {n_oos} out-of-scope validation rows (fewer than {FEW_OOS}): the scorer with the best "
            f"validation AUROC, {state.chosen} ({auroc[state.chosen]:.3f}); thresholds keep "
            f"{100 * target_recall:.0f}% of in-scope validation texts"
        )
        return state
    f1 = {}
    for name, s in scores.items():
        state.thresholds[name], state.rule = pick_threshold(y, pred, s, target_recall)
        f1[name] = macro_f1_with_oos(y, decisions(pred, s, state.thresholds[name]))
    if n_oos:
        state.chosen = max(state.scorers, key=lambda n: (f1[n], n == DEFAULT_SCORER))
        state.rule += f"; scorer with the best validation macro-F1: {state.chosen}"
    else:
        state.chosen = DEFAULT_SCORER if DEFAULT_SCORER in state.scorers else "msp"
        state.rule += f"; default scorer {state.chosen} (no out-of-scope rows to compare scorers on)"
    return state


# ----------------------------------------------------------------------------- storage
STATE_FILES = ("ood.json", "state.safetensors")


def save(state: OodState, folder: Path, summary: dict[str, Any]) -> None:
    """Write ood.json and state.safetensors into `folder` (the run writer's temporary `ood/`)."""
    from safetensors.numpy import save_file

    from intentlab.folders import write_json_atomic

    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        k: np.ascontiguousarray(v, dtype=np.float32)
        for k, v in (
            ("class_means", state.class_means),
            ("precision", state.precision),
            ("train_features", state.train_features),
        )
        if v is not None
    }
    save_file(arrays or {"empty": np.zeros(1, dtype=np.float32)}, str(folder / "state.safetensors"))
    meta = {k: v for k, v in asdict(state).items() if k not in ("class_means", "precision", "train_features")}
    write_json_atomic(folder / "ood.json", {"format": FORMAT, **meta, "summary": summary})


def checksum(folder: Path) -> str:
    """SHA-256 over ood.json and state.safetensors: what the run record stores to tie the two together."""
    import hashlib

    from intentlab.runs.safe_files import sha256_regular

    return hashlib.sha256("".join(sha256_regular(folder / f) for f in STATE_FILES).encode()).hexdigest()


def load(run: Path, num_labels: int, expected_sha256: str | None = None) -> OodState | None:
    """The fitted state of a run (None when it has none), checked before use; with `expected_sha256`
    (the record's), a state that is not the one the record measured is refused."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = run / OOD
    if not os.path.lexists(folder / "ood.json"):
        if expected_sha256 is not None:  # the record measured a state that is gone
            raise UserError(
                f"{folder} is missing though {run}/result.json measured one. Refit it: intentlab ood {run}."
            )
        return None
    bad = UserError(f"{folder} is corrupt. Refit it: intentlab ood {run}.")
    if expected_sha256 is not None and checksum(folder) != expected_sha256:
        raise UserError(
            f"{folder} is not the state {run}/result.json measured (an interrupted `intentlab ood`?). "
            f"Refit it: intentlab ood {run}."
        )
    try:
        meta = read_json(folder / "ood.json")
        check_safetensors(folder / "state.safetensors")
        arrays = load_file(str(folder / "state.safetensors"))
    except (OSError, SafetensorError, UserError):
        raise bad from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad
    scorers, thresholds = meta.get("scorers"), meta.get("thresholds")
    ok = (
        isinstance(scorers, list)
        and set(scorers) <= set(SCORERS)
        and isinstance(thresholds, dict)
        and set(thresholds) == set(scorers)
        and all(type(v) in (int, float) and np.isfinite(v) for v in thresholds.values())
        and meta.get("chosen") in scorers
        and type(meta.get("temperature")) in (int, float)
        and meta["temperature"] > 0
        and type(meta.get("k")) is int
        and meta["k"] >= 1
    )
    if not ok:
        raise bad
    state = OodState(
        scorers, thresholds, meta["chosen"], str(meta.get("rule", "")), float(meta["temperature"]), meta["k"]
    )
    if set(FEATURE_SCORERS) & set(scorers):
        means, prec, feats = (arrays.get(k) for k in ("class_means", "precision", "train_features"))
        if means is None or prec is None or feats is None or means.shape[0] != num_labels:
            raise bad
        d = means.shape[1]
        if prec.shape != (d, d) or feats.ndim != 2 or feats.shape[1] != d:
            raise bad
        state.class_means, state.precision, state.train_features = (
            a.astype(np.float64) for a in (means, prec, feats)
        )
    return state
