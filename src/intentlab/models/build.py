"""Building a model to train: encoder + head from pretrained weights, with the run's method applied,
and the small utilities training needs (parameter counts, the best epoch's weights).

What trains follows the method's storage kind (`models/storage.py`): full fine-tuning trains every
weight (but the word embeddings when `train_word_embeddings` is false), the frozen-encoder head only
the classifier (and pooler), adapter methods their peft adapter (`models/adapters.py`) and the head.
Full fine-tuning is "a run without an adapter config": the same loop, the same head.
"""

from __future__ import annotations

import torch
from torch import nn

from intentlab.config import Config
from intentlab.errors import UserError
from intentlab.methods import get
from intentlab.models.adapters import encoder_options
from intentlab.models.classifier import IntentClassifier
from intentlab.models.loading import load_encoder
from intentlab.models.storage import of_method


def features_are_fixed(cfg: Config) -> bool:
    """True when only the head trains and nothing before it is random or trained: the frozen encoder
    without dropout, pooled by the mean or by a frozen pooler. Such runs train on cached features."""
    frozen_pooler = cfg.pooling != "cls" or not cfg.train_pooler
    return of_method(cfg.method).frozen_encoder and cfg.encoder_dropout == 0.0 and frozen_pooler


def set_dropout(module: nn.Module, p: float) -> None:
    """Set every dropout inside `module` to p (dropout is costly on CPU: the RNG runs per element)."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = p


def build_model(cfg: Config, num_labels: int, total_steps: int = 1) -> nn.Module:
    """Encoder + head from pretrained weights, with the method applied (`total_steps`: the run's
    optimizer steps, for methods whose schedule depends on it)."""
    options = encoder_options(get(cfg.method))
    encoder = load_encoder(cfg.model, cfg.pooling, **options)
    inference = encoder.config._attn_implementation  # what a reloaded run runs (`load_model`)
    if cfg.attention and cfg.attention != inference:
        encoder.set_attn_implementation(cfg.attention)  # training steps only: see `inference_attention`
    if "quantization_config" in options:
        widths = [m.in_features for m in encoder.modules() if hasattr(m, "in_features")]
        if any(w % 64 for w in widths):  # bitsandbytes quantizes weights in blocks of 64 inputs
            raise UserError(
                f"{cfg.method} needs layer widths that are multiples of 64; {cfg.model} has {sorted(set(widths))}. "
                "Use another method or a larger model."
            )
    if cfg.encoder_dropout is not None:
        set_dropout(encoder, cfg.encoder_dropout)
    model = IntentClassifier(encoder, num_labels, cfg.pooling, cfg.dropout)
    model.name_or_path = cfg.model  # peft records it as the adapter's base_model_name_or_path
    model.inference_attention = inference
    model.cls_last_layer = cfg.cls_last_layer
    return of_method(cfg.method).prepare(cfg, model, total_steps)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; peft's frozen copies of saved modules are not counted twice."""
    trainable = total = 0
    for name, p in model.named_parameters():
        if "original_module" in name:
            continue
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable weights: what early stopping keeps for the best epoch."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
