"""Tokens and batches: tokenize once per run, length-bucketed training batches, length-sorted evaluation
batches, and the collator that pads each batch to its own longest text (never to a fixed length).

Banking77 averages 16 tokens per text (p95 37, max 98): padding to 128 would spend most of the compute on
padding; bucketed batches keep it to a few percent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated but not padded (padding happens per batch)."""
    return tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)[
        "input_ids"
    ]


class BucketBatchSampler:
    """Yields batches of indices whose texts have similar lengths.

    Each epoch shuffles the data, cuts it into chunks of `bucket_batches` batches, sorts each chunk by
    length and cuts it into batches; the batch order is then shuffled. Padding waste drops to a few percent
    while batches stay random. Deterministic given (seed, epoch).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        bucket_batches: int = 64,
        seed: int = 0,
        min_batch: int = 1,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.min_batch = min_batch  # a smaller last batch joins its neighbour (each process needs an example)
        self.batch_size = batch_size
        self.chunk = batch_size * bucket_batches
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.lengths))
        out: list[list[int]] = []
        for start in range(0, len(perm), self.chunk):
            chunk = perm[start : start + self.chunk]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            cut = [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
            if len(cut) > 1 and len(cut[-1]) < self.min_batch:
                cut[-2] += cut.pop()
            out += cut
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def sorted_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Evaluation batches: indices sorted by length (longest first), so padding is minimal.

    With `max_tokens`, a batch also stops before its padded size (texts x its longest text) passes that
    budget: long texts go in small batches and short ones in large, so no batch's activations outgrow the
    CPU caches and the allocator's reuse (benchmarks/README.md, "Evaluation batches")."""
    sizes = np.asarray(lengths)
    order = np.argsort(-sizes, kind="stable").tolist()
    out: list[list[int]] = []
    start = 0
    while start < len(order):
        n = batch_size
        if max_tokens:  # the batch's first text is its longest
            n = max(1, min(batch_size, max_tokens // max(int(sizes[order[start]]), 1)))
        out.append(order[start : start + n])
        start += n
    return out


class FeatureCollator:
    """Batches of precomputed feature rows (a frozen encoder's pooled outputs), split over processes
    like `Collator` splits token batches."""

    def __init__(self, features: Any, labels: Sequence[int], rank: int = 0, world: int = 1) -> None:
        self.features = features
        self.labels = labels
        self.rank = rank
        self.world = world

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        import torch

        n_global = len(indices)
        mine = indices[self.rank :: self.world]
        return {
            "features": self.features[mine],
            "labels": torch.tensor([self.labels[i] for i in mine], dtype=torch.long),
            "loss_scale": torch.tensor(self.world / n_global),
        }


class Collator:
    """Pads a batch of token-id lists to its longest member; adds labels when given.

    With `world` > 1 processes, each keeps every world-th example of the (length-sorted) global batch, so
    the shares have near-equal lengths; `loss_scale` = world / global batch size turns the sum of the
    share's losses into its part of the global mean.
    """

    def __init__(
        self,
        input_ids: list[list[int]],
        labels: Sequence[int] | None,
        pad_id: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.input_ids = input_ids
        self.labels = labels
        self.pad_id = pad_id
        self.rank = rank
        self.world = world

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        import torch
        from torch.nn.utils.rnn import pad_sequence

        n_global = len(indices)
        indices = indices[self.rank :: self.world]
        seqs = [torch.tensor(self.input_ids[i], dtype=torch.long) for i in indices]
        ids = pad_sequence(seqs, batch_first=True, padding_value=self.pad_id)
        lengths = torch.tensor([len(s) for s in seqs])
        mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
        batch = {"input_ids": ids, "attention_mask": mask}
        if self.labels is not None:
            batch["labels"] = torch.tensor([self.labels[i] for i in indices], dtype=torch.long)
            batch["loss_scale"] = torch.tensor(self.world / n_global)
        return batch
