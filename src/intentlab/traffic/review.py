"""`intentlab review LOG --run RUN --out DIR`: the logged queries most worth labelling.

The logged texts are merged first: exact duplicates (case and punctuation aside) and near-duplicates
(cosine >= 0.98 of the run's features) become one query with a count, since a frequent query the model
is unsure of matters more. Texts the run was trained on are left out. Then a query strategy from
small-text picks `budget` of them:

    margin    least margin between the two likeliest intents (small-text's BreakingTies)
    entropy   highest entropy of the intent probabilities (PredictionEntropy)
    coreset   the greedy k-center coreset of the features, away from the training texts (GreedyCoreset)
    hybrid    (default) the 3 x budget least-margin queries, weighted by how often they came, plus the
              most out-of-scope ones when the run has a scorer; then a coreset among them: uncertain,
              diverse, and new
    random    a seeded random sample (what a study compares against)

Writes review.csv (a `label` column to fill in by hand), labelstudio_tasks.json (the model's guess as
a pre-annotation), labelstudio_config.xml and summary.json.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError

STRATEGIES = ("hybrid", "margin", "entropy", "coreset", "random")
NEAR_COSINE = 0.98
TOP = 3  # guesses per query in the CSV


@dataclass
class Queries:
    """The logged queries, merged: one representative text each, its count and its logged rows."""

    texts: list[str]
    counts: np.ndarray
    members: list[list[int]] = field(default_factory=list)


class _Precomputed:
    """The bit of a small-text classifier its strategies call: probabilities already computed."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, dataset: Any) -> np.ndarray:
        return self.probs[np.asarray(dataset)]


def merge(texts: list[str], features: np.ndarray) -> Queries:
    """Exact (normalised) duplicates, then near-duplicates, merged into queries with counts."""
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import radius_neighbors_graph

    from intentlab.data.text import normalised

    first: dict[str, int] = {}
    group = np.array([first.setdefault(normalised(t), i) for i, t in enumerate(texts)])
    uniq = np.unique(group)
    x = features[uniq] / np.clip(np.linalg.norm(features[uniq], axis=1, keepdims=True), 1e-12, None)
    graph = radius_neighbors_graph(x, radius=1 - NEAR_COSINE, metric="cosine", include_self=False)
    _, cluster = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for u, c in zip(uniq, cluster, strict=True):
        members.setdefault(int(c), []).extend(np.flatnonzero(group == u).tolist())
    out = Queries([], np.zeros(len(members), dtype=np.int64))
    for k, rows in enumerate(members.values()):
        counts: dict[str, int] = {}
        for r in rows:
            counts[texts[r]] = counts.get(texts[r], 0) + 1
        out.texts.append(max(counts, key=counts.__getitem__))  # the most frequent wording
        out.counts[k] = len(rows)
        out.members.append(rows)
    return out


