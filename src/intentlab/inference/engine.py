"""The one inference path: texts -> token ids -> length-sorted batches -> forward -> original order.

    backend = TorchBackend(model, tokenizer, max_length=128)
    out = backend.run(["I lost my card"], features=True)   # out.logits (n, labels), out.features (n, hidden)

Every consumer calls this path: `evaluate` and `predict` (through `Predictor`), the serving registry,
export verification and the training loop's validation. A backend is anything with
`run(texts, features=False) -> Outputs` and `run_ids(ids, features=False) -> Outputs`; `TorchBackend`
is the PyTorch one, and an ONNX Runtime backend implements the same two methods.

Device and precision are chosen here for the machine that runs inference (`intentlab.hardware`),
never copied from the training run: a run trained in bf16 on a GPU and scored on an AVX2-only CPU
runs in fp32 there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from intentlab.data.batching import Collator, sorted_batches, tokenize

DEFAULT_BATCH_SIZE = 256  # inference batch (texts); batches are sorted by length, so padding is minimal
# On CPUs a batch also stops at this many (padded) tokens. Banking77's test set in batches of 256 texts
# against 2,048-token batches: torch bf16 366 -> 500 texts/s, ONNX Runtime fp32 257 -> 348, int8
# 462 -> 643 (benchmarks/README.md, "Evaluation batches")
CPU_BATCH_TOKENS = 2048


@dataclass
class Outputs:
    """Per-text results, in input order (float32)."""

    logits: np.ndarray
    features: np.ndarray | None = None  # pooled sentence vectors, when asked for


class Backend(Protocol):
    """What the inference consumers need from a loaded model."""

    def run(self, texts: Sequence[str], features: bool = False, progress: str | None = None) -> Outputs: ...
    def run_ids(
        self, ids: list[list[int]], features: bool = False, progress: str | None = None
    ) -> Outputs: ...


@dataclass(frozen=True)
class Placement:
    """Where and how inference runs on this machine."""

    device: Any  # torch.device
    bf16: bool

    @property
    def batch_tokens(self) -> int | None:
        """The token budget of one batch here: CPU_BATCH_TOKENS on a CPU, none (count only) elsewhere."""
        return CPU_BATCH_TOKENS if self.device.type == "cpu" else None

    @classmethod
    def for_this_machine(cls, device: str | None = None, bf16: bool | None = None) -> Placement:
        """The given device (default: CUDA when available, else CPU) and bf16 where it is fast there."""
        import torch

        from intentlab.hardware import default_device_type, fast_bf16

        dev = torch.device(device or default_device_type())
        return cls(dev, fast_bf16(dev.type) if bf16 is None else bool(bf16 and fast_bf16(dev.type)))


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding id (0 when it defines none, as BERT's [PAD] is)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def run_sorted(
    ids: list[list[int]],
    pad: int,
    batch_size: int,
    step: Callable[[dict[str, Any]], tuple[np.ndarray, np.ndarray | None]],
    max_tokens: int | None = None,
    progress: str | None = None,
) -> Outputs:
    """Length-sorted batches of `ids` (at most `batch_size` texts and `max_tokens` padded tokens each)
    through `step(batch) -> (logits, features or None)`, results put back in input order. Every
    backend runs its batches through here. `progress` names a progress bar on stderr (None: silent)."""
    from tqdm.auto import tqdm

    if not ids:
        raise ValueError("no texts to run")
    collate = Collator(ids, None, pad)
    logits_out: np.ndarray | None = None
    feats_out: np.ndarray | None = None
    bar = tqdm(total=len(ids), desc=progress, unit=" texts", leave=False, disable=progress is None)
    for idx in sorted_batches([len(s) for s in ids], batch_size, max_tokens):
        z, f = step(collate(idx))
        bar.update(len(idx))
        if logits_out is None:
            logits_out = np.empty((len(ids), z.shape[1]), dtype=np.float32)
        logits_out[idx] = z
        if f is not None:
            if feats_out is None:
                feats_out = np.empty((len(ids), f.shape[1]), dtype=np.float32)
            feats_out[idx] = f
    bar.close()
    assert logits_out is not None
    return Outputs(logits_out, feats_out)


def forward_batches(
    model: Any,
    ids: list[list[int]],
    pad: int,
    placement: Placement,
    batch_size: int = DEFAULT_BATCH_SIZE,
    features: bool = False,
    progress: str | None = None,
) -> Outputs:
    """Logits (and pooled features) for pre-tokenized texts with a PyTorch model, in inference mode.

    `model` is an intentlab classifier (with `features()`/`classify()`), or any module whose output
    has `.logits` (a plain transformers model, e.g. an export being verified).
    """
    import torch

    device = placement.device
    split = hasattr(model, "features") and hasattr(model, "classify")
    if features and not split:
        raise ValueError("this model gives no pooled features")

    def step(batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        batch = {k: v.to(device) for k, v in batch.items()}
        if split:
            pooled = model.features(**batch)
            logits = model.classify(pooled)
        else:
            pooled, logits = None, model(**batch).logits
        f = pooled.float().cpu().numpy() if features and pooled is not None else None
        return logits.float().cpu().numpy(), f

    from intentlab.models.speed import inference_attention

    was_training = getattr(model, "training", False)
    model.eval()
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if placement.bf16
        else contextlib.nullcontext()
    )
    try:
        with torch.inference_mode(), autocast, inference_attention(model):
            return run_sorted(ids, pad, batch_size, step, placement.batch_tokens, progress)
    finally:
        model.train(was_training)


class TorchBackend:
    """A PyTorch model + its tokenizer behind the `Backend` interface, placed for this machine."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int,
        placement: Placement | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.placement = placement or Placement.for_this_machine()
        self.model = model.to(self.placement.device)
        if self.placement.bf16:  # the backend owns the model: cast its weights once, not every forward
            from intentlab.models.speed import bf16_inference_weights

            bf16_inference_weights(self.model)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return tokenize(self.tokenizer, texts, self.max_length)

    def run_ids(self, ids: list[list[int]], features: bool = False, progress: str | None = None) -> Outputs:
        return forward_batches(
            self.model, ids, pad_id(self.tokenizer), self.placement, self.batch_size, features, progress
        )

    def run(self, texts: Sequence[str], features: bool = False, progress: str | None = None) -> Outputs:
        return self.run_ids(self.encode(texts), features, progress)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise probabilities (float64) of logits divided by `temperature`."""
    from scipy.special import softmax as _softmax

    return _softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """The k most likely (label, probability) pairs per row, most likely first (ties: lower id first)."""
    k = max(1, min(k, len(labels)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(labels[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]
