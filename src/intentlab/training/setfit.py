"""SetFit (Tunstall et al., 2022) through the `setfit` library: contrastive fine-tuning of the sentence
encoder on pairs of training texts, then a logistic-regression head on its embeddings.

    intentlab train --method setfit --out runs/setfit --train-size 10

The trained body and head are then one ordinary intentlab classifier — the encoder, mean pooling
scaled to unit length (`mean-l2`, the sentence-transformer's own), and a linear layer holding the
logistic regression's coefficients, whose softmax is exactly its `predict_proba` — stored as a `full`
run: safetensors, never SetFit's joblib head. So predict, evaluate, serve, export and the
out-of-scope scorers work on it unchanged.

Pairs: `setfit_iterations` per text (the paper's 20), capped at `setfit_max_pairs` (the library's
default trains on every pair, hours on a CPU at 10 examples per intent on Banking77).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from intentlab import data as D
from intentlab.config import Config
from intentlab.errors import UserError
from intentlab.hardware import set_torch_threads
from intentlab.runs.record import EpochRow, RunResult, Scores
from intentlab.training.measure import one_pass_train_info, reset_peak_rss, run_info, train_accuracy
from intentlab.training.provenance import provenance
from intentlab.training.writer import RunWriter


def import_setfit() -> Any:
    try:
        import setfit
    except ImportError:
        raise UserError("--method setfit needs SetFit. Run: pip install 'intentlab[setfit]'.") from None
    return setfit


def train_setfit(
    cfg: Config,
    out: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochRow], bool] | None = None,
) -> RunResult:
    """Train SetFit on the run's data and write an ordinary run folder (resuming starts it again)."""
    import_setfit()
    reset_peak_rss()
    with RunWriter(out, overwrite or resume) as writer:
        return _train(cfg, writer, on_epoch)


def _fit(cfg: Config, ds: D.Dataset) -> tuple[Any, float, int]:
    """The setfit library's training; returns the model, seconds and the pairs trained on."""
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from intentlab.models.loading import resolve_model_path

    set_torch_threads(cfg.threads)
    model = SetFitModel.from_pretrained(resolve_model_path(cfg.model), trust_remote_code=False)
    pairs = min(cfg.setfit_max_pairs, 2 * cfg.setfit_iterations * len(ds.train))
    scratch = tempfile.TemporaryDirectory(
        prefix="intentlab-setfit-"
    )  # the library's default is ./checkpoints
    args = TrainingArguments(
        output_dir=scratch.name,
        save_strategy="no",  # intentlab saves the finished model itself, into the run folder
        batch_size=cfg.batch_size,
        num_epochs=cfg.epochs,
        num_iterations=cfg.setfit_iterations,
        max_steps=math.ceil(pairs / cfg.batch_size),
        body_learning_rate=cfg.lr,
        head_learning_rate=cfg.head_lr or 1e-2,
        seed=cfg.seed,
        report_to="none",
        show_progress_bar=False,
        max_length=cfg.max_length,
    )
    train = HFDataset.from_dict({"text": ds.train.texts, "label": ds.ids(ds.train)})
    t0 = time.perf_counter()
    with scratch:
        Trainer(model=model, args=args, train_dataset=train).train()
    return model, time.perf_counter() - t0, pairs


def body_pooling(model: Any) -> str:
    """The sentence-transformer body's pooling as intentlab names it: mean, then unit length when the
    body ends with a Normalize module (mean-l2; sentence-transformers checkpoints) or not (mean)."""
    names = [type(m).__name__ for m in model.model_body]
    pooling = next((m for m in model.model_body if type(m).__name__ == "Pooling"), None)
    mode = getattr(pooling, "pooling_mode", "mean") if pooling is not None else "mean"
    if mode != "mean":
        raise UserError(f"SetFit body pools by {mode!r}; intentlab runs SetFit on mean-pooled encoders only.")
    return "mean-l2" if "Normalize" in names else "mean"


def as_classifier(model: Any, num_labels: int) -> Any:
    """The SetFit body + logistic-regression head as an IntentClassifier (the body's pooling): the
    linear layer's softmax equals the regression's predict_proba."""
    import torch

    from intentlab.models.classifier import IntentClassifier

    encoder = model.model_body[0].auto_model
    encoder.pooler = None  # SetFit pools by the mean: BERT's [CLS] pooler is unused
    head = model.model_head
    coef, bias = np.asarray(head.coef_, dtype=np.float32), np.asarray(head.intercept_, dtype=np.float32)
    if coef.shape[0] == 1:  # binary: predict_proba = softmax([0, z])
        coef, bias = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, bias].astype(np.float32)
    order = np.argsort(np.asarray(head.classes_))  # rows in class-id order
    clf = IntentClassifier(encoder, num_labels, pooling=body_pooling(model), dropout=0.0)
    with torch.no_grad():
        clf.classifier.weight.copy_(torch.from_numpy(coef[order]))
        clf.classifier.bias.copy_(torch.from_numpy(bias[order]))
    return clf.eval()


def _train(cfg: Config, writer: RunWriter, on_epoch: Callable[[EpochRow], bool] | None) -> RunResult:
    from intentlab.inference.engine import Placement, TorchBackend, softmax
    from intentlab.inference.metrics import metrics
    from intentlab.models.build import count_params
    from intentlab.models.loading import load_tokenizer, quiet_transformers

    quiet_transformers()
    ds = D.dataset_for(cfg)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    model, seconds, pairs = _fit(cfg, ds)
    clf = as_classifier(model, len(ds.labels))
    cfg = cfg.replace(pooling=clf.pooling)  # what the saved model pools by
    tokenizer = load_tokenizer(cfg.model)
    backend = TorchBackend(clf, tokenizer, cfg.max_length, Placement.for_this_machine("cpu", bf16=False))
    logits = {s: backend.run(ds.split(s).texts).logits for s in ("validation", "test")}
    val = metrics(ds.ids(ds.validation), logits["validation"])
    test = metrics(ds.ids(ds.test), logits["test"], ds.labels)
    total, _ = count_params(clf)
    writer.claim(cfg)
    D.print_warnings(ds)
    size = writer.save_model(clf, cfg, tokenizer, ds.labels)
    dataset = {**D.describe(ds), "source": ds.source, "setfit_pairs": pairs}
    result = RunResult(
        run=run_info(cfg, ds, started, cfg.model, dataset),
        train=one_pass_train_info(
            val,
            seconds,
            pairs,
            total,
            size,
            train_accuracy(
                ds.ids(ds.train), cfg.seed, lambda rows: backend.run([ds.train.texts[i] for i in rows]).logits
            ),
            val_loss=val["loss"],
            lr=cfg.lr,
        ),
        test=Scores(**test),
        meta=provenance(),
    )
    if on_epoch is not None:
        result.train.pruned = bool(on_epoch(result.train.epochs[0]))
    confidence = softmax(logits["test"]).max(axis=1).tolist()
    writer.write_record(
        result, ds.labels, ds.ids(ds.test), logits["test"].argmax(1).tolist(), confidence, ds.test.texts
    )
    return writer.finish(cfg, ds)
