"""Out-of-scope charts, drawn from run records only: ROC curves by group, the trade-off between
in-scope accuracy and out-of-scope recall as the threshold moves, and reliability diagrams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentlab.reporting.charts import _save, colours
from intentlab.reporting.plots import _pyplot


def roc_by_group(curves: dict[str, dict[str, list[list[float]]]], out: Path) -> Path:
    """One panel per out-of-scope group: each method's ROC curve (its chosen scorer, first seed)."""
    plt = _pyplot()
    groups = sorted({g for per in curves.values() for g in per})
    c = colours(list(curves))
    fig, axes = plt.subplots(
        1,
        max(len(groups), 1),
        figsize=(5.2 * max(len(groups), 1), 4.4),
        constrained_layout=True,
        squeeze=False,
    )
    for ax, group in zip(axes[0], groups, strict=False):
        for name, per in curves.items():
            if group in per:
                pts = per[group]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=c[name], label=name)
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
        ax.set(
            xlabel="false-positive rate (in-scope texts rejected)",
            ylabel="out-of-scope recall",
            title=f"In scope vs {group}",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out)


def tradeoff(curves: dict[str, list[list[float]]], out: Path) -> Path:
    """In-scope accuracy with rejection against out-of-scope recall, as the threshold moves."""
    plt = _pyplot()
    c = colours(list(curves))
    fig, ax = plt.subplots(figsize=(7, 4.4), constrained_layout=True)
    for name, pts in curves.items():
        ax.plot([p[1] for p in pts], [p[0] for p in pts], "o-", ms=3, color=c[name], label=name)
    ax.set(
        xlabel="out-of-scope recall (all out-of-scope test texts)",
        ylabel="in-scope accuracy with rejection",
        title="What catching out-of-scope texts costs in-scope accuracy",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def reliability(per_method: dict[str, dict[str, Any]], out: Path) -> Path:
    """Confidence against accuracy before and after temperature scaling, one line per method."""
    plt = _pyplot()
    c = colours(list(per_method))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True, sharey=True)
    for ax, when in zip(axes, ("before", "after"), strict=True):
        for name, cal in per_method.items():
            bins = cal[when]["bins"]
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                "o-",
                ms=3,
                color=c[name],
                label=f"{name} (ECE {cal[when]['ece']:.3f})",
            )
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
        ax.set(xlabel="confidence (top probability)", title=f"{when.capitalize()} temperature scaling")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("accuracy")
    return _save(fig, out)
