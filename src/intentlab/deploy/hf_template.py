"""Standalone transformers model code for exported intentlab classifiers (copied as `modeling_intentlab.py`).

An exported folder loads with plain transformers — no peft, no intentlab:

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

`trust_remote_code` is needed because mean pooling over token states is not one of transformers' built-in
sequence-classification heads. This file imports only torch and transformers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class IntentlabConfig(PretrainedConfig):
    model_type = "intentlab"

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        **kwargs: Any,
    ) -> None:
        self.encoder = encoder or {}
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)


class IntentlabForSequenceClassification(PreTrainedModel):
    """encoder -> mean pooling (or the encoder's [CLS] pooler) -> dropout -> linear, as trained by intentlab."""

    config_class = IntentlabConfig
    base_model_prefix = "encoder"

    def __init__(self, config: IntentlabConfig) -> None:
        super().__init__(config)
        enc_cfg = dict(config.encoder)
        encoder_config = AutoConfig.for_model(enc_cfg.pop("model_type"), **enc_cfg)
        self.encoder = AutoModel.from_config(encoder_config)
        if config.pooling != "cls" and getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(encoder_config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "cls":
            pooler = getattr(self.encoder, "pooler", None)
            pooled = pooler(hidden) if pooler is not None else hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            if self.config.pooling == "mean-l2":
                pooled = nn.functional.normalize(pooled, dim=-1)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
