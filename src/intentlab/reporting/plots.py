"""Per-run charts, drawn from metrics rows only (matplotlib, headless).

`training_curves()` is the study's two-panel figure: training and validation loss per epoch; validation
accuracy and F1 (weighted and macro) per epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(rows: list[dict[str, Any]], out: str | Path, title: str = "") -> Path:
    """Save the two-panel training chart as PNG (and SVG beside it); returns the PNG path."""
    plt = _pyplot()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", label="training loss")
    ax1.plot(epochs, [r["val_loss"] for r in rows], "s-", label="validation loss")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax2.plot(epochs, [r["val_accuracy"] for r in rows], "o-", label="accuracy")
    ax2.plot(epochs, [r["val_f1_weighted"] for r in rows], "s--", label="F1 (weighted)")
    ax2.plot(epochs, [r["val_f1_macro"] for r in rows], "^:", label="F1 (macro)")
    ax2.set(xlabel="epoch", ylabel="score", title="Validation accuracy and F1")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    fig.savefig(out, dpi=110)
    fig.savefig(out.with_suffix(".svg"))
    plt.close(fig)
    return out
