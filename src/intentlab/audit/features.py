"""Sentence features for an audit, computed once for every fold: the frozen encoder's pooled vectors
(the `head` method's pooling), or a trained run's own (`--run`), through the one inference path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from intentlab.config import Config


def encoder_features(texts: list[str], cfg: Config) -> np.ndarray:
    """The frozen encoder `cfg.model`'s pooled features of `texts` (float32, one row per text)."""
    from intentlab.inference.engine import Placement, TorchBackend
    from intentlab.models.classifier import IntentClassifier
    from intentlab.models.loading import load_encoder, load_tokenizer, quiet_transformers

    quiet_transformers()
    model = IntentClassifier(load_encoder(cfg.model, cfg.pooling), 1, cfg.pooling, dropout=0.0)
    backend = TorchBackend(model, load_tokenizer(cfg.model), cfg.max_length, Placement.for_this_machine())
    return _checked(backend.run(texts, features=True, progress="features").features)


def run_features(texts: list[str], run: str | Path) -> np.ndarray:
    """A trained run's pooled features of `texts`: its fine-tuned encoder (and pooler)."""
    from intentlab.errors import UserError
    from intentlab.inference.opener import open_run

    predictor = open_run(run, ood=False)
    if not predictor.probabilistic:
        raise UserError(f"--run {run} is a TF-IDF baseline run; the audit needs an encoder run's features.")
    return _checked(predictor.outputs(texts, True, progress="features").features)


def _checked(features: np.ndarray | None) -> np.ndarray:
    assert features is not None
    return np.ascontiguousarray(features, dtype=np.float32)
