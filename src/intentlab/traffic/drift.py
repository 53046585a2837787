"""`intentlab drift LOG --run RUN --out DIR`: how served traffic moves away from the training data.

Over equal time windows of the log: the distance between the predicted-intent mix and the training
label mix (Jensen-Shannon, scipy), the out-of-scope rate and the mean top probability; over the whole
log, the intents whose share grew most against training's and the words that grew most (smoothed
log-ratio of rates). Two charts, one paragraph of generated findings, report.md + report.html in the
reports' style, and summary.json.

evidently was measured for this and left out: on 2026-12-07 it would add 31 packages to this project's
install (a web framework, uvloop, statsmodels, nltk, plotly, Faker and a telemetry client among them)
for a distance and a few charts that scipy and matplotlib already give.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError

WINDOWS = 8


def _windows(times: list[datetime], n: int) -> list[np.ndarray]:
    """Row indices of `n` equal time windows (fewer when the log is short)."""
    t = np.array([x.timestamp() for x in times])
    if len(t) < 2 * n or t.max() == t.min():
        n = max(1, min(n, len(t) // 50))
    edges = np.linspace(t.min(), t.max(), n + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n - 1)
    return [np.flatnonzero(which == k) for k in range(n) if (which == k).any()]


def _mix(labels: list[str], classes: list[str]) -> np.ndarray:
    counts = Counter(labels)
    v = np.array([counts.get(c, 0) for c in classes], dtype=np.float64)
    return v / max(v.sum(), 1.0)


def grown_terms(
    train: list[str], traffic: list[str], top: int = 10, min_count: int = 5
) -> list[dict[str, Any]]:
    """Words much more frequent in traffic than in training (smoothed log-ratio of rates)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(lowercase=True, token_pattern=r"(?u)\b[^\W\d_]{3,}\b")
    vec.fit(train + traffic)
    a = np.asarray(vec.transform(train).sum(axis=0)).ravel() + 1.0
    b = np.asarray(vec.transform(traffic).sum(axis=0)).ravel() + 1.0
    ratio = np.log(b / b.sum()) - np.log(a / a.sum())
    words = vec.get_feature_names_out()
    order = [i for i in np.argsort(-ratio) if b[i] - 1 >= min_count][:top]
    return [
        {
            "term": str(words[i]),
            "traffic": int(b[i] - 1),
            "training": int(a[i] - 1),
            "ratio": float(np.exp(ratio[i])),
        }
        for i in order
    ]


