"""No-grad evaluation: logits for a split (large, length-sorted batches) and the metrics dict.

`metrics()` is pure numpy/scikit-learn so reports can recompute numbers from saved predictions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def metrics(y_true: Sequence[int], logits: np.ndarray, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """loss (mean cross-entropy), accuracy, macro and weighted F1, n; per-class scores when labels given."""
    y = np.asarray(y_true, dtype=np.int64)
    pred = logits.argmax(axis=1)
    out: dict[str, Any] = {
        "loss": float(-log_softmax(logits.astype(np.float64))[np.arange(len(y)), y].mean()),
        "accuracy": float(accuracy_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y, pred, average="weighted", zero_division=0)),
        "n": len(y),
    }
    if labels is not None:
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(len(labels)), zero_division=0)
        out["per_class"] = {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        }
    return out


def predict_logits(
    model: Any,
    input_ids: list[list[int]],
    batch_size: int = 256,
    pad_id: int = 0,
    bf16: bool = False,
    device: Any = "cpu",
) -> np.ndarray:
    """Logits (float32, in input order) for pre-tokenized texts, in inference mode.

    Batches are sorted by length so padding is minimal; bf16 autocast is used when asked.
    """
    import torch

    from intentlab.data.batching import Collator, sorted_batches

    collate = Collator(input_ids, None, pad_id)
    was_training = model.training
    model.eval()
    device = torch.device(device)
    out = None
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        for idx in sorted_batches([len(s) for s in input_ids], batch_size):
            batch = {k: v.to(device) for k, v in collate(idx).items()}
            logits = model(**batch).float().cpu().numpy()
            if out is None:
                out = np.empty((len(input_ids), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    model.train(was_training)
    assert out is not None, "no inputs"
    return out
