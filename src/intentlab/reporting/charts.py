"""Comparison charts for reports, drawn from run records only (no training code, no torch).

Each function takes plain data (per-method lists of per-epoch rows, summary rows, predictions) and
writes one PNG. Methods keep the same colour in every chart.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from intentlab import methods as M
from intentlab.reporting.plots import _pyplot
from intentlab.reporting.summary import DDOF


def colours(names: list[str]) -> dict[str, str]:
    """A colour per method name (from the method table) that does not depend on which other methods a
    chart shows; plan variants that are not methods get a stable grey or blue."""
    return {n: M.colour(n) for n in names}


def _save(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out


def _band(
    rows_per_seed: list[list[dict[str, Any]]], key: str, x_key: str = "epoch"
) -> tuple[np.ndarray, ...]:
    """Mean and std of `key` per epoch over seeds (epochs every seed reached), and the x values."""
    n = min(len(r) for r in rows_per_seed)
    ys = np.array([[row[key] for row in r[:n]] for r in rows_per_seed], dtype=float)
    xs = np.array([[row[x_key] for row in r[:n]] for r in rows_per_seed], dtype=float).mean(axis=0)
    return xs, ys.mean(axis=0), (ys.std(axis=0, ddof=DDOF) if len(ys) > 1 else np.zeros(ys.shape[1]))


def curves(groups: dict[str, list[list[dict[str, Any]]]], out: Path) -> Path:
    """Validation accuracy and loss per epoch, every method overlaid, mean line with a ±1 std seed band."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    c = colours(list(groups))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, runs in groups.items():
        for ax, key in ((ax1, "val_accuracy"), (ax2, "val_loss")):
            if any(r[0].get(key) is None for r in runs):
                continue
            x, m, s = _band(runs, key)
            ax.plot(x, m, "o-", color=c[name], label=f"{name} (n={len(runs)})")
            ax.fill_between(x, m - s, m + s, color=c[name], alpha=0.2)
    ax1.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy (mean ± std over seeds)")
    ax2.set(xlabel="epoch", ylabel="validation loss", title="Validation loss (mean ± std over seeds)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, out)


def accuracy_vs_time(groups: dict[str, list[list[dict[str, Any]]]], floor: float | None, out: Path) -> Path:
    """Validation accuracy against cumulative wall-clock seconds (training + per-epoch evaluation)."""
    plt = _pyplot()
    c = colours(list(groups))
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for name, runs in groups.items():
        x, m, s = _band(runs, "val_accuracy", "elapsed_seconds")
        ax.plot(x / 60, m, "o-", color=c[name], label=name)
        ax.fill_between(x / 60, m - s, m + s, color=c[name], alpha=0.2)
    if floor is not None:
        ax.axhline(floor, color="grey", ls="--", lw=1, label="TF-IDF baseline (validation)")
    ax.set(xlabel="wall-clock minutes", ylabel="validation accuracy", title="Accuracy against training time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def frontier(summary: list[dict[str, Any]], out: Path) -> Path:
    """Test accuracy against trainable parameters (log scale): the efficiency frontier."""
    plt = _pyplot()
    c = colours([r["name"] for r in summary])
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    for r in summary:
        ax.errorbar(
            r["trainable_params"],
            r["test_accuracy"][0],
            yerr=r["test_accuracy"][1],
            fmt="o",
            color=c[r["name"]],
            capsize=4,
            ms=8,
        )
        ax.annotate(
            r["name"],
            (r["trainable_params"], r["test_accuracy"][0]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=9,
        )
    ax.set_xscale("log")
    ax.set(
        xlabel="trainable parameters (log scale)",
        ylabel="test accuracy",
        title="Efficiency frontier: accuracy per trained parameter",
    )
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)


def per_class_difference(
    labels: list[str], f1_a: dict[str, float], f1_b: dict[str, float], a: str, b: str, out: Path, k: int = 12
) -> Path:
    """The intents where A loses most against B and where it wins most (test F1 difference)."""
    plt = _pyplot()
    diff = sorted(((f1_a[n] - f1_b[n], n) for n in labels), key=lambda t: t[0])
    shown = diff[:k] + [d for d in diff[-k:] if d not in diff[:k]]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(shown) + 1.2), constrained_layout=True)
    ax.barh(
        [n for _, n in shown],
        [d for d, _ in shown],
        color=["#C44E52" if d < 0 else "#55A868" for d, _ in shown],
    )
    ax.axvline(0, color="black", lw=0.8)
    ax.set(
        xlabel=f"test F1 of {a} minus {b}", title=f"Intents where {a} loses (red) or wins (green) against {b}"
    )
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, out)