def drift(
    log: str | Path, run: str | Path, out: str | Path, adapter: str | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Write the drift report of `log` against `run`'s training data; returns its summary."""
    from scipy.spatial.distance import jensenshannon

    from intentlab.data.run_data import run_dataset
    from intentlab.folders import OutputDir, write_text_atomic
    from intentlab.serving.traffic_log import read_log

    records, bad = read_log(log, adapter)
    if not records:
        raise UserError(f"{log} has no logged predictions{f' for adapter {adapter!r}' if adapter else ''}.")
    ds, _ = run_dataset(Path(run))
    classes = ds.labels
    train_mix = _mix(ds.train.labels, classes)
    try:
        times = [datetime.fromisoformat(str(r["time"])) for r in records]
    except (KeyError, ValueError):
        raise UserError(
            f"{log} has records without a valid time. Was it written by intentlab serve --log?"
        ) from None
    top1 = [r["top"][0][0] if r.get("top") else "" for r in records]
    conf = np.array([float(r["top"][0][1]) if r.get("top") else np.nan for r in records])
    oos = np.array([bool(r.get("out_of_scope")) for r in records])
    has_oos = any(r.get("out_of_scope") is not None for r in records)
    rows = []
    for idx in _windows(times, WINDOWS):
        mix = _mix([top1[i] for i in idx], classes)
        rows.append(
            {
                "start": times[idx[0]].isoformat(timespec="seconds"),
                "end": times[idx[-1]].isoformat(timespec="seconds"),
                "n": len(idx),
                "js_distance": float(jensenshannon(mix, train_mix, base=2)),
                "oos_rate": float(oos[idx].mean()) if has_oos else None,
                "mean_confidence": float(np.nanmean(conf[idx])),
            }
        )
    traffic_mix = _mix(top1, classes)
    grew = sorted(
        (
            {"intent": c, "traffic": float(traffic_mix[k]), "training": float(train_mix[k])}
            for k, c in enumerate(classes)
        ),
        key=lambda g: -(g["traffic"] - g["training"]),
    )[:10]
    terms = grown_terms(ds.train.texts, [r["text"] for r in records])
    summary = {
        "log": str(log),
        "run": str(run),
        "records": len(records),
        "malformed_lines": bad,
        "windows": rows,
        "intents_grown": grew,
        "terms_grown": terms,
        "findings": _findings(rows, grew, terms),
    }
    folder = OutputDir(out, overwrite, marker="summary.json", entries=DRIFT_ENTRIES, complete="summary.json")
    try:
        target = folder.claim()
        _report(target, summary)
        write_text_atomic(target / "summary.json", json.dumps(summary, indent=2) + "\n")
    except BaseException:
        folder.abort()
        raise
    folder.commit()
    return summary


DRIFT_ENTRIES = frozenset({"summary.json", "report.md", "report.html", "charts"})


def _findings(rows: list[dict[str, Any]], grew: list[dict[str, Any]], terms: list[dict[str, Any]]) -> str:
    first, last = rows[0], rows[-1]
    parts = [
        f"Over {sum(r['n'] for r in rows):,} logged predictions in {len(rows)} window(s), the predicted-intent mix was "
        f"{first['js_distance']:.3f} from training's at first and {last['js_distance']:.3f} at the end "
        "(Jensen-Shannon distance, 0 = the same mix, 1 = disjoint)."
    ]
    if first["oos_rate"] is not None:
        parts.append(
            f"The out-of-scope rate went from {100 * first['oos_rate']:.1f}% to {100 * last['oos_rate']:.1f}%."
        )
    parts.append(f"Mean top probability: {first['mean_confidence']:.3f} to {last['mean_confidence']:.3f}.")
    if grew and grew[0]["traffic"] > grew[0]["training"]:
        g = grew[0]
        parts.append(
            f"Grew most: {g['intent']} ({100 * g['traffic']:.1f}% of traffic, {100 * g['training']:.1f}% of training)."
        )
    if terms:
        parts.append(
            "Words much more frequent than in training: "
            + ", ".join(f"“{t['term']}” ({t['ratio']:.0f}×)" for t in terms[:5])
            + "."
        )
    return " ".join(parts)


def _report(out: Path, summary: dict[str, Any]) -> None:
    from intentlab.folders import write_text_atomic
    from intentlab.reporting.charts import _save
    from intentlab.reporting.document import Doc
    from intentlab.reporting.plots import _pyplot

    rows = summary["windows"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2), constrained_layout=True)
    x = range(1, len(rows) + 1)
    ax.plot(
        x, [r["js_distance"] for r in rows], marker="o", color="#C44E52", label="intent mix vs training (JS)"
    )
    ax.plot(
        x, [r["mean_confidence"] for r in rows], marker="s", color="#4C72B0", label="mean top probability"
    )
    if rows[0]["oos_rate"] is not None:
        ax.plot(x, [r["oos_rate"] for r in rows], marker="^", color="#DD8452", label="out-of-scope rate")
    ax.set(xlabel="time window", ylim=(0, 1.05), title="Traffic against the training data")
    ax.legend(fontsize=8)
    chart = _save(fig, out / "charts" / "drift.png")
    grew = summary["intents_grown"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(grew) + 1.2), constrained_layout=True)
    names = [g["intent"] for g in grew][::-1]
    ax.barh(names, [100 * g["traffic"] for g in grew][::-1], color="#C44E52", label="traffic")
    ax.barh(names, [100 * g["training"] for g in grew][::-1], color="#8C8C8C", alpha=0.6, label="training")
    ax.tick_params(axis="y", labelsize=7)
    ax.set(xlabel="% of texts", title="Intents that grew most")
    ax.legend(fontsize=8)
    grew_chart = _save(fig, out / "charts" / "intents.png")
    doc = Doc("intentlab drift")
    doc.p(summary["findings"], "finding")
    doc.img(chart, "traffic against the training data, per time window")
    doc.table(
        ["window", "from", "to", "texts", "JS distance", "out-of-scope rate", "mean top probability"],
        [
            [
                str(k),
                r["start"],
                r["end"],
                str(r["n"]),
                f"{r['js_distance']:.3f}",
                "" if r["oos_rate"] is None else f"{100 * r['oos_rate']:.1f}%",
                f"{r['mean_confidence']:.3f}",
            ]
            for k, r in enumerate(rows, 1)
        ],
    )
    doc.h("Intents that grew")
    doc.img(grew_chart, "intents that grew most")
    doc.h("Words that grew")
    doc.table(
        ["word", "in traffic", "in training", "rate ratio"],
        [
            [t["term"], str(t["traffic"]), str(t["training"]), f"{t['ratio']:.1f}×"]
            for t in summary["terms_grown"]
        ],
    )
    write_text_atomic(out / "report.md", doc.markdown(out))
    write_text_atomic(out / "report.html", doc.html())
