"""Frozen layers run once: with adapters in the top layers only (`adapter_layers`), the embeddings and the
layers below the lowest adapter hold no trainable weight and, without dropout, compute the same states for
a text at every epoch. A run computes those states once for the training texts and trains the upper
layers on them, as the frozen-encoder `head` trains on cached pooled features.

Only the training steps use the cache; validation, test and everything saved go through the whole model.
It is used where it is exact and fits: one process, no `torch.compile`, nothing random or trainable below
the first adapted layer, and at most `MAX_CACHE_BYTES` of states (`cache_frozen_layers: false` turns it off).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from intentlab.config import Config
from intentlab.data.batching import Collator, sorted_batches
from intentlab.inference.engine import Placement
from intentlab.models.classifier import classifier_of
from intentlab.models.speed import encoder_layers, run_layers

# states are fp32; Banking77's 9,000 training texts, MiniLM: 146 k tokens x 384 x 4 B = 214 MB
MAX_CACHE_BYTES = 2 << 30


def cached_layers(cfg: Config, model: nn.Module, lengths: Sequence[int], processes: int) -> int:
    """How many of the encoder's bottom layers a run can compute once (0: none). The embeddings and
    those layers must have no trainable parameter and no active dropout, whatever method put them so."""
    if not cfg.cache_frozen_layers or cfg.compile or processes != 1 or cfg.adapter_layers is None:
        return 0
    encoder = classifier_of(model).encoder
    layers = encoder_layers(encoder)
    if layers is None or cfg.adapter_layers >= len(layers):
        return 0
    first = len(layers) - cfg.adapter_layers
    below = [encoder.embeddings, *layers[:first]]
    for module in below:
        if any(p.requires_grad for p in module.parameters()):
            return 0
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in module.modules()):
            return 0
    width = int(encoder.config.hidden_size)
    return first if sum(lengths) * width * 4 <= MAX_CACHE_BYTES else 0


@torch.no_grad()
def frozen_states(
    model: nn.Module,
    ids: list[list[int]],
    pad_id: int,
    layers: int,
    placement: Placement,
    batch_size: int,
) -> list[torch.Tensor]:
    """Each text's token states entering layer `layers`, unpadded, computed as a training step computes
    them (same autocast); batched by length like inference."""
    encoder = classifier_of(model).encoder
    out: list[torch.Tensor | None] = [None] * len(ids)
    device = placement.device
    collate = Collator(ids, None, pad_id)
    bar = tqdm(total=len(ids), desc=f"frozen layers 1-{layers}", unit=" texts", leave=False)
    for rows in sorted_batches([len(t) for t in ids], batch_size, placement.batch_tokens):
        bar.update(len(rows))
        batch = {k: v.to(device) for k, v in collate(rows).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=placement.bf16):
            hidden = encoder.embeddings(input_ids=batch["input_ids"])
            hidden = run_layers(encoder, hidden, batch["attention_mask"], 0, layers)
        for r, i in enumerate(rows):
            out[i] = hidden[r, : len(ids[i])].clone()
    bar.close()
    return out  # type: ignore[return-value]


class StateCollator:
    """Training batches of cached states (padded with zeros, which the attention mask hides) that enter
    the encoder at layer `layers`."""

    def __init__(self, states: list[torch.Tensor], labels: Sequence[int], layers: int) -> None:
        self.states = states
        self.labels = labels
        self.layers = layers

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        seqs = [self.states[i] for i in indices]
        ones = [torch.ones(len(s), dtype=torch.long) for s in seqs]
        return {
            "hidden_states": nn.utils.rnn.pad_sequence(seqs, batch_first=True),
            "attention_mask": nn.utils.rnn.pad_sequence(ones, batch_first=True),
            "labels": torch.tensor([self.labels[i] for i in indices], dtype=torch.long),
            "loss_scale": torch.tensor(1.0 / len(indices)),
            "from_layer": self.layers,
        }