def confusions(
    labels: list[str], y_true: list[int], y_pred: list[int], title: str, out: Path, k: int = 12
) -> Path:
    """The most confused (true -> predicted) intent pairs of one run."""
    plt = _pyplot()
    pairs = Counter((t, p) for t, p in zip(y_true, y_pred, strict=True) if t != p).most_common(k)
    fig, ax = plt.subplots(figsize=(9, 0.3 * max(len(pairs), 1) + 1.6), constrained_layout=True)
    names = [f"{labels[t]} → {labels[p]}" for (t, p), _ in pairs][::-1]
    ax.barh(names, [n for _, n in pairs][::-1], color="#8172B3")
    ax.set(xlabel="test examples")
    ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)  # long run names: wrapped, not clipped
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, out)


def confusion_matrix(
    labels: list[str], y_true: list[int], y_pred: list[int], title: str, out: Path, k: int = 10
) -> Path:
    """The full confusion matrix (rows: true intent, columns: predicted; log colour scale, counts of
    correct texts left out so the errors show), with the k largest confusions annotated."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm
    from sklearn.metrics import confusion_matrix as sk_confusion

    n = len(labels)
    m = sk_confusion(y_true, y_pred, labels=range(n)).astype(float)
    np.fill_diagonal(m, np.nan)
    size = min(4 + 0.25 * n, 24)  # ~0.25 inch a row: 77 intents stay readable
    fig, ax = plt.subplots(figsize=(size, size), constrained_layout=True)
    shown = np.where(m > 0, m, np.nan)
    im = ax.imshow(
        shown,
        cmap="Reds",
        norm=LogNorm(vmin=1, vmax=max(np.nanmax(shown) if np.isfinite(shown).any() else 1, 2)),
    )
    ax.set_xticks(range(n), labels, rotation=90, fontsize=max(5.5, 10 - n / 12))
    ax.set_yticks(range(n), labels, fontsize=max(5.5, 10 - n / 12))
    ax.set(xlabel="predicted intent", ylabel="true intent")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=10)
    flat = np.nan_to_num(m, nan=0).ravel()
    for idx in np.argsort(-flat)[:k]:
        if flat[idx] > 0:
            t, p = divmod(int(idx), n)
            ax.annotate(f"{int(flat[idx])}", (p, t), ha="center", va="center", fontsize=7, color="black")
    fig.colorbar(im, ax=ax, shrink=0.6, label="test texts (log scale; diagonal left out)")
    return _save(fig, out)


def confidence_histogram(confidence: list[float], correct: list[bool], title: str, out: Path) -> Path:
    """Top-probability histograms of correct and wrong test predictions."""
    plt = _pyplot()
    conf, ok = np.asarray(confidence), np.asarray(correct, dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    bins = np.linspace(0, 1, 26)
    ax.hist(conf[ok], bins=bins, alpha=0.7, color="#55A868", label=f"correct ({ok.sum()})")
    ax.hist(conf[~ok], bins=bins, alpha=0.8, color="#C44E52", label=f"wrong ({(~ok).sum()})")
    ax.set_yscale("log")
    ax.set(xlabel="top probability", ylabel="test texts (log scale)")
    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=10)
    ax.legend()
    return _save(fig, out)


def label_counts(counts: dict[str, int], out: Path) -> Path:
    """Training examples per intent, sorted."""
    plt = _pyplot()
    items = sorted(counts.items(), key=lambda t: -t[1])
    fig, ax = plt.subplots(figsize=(11, 3.6), constrained_layout=True)
    ax.bar(range(len(items)), [v for _, v in items], color="#4C72B0")
    ax.set_xticks(range(len(items)), [k for k, _ in items], rotation=90, fontsize=6)
    ax.set(ylabel="training examples", title=f"Examples per intent ({len(items)} intents)")
    return _save(fig, out)


def token_lengths(hist: dict[str, int], out: Path) -> Path:
    """Histogram of training text lengths in tokens (with [CLS]/[SEP])."""
    plt = _pyplot()
    xs = np.array([int(k) for k in hist])
    ns = np.array(list(hist.values()))
    mean = float((xs * ns).sum() / ns.sum())
    fig, ax = plt.subplots(figsize=(7, 3.4), constrained_layout=True)
    ax.bar(xs, ns, width=1.0, color="#55A868")
    ax.axvline(mean, color="black", ls="--", lw=1, label=f"mean {mean:.1f}")
    ax.set(xlabel="tokens per text", ylabel="training texts", title="Text lengths")
    ax.legend()
    return _save(fig, out)
