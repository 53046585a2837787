"""The issues an audit finds, from out-of-fold probabilities and sentence features.

With cleanlab's `Datalab` (not hand-written): label issues with a suggested label, outliers and
near-duplicates, each with its score. Beside it, what Datalab does not report for intent data:
exact and near duplicates whose labels conflict, texts shared between the training data and test
(exact and near), the intent pairs the out-of-fold predictions mix up most, and class imbalance.

Memory: the features (rows x width float32), the probabilities (rows x classes float64) and a
nearest-neighbour graph (rows x 10); for 100,000 texts on MiniLM (384 wide) and 77 intents about
0.15 + 0.06 + 0.02 GB, plus what cleanlab keeps of them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intentlab.data.text import normalised
from intentlab.errors import UserError

# two texts at least this similar (cosine of unit-length features) are near-duplicates: on Banking77 with
# MiniLM, pairs at 0.98 and above are the same sentence reworded ("How do I add a card on to the app?" /
# "How do I add a card to the app?"); at 0.95 they are already paraphrases (1,486 train rows near a test text)
NEAR_COSINE = 0.98
KINDS = ("label", "conflicting_duplicate", "near_duplicate", "outlier", "test_leak")


@dataclass
class Issue:
    """One flagged row: its index in the audit's rows, the kind, a score (higher: more certain it is a
    problem) and, for label issues, the suggested label."""

    index: int
    kind: str
    score: float
    suggested: str | None = None
    detail: str = ""


@dataclass
class Findings:
    issues: list[Issue]
    confusable: list[dict[str, Any]]
    leaks: list[dict[str, Any]]
    counts: dict[str, int]
    imbalance: dict[str, Any]
    accuracy: float  # out-of-fold accuracy against the given labels
    extra: dict[str, Any] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Issue]:
        return sorted((i for i in self.issues if i.kind == kind), key=lambda i: -i.score)


def import_cleanlab() -> Any:
    try:
        import cleanlab  # noqa: F401
        from cleanlab import Datalab
    except ImportError:
        raise UserError("intentlab audit needs cleanlab. Run: pip install 'intentlab[audit]'.") from None
    return Datalab


def cleanlab_issues(
    labels: np.ndarray, probs: np.ndarray, features: np.ndarray, classes: list[str]
) -> list[Issue]:
    """Label issues (with cleanlab's predicted label as the suggestion), outliers and near-duplicates."""
    datalab = import_cleanlab()
    lab = datalab(data={"label": labels.tolist()}, label_name="label", verbosity=0)
    lab.find_issues(
        pred_probs=probs,
        features=features,
        issue_types={
            # a row is a label issue when both of confident learning's pruning rules agree (cleanlab's
            # filter_by="both"): on Banking77 with 10% uniform noise, precision 0.85 against 0.76 for
            # its default, at the same recall of 0.80 (docs/results/banking77-audit)
            "label": {"clean_learning_kwargs": {"find_label_issues_kwargs": {"filter_by": "both"}}},
            "outlier": {},
            "near_duplicate": {},
        },
    )
    out: list[Issue] = []
    label = lab.get_issues("label")
    for i in np.flatnonzero(label["is_label_issue"].to_numpy()):
        suggested = classes[int(label["predicted_label"].iloc[i])]
        out.append(Issue(int(i), "label", 1.0 - float(label["label_score"].iloc[i]), suggested))
    outlier = lab.get_issues("outlier")
    for i in np.flatnonzero(outlier["is_outlier_issue"].to_numpy()):
        out.append(Issue(int(i), "outlier", 1.0 - float(outlier["outlier_score"].iloc[i])))
    near = lab.get_issues("near_duplicate")
    for i in np.flatnonzero(near["is_near_duplicate_issue"].to_numpy()):
        others = ", ".join(str(int(j) + 1) for j in list(near["near_duplicate_sets"].iloc[i])[:5])
        score = 1.0 - float(near["near_duplicate_score"].iloc[i])
        out.append(Issue(int(i), "near_duplicate", score, detail=f"with rows {others}"))
    return out


def conflicting_duplicates(texts: list[str], labels: list[str], features: np.ndarray) -> list[Issue]:
    """Rows whose exact (normalised) text, or a near-identical one, carries another label."""
    from sklearn.neighbors import NearestNeighbors

    by_text: dict[str, set[str]] = defaultdict(set)
    for text, label in zip(texts, labels, strict=True):
        by_text[normalised(text)].add(label)
    out = [
        Issue(
            i,
            "conflicting_duplicate",
            1.0,
            detail="exact: " + ", ".join(sorted(by_text[normalised(t)] - {y})),
        )
        for i, (t, y) in enumerate(zip(texts, labels, strict=True))
        if len(by_text[normalised(t)]) > 1
    ]
    flagged = {i.index for i in out}
    x = _unit(features)
    dist, idx = NearestNeighbors(n_neighbors=min(6, len(x)), metric="cosine").fit(x).kneighbors(x)
    for i in range(len(x)):
        for d, j in zip(dist[i, 1:], idx[i, 1:], strict=True):
            if 1 - d >= NEAR_COSINE and labels[j] != labels[i] and i not in flagged:
                out.append(
                    Issue(i, "conflicting_duplicate", float(1 - d), detail=f"near row {j}: {labels[j]}")
                )
                flagged.add(i)
    return out


def test_leaks(
    texts: list[str], features: np.ndarray, test_texts: list[str], test_features: np.ndarray | None
) -> tuple[list[Issue], list[dict[str, Any]]]:
    """Training rows whose text is also in test: exactly (normalised), or nearly (cosine >= NEAR_COSINE)."""
    from sklearn.neighbors import NearestNeighbors

    if not test_texts:
        return [], []
    in_test = {normalised(t): n for n, t in enumerate(test_texts)}
    issues, leaks = [], []
    for i, text in enumerate(texts):
        n = in_test.get(normalised(text))
        if n is not None:
            issues.append(Issue(i, "test_leak", 1.0, detail=f"exact: test row {n + 1}"))
            leaks.append(
                {"row": i, "test_row": n + 1, "kind": "exact", "cosine": 1.0, "test_text": test_texts[n]}
            )
    if test_features is not None:
        exact = {i.index for i in issues}
        dist, idx = (
            NearestNeighbors(n_neighbors=1, metric="cosine")
            .fit(_unit(test_features))
            .kneighbors(_unit(features))
        )
        for i, (d, n) in enumerate(zip(dist[:, 0], idx[:, 0], strict=True)):
            if i not in exact and 1 - d >= NEAR_COSINE:
                issues.append(Issue(i, "test_leak", float(1 - d), detail=f"near: test row {n + 1}"))
                leaks.append(
                    {
                        "row": i,
                        "test_row": int(n) + 1,
                        "kind": "near",
                        "cosine": float(1 - d),
                        "test_text": test_texts[n],
                    }
                )
    return issues, leaks


def confusable_pairs(
    y: np.ndarray, probs: np.ndarray, classes: list[str], texts: list[str], top: int = 10
) -> list[dict[str, Any]]:
    """The intent pairs the out-of-fold predictions mix up most (both directions over both sizes),
    with up to two mixed-up texts from each side: candidates to merge or relabel."""
    pred = probs.argmax(axis=1)
    mixed: Counter[tuple[int, int]] = Counter()
    for a, b in zip(y.tolist(), pred.tolist(), strict=True):
        if a != b:
            mixed[(min(a, b), max(a, b))] += 1
    sizes = np.bincount(y, minlength=len(classes))
    pairs = []
    for (a, b), n in mixed.most_common():
        examples = {
            side: [texts[i] for i in np.flatnonzero((y == side) & (pred == other))[:2]]
            for side, other in ((a, b), (b, a))
        }
        pairs.append(
            {
                "a": classes[a],
                "b": classes[b],
                "mixed": int(n),
                "rate": n / float(sizes[a] + sizes[b]),
                "examples_a": examples[a],
                "examples_b": examples[b],
            }
        )
    pairs.sort(key=lambda p: -p["rate"])
    return pairs[:top]


def imbalance(labels: list[str]) -> dict[str, Any]:
    counts = Counter(labels)
    smallest, largest = min(counts.values()), max(counts.values())
    return {
        "classes": len(counts),
        "smallest": smallest,
        "largest": largest,
        "ratio": largest / smallest,
        "smallest_classes": sorted(c for c, n in counts.items() if n == smallest)[:5],
    }


def find_all(
    texts: list[str],
    labels: list[str],
    classes: list[str],
    probs: np.ndarray,
    features: np.ndarray,
    test_texts: list[str],
    test_features: np.ndarray | None,
) -> Findings:
    """Every issue of the audited rows. A bar steps through the searches (cleanlab's own steps print
    nothing at verbosity 0, and on 100,000 rows its neighbour graph takes many minutes)."""
    from tqdm.auto import tqdm

    y = np.asarray([classes.index(label) for label in labels])
    bar = tqdm(total=4, desc="issues", unit=" search", leave=False)
    bar.set_postfix_str("cleanlab: label issues, outliers, near-duplicates")
    issues = cleanlab_issues(y, probs, features, classes)
    bar.update()
    bar.set_postfix_str("duplicates with other labels")
    issues += conflicting_duplicates(texts, labels, features)
    bar.update()
    bar.set_postfix_str("texts shared with test")
    leak_issues, leaks = test_leaks(texts, features, test_texts, test_features)
    issues += leak_issues
    bar.update()
    bar.set_postfix_str("confusable intents")
    confusable = confusable_pairs(y, probs, classes, texts)
    bar.update()
    bar.close()
    counts = Counter(i.kind for i in issues)
    return Findings(
        issues=issues,
        confusable=confusable,
        leaks=leaks,
        counts={k: counts.get(k, 0) for k in KINDS},
        imbalance=imbalance(labels),
        accuracy=float(np.mean(probs.argmax(axis=1) == y)),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