def select(
    strategy: str,
    probs: np.ndarray,
    features: np.ndarray,
    counts: np.ndarray,
    budget: int,
    labelled: np.ndarray | None,
    oos_scores: np.ndarray | None,
    seed: int = 42,
) -> tuple[np.ndarray, list[str]]:
    """Indices of the `budget` queries to label, and why each was picked."""
    from small_text import BreakingTies, GreedyCoreset, PredictionEntropy

    n = len(probs)
    budget = min(budget, n)
    if strategy == "random":
        picks = np.random.default_rng(seed).choice(n, budget, replace=False)
        return picks, ["random"] * budget
    every = np.arange(n)
    none = np.array([], dtype=np.int64)
    clf = _Precomputed(probs)
    if strategy in ("margin", "entropy", "hybrid"):
        scorer = BreakingTies() if strategy != "entropy" else PredictionEntropy()
        confidence = scorer.score(clf, every, every, none, none)  # lower: less sure
        priority = -np.asarray(confidence, dtype=np.float64)
        if strategy == "hybrid":  # a frequent unsure query first
            priority = (1.0 - np.asarray(confidence)) * (1.0 + np.log(counts))
        order = np.argsort(-priority, kind="stable")
        if strategy != "hybrid":
            return order[:budget], [strategy] * budget
        pool = list(order[: 3 * budget])
        reason = dict.fromkeys(pool, "uncertain")
        if oos_scores is not None:  # the most out-of-scope: candidates for a new intent, or for oos
            for i in np.argsort(oos_scores, kind="stable")[: max(1, budget // 4)]:
                reason.setdefault(int(i), "out of scope")
        candidates = np.array(list(reason), dtype=np.int64)
    else:
        candidates = every
        reason = dict.fromkeys(every.tolist(), "diverse")
    if len(candidates) <= budget:
        return candidates, [reason[int(i)] for i in candidates]
    emb = features[candidates]
    labelled = labelled if labelled is not None else np.zeros((0, features.shape[1]), dtype=features.dtype)
    both = np.concatenate([emb, labelled]) if len(labelled) else emb
    unl = np.arange(len(candidates))
    lab = np.arange(len(candidates), len(both))
    chosen = GreedyCoreset(distance_metric="cosine", normalize=True).query(
        clf, np.arange(len(both)), unl, lab, np.zeros(len(lab), dtype=np.int64), n=budget, embeddings=both
    )
    picks = candidates[np.asarray(chosen)]
    return picks, [reason[int(i)] for i in picks]


@dataclass
class ReviewResult:
    queries: Queries
    picks: np.ndarray
    seconds: float
    summary: dict[str, Any]


def review(
    log: str | Path,
    run: str | Path,
    out: str | Path,
    budget: int = 200,
    strategy: str = "hybrid",
    adapter: str | None = None,
    seed: int = 42,
    overwrite: bool = False,
) -> ReviewResult:
    """Pick the `budget` logged queries most worth labelling and write them for labelling."""
    from intentlab.folders import OutputDir, write_text_atomic
    from intentlab.inference.opener import open_run
    from intentlab.serving.traffic_log import read_log
    from intentlab.traffic import labelstudio

    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}.")
    if budget < 1:
        raise UserError(f"--budget must be at least 1, got {budget}.")
    t0 = time.perf_counter()
    records, bad = read_log(log, adapter)
    if not records:
        raise UserError(f"{log} has no logged predictions{f' for adapter {adapter!r}' if adapter else ''}.")
    folder = OutputDir(out, overwrite, marker="summary.json", entries=REVIEW_ENTRIES, complete="summary.json")
    try:
        predictor = open_run(run)
        if not predictor.probabilistic:
            raise UserError(f"--run {run} is a TF-IDF baseline run; review needs an encoder run's features.")
        texts = [r["text"] for r in records]
        outs = predictor.outputs(texts, True, progress="review: the logged texts")
        queries = merge(texts, outs.features)
        rep = np.array([rows[0] for rows in queries.members])  # one logged row per query, for its outputs
        train = _train_texts(run)
        keep = _not_trained_on(train, queries.texts)
        probs = predictor.decider.probabilities(outs.logits[rep])[keep]
        feats = outs.features[rep][keep]
        oos = None
        if predictor.ood is not None:
            state = predictor.ood
            oos = state.score(state.chosen, outs.logits[rep], outs.features[rep])[keep]
        labelled = (
            predictor.outputs(train, True, progress="review: the training texts").features if train else None
        )
        picks, why = select(strategy, probs, feats, queries.counts[keep], budget, labelled, oos, seed)
        kept = np.flatnonzero(keep)
        rows = _rows(
            queries, kept[picks], probs[picks], predictor, oos[picks] if oos is not None else None, why
        )
        target = folder.claim()
        model_version = f"{Path(run).name}"
        tasks = [
            labelstudio.task(
                r["text"], [(r["guess_1"], float(r["p_1"]))], model_version, {"count": r["count"]}
            )
            for r in rows
        ]
        write_text_atomic(target / "review.csv", _csv(rows))
        write_text_atomic(
            target / "labelstudio_tasks.json", json.dumps(tasks, indent=1, ensure_ascii=False) + "\n"
        )
        oos_label = "oos"
        write_text_atomic(
            target / "labelstudio_config.xml", labelstudio.config_xml(predictor.labels, oos_label)
        )
        seconds = time.perf_counter() - t0
        summary = {
            "log": str(log),
            "run": str(run),
            "strategy": strategy,
            "budget": budget,
            "logged": len(records),
            "malformed_lines": bad,
            "queries": len(queries.texts),
            "already_trained_on": int((~keep).sum()),
            "picked": len(rows),
            "picked_out_of_scope": sum(r["out_of_scope"] == "true" for r in rows),
            "seconds": round(seconds, 2),
        }
        write_text_atomic(target / "summary.json", json.dumps(summary, indent=2) + "\n")
    except BaseException:
        folder.abort()
        raise
    folder.commit()
    return ReviewResult(queries, kept[picks], seconds, summary)


REVIEW_ENTRIES = frozenset({"review.csv", "labelstudio_tasks.json", "labelstudio_config.xml", "summary.json"})
CSV_COLUMNS = (
    "rank",
    "text",
    "count",
    *(f"{k}_{i}" for i in range(1, TOP + 1) for k in ("guess", "p")),
    "out_of_scope",
    "oos_score",
    "reason",
    "label",
)


def _rows(
    queries: Queries,
    picks: np.ndarray,
    probs: np.ndarray,
    predictor: Any,
    oos: np.ndarray | None,
    why: list[str],
) -> list[dict[str, Any]]:
    rows = []
    state = predictor.ood
    for rank, (i, p, reason) in enumerate(zip(picks, probs, why, strict=True), 1):
        top = np.argsort(-p)[:TOP]
        row: dict[str, Any] = {"rank": rank, "text": queries.texts[i], "count": int(queries.counts[i])}
        for k, j in enumerate(top, 1):
            row[f"guess_{k}"], row[f"p_{k}"] = predictor.labels[j], f"{p[j]:.4f}"
        score = float(oos[rank - 1]) if oos is not None else None
        flagged = score is not None and score < state.thresholds[state.chosen]
        row.update(
            out_of_scope=str(flagged).lower() if score is not None else "",
            oos_score="" if score is None else f"{score:.4g}",
            reason=reason,
            label="",
        )
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _train_texts(run: str | Path) -> list[str] | None:
    """The run's training texts, when its data is still where it was (checksums equal); else None."""
    from intentlab.data.run_data import run_dataset

    try:
        ds, _ = run_dataset(Path(run))
    except UserError:
        return None
    return ds.train.texts


def _not_trained_on(train: list[str] | None, texts: list[str]) -> np.ndarray:
    """False for the queries whose text (case and punctuation aside) the run was trained on."""
    from intentlab.data.text import normalised

    if train is None:
        return np.ones(len(texts), dtype=bool)
    seen = {normalised(t) for t in train}
    return np.array([normalised(t) not in seen for t in texts])
