"""The model: an encoder plus a pooled classifier head.

`pool()` is the one pooling function: the classifier, the serving registry's shared-base views and
the exported transformers code all pool through it (or a copy of it kept in sync by a test).
`IntentClassifier.features()` gives pooled sentence vectors (what out-of-scope scorers use) and
`classify()` turns them into logits. `HeadOnly` is its head alone, trained on cached features.

How it is built for a run is `models/build.py`; its speed paths are `models/speed.py`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from intentlab.models.speed import cls_row_usable, run_layers


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, pooler: nn.Module | None = None
) -> torch.Tensor:
    """Sentence vector from token states: the mean over real tokens (`mean-l2`: then scaled to unit
    length, as sentence-transformers models end), or `pooler` over [CLS] (BERT)."""
    if pooling == "cls":
        return pooler(hidden) if pooler is not None else hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return F.normalize(mean, dim=-1) if pooling == "mean-l2" else mean


class IntentClassifier(nn.Module):
    """encoder -> pooling (mean of token states, or the BERT pooler over [CLS]) -> dropout -> linear.

    `features()` gives the pooled sentence vectors (what out-of-scope scorers use), `classify()` turns
    them into logits; `forward()` is both, and with `labels` also the loss, as transformers models do
    (peft's AdaLoRA adds its regulariser to that loss).
    """

    def __init__(
        self, encoder: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # peft and accelerate look for a `.config`
        self.pooling = pooling
        self.cls_last_layer = True  # training steps: the last layer for [CLS] alone (`cls_layer.py`)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=encoder.config.initializer_range)
        nn.init.zeros_(self.classifier.bias)

    def features(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        hidden_states: torch.Tensor | None = None,
        from_layer: int = 0,
    ) -> torch.Tensor:
        """Pooled sentence vectors from token ids, or from `hidden_states`: the (padded) outputs of the
        encoder's layers below `from_layer`, computed earlier (see `training/frozen.py`). Training steps
        with `[CLS]` pooling run the last layer for [CLS] alone (`models/cls_layer.py`)."""
        cls_only = (
            self.training and self.cls_last_layer and self.pooling == "cls" and cls_row_usable(self.encoder)
        )
        if hidden_states is None and not cls_only:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            if hidden_states is None:
                hidden_states, from_layer = self.encoder.embeddings(input_ids=input_ids), 0
            hidden = run_layers(self.encoder, hidden_states, attention_mask, from_layer, cls_only=cls_only)
        return pool(hidden, attention_mask, self.pooling, getattr(self.encoder, "pooler", None))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_scale: torch.Tensor | float = 1.0,
        hidden_states: torch.Tensor | None = None,
        from_layer: int = 0,
        **_: Any,
    ) -> SequenceClassifierOutput:
        """Logits; with `labels`, also `loss` = summed cross-entropy x `loss_scale` (the loop passes
        processes / global batch, so the loss is this process's share of the global batch mean).
        `hidden_states` and `from_layer` start the encoder at a layer instead of the token ids."""
        assert attention_mask is not None
        logits = self.classify(self.features(input_ids, attention_mask, hidden_states, from_layer))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels, reduction="sum") * loss_scale
        return SequenceClassifierOutput(loss=loss, logits=logits)


def classifier_of(model: nn.Module) -> nn.Module:
    """The IntentClassifier inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class HeadOnly(nn.Module):
    """The trainable part of a frozen-encoder classifier, trained on cached pooled features: the
    encoder's output cannot change, so it is computed once instead of every epoch. Shares its
    classifier and dropout with the full model, which is what gets saved."""

    def __init__(self, full: IntentClassifier) -> None:
        super().__init__()
        self.config = full.config
        self.classifier = full.classifier
        self.dropout = full.dropout

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None = None,
        loss_scale: torch.Tensor | float = 1.0,
        **_: Any,
    ) -> SequenceClassifierOutput:
        logits = self.classify(features)
        loss = (
            None if labels is None else F.cross_entropy(logits.float(), labels, reduction="sum") * loss_scale
        )
        return SequenceClassifierOutput(loss=loss, logits=logits)
