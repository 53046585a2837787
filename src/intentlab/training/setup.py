"""Everything a training run builds before its run folder is touched: data, tokens, batches, the model
with its method applied, the optimizer and schedule, all placed by Accelerate. Bad input fails here,
so a failed setup leaves nothing behind."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from intentlab import data as D
from intentlab.config import Config
from intentlab.data import batching as B
from intentlab.errors import UserError
from intentlab.inference.engine import pad_id
from intentlab.methods import get as get_method
from intentlab.models.adapters import head_modules
from intentlab.models.build import build_model, count_params, features_are_fixed
from intentlab.models.classifier import HeadOnly
from intentlab.models.loading import load_tokenizer, position_limit
from intentlab.models.speed import frozen_linears_to_bf16, no_adapter_input_casts
from intentlab.runs import EpochRow
from intentlab.training import distill
from intentlab.training.tracking import NullTracker

# the study's columns; its "F1" was weighted F1, and the header says so
STUDY_HEADER = (
    "Epoch | Training Loss | Validation Loss | Accuracy | F1 (weighted) | F1 (macro) | s/epoch | ex/s"
)


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases/LayerNorm; the head may have its own lr; fused where supported."""
    heads = tuple(head_modules(cfg))
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            is_head = any(f"{h}." in name for h in heads)
            groups.setdefault((p.ndim >= 2, is_head), []).append(p)
    param_groups = [
        {
            "params": ps,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr": (cfg.head_lr or cfg.lr) if head else cfg.lr,
        }
        for (decay, head), ps in groups.items()
    ]
    try:
        return torch.optim.AdamW(param_groups, lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):  # device without a fused kernel
        return torch.optim.AdamW(param_groups, lr=cfg.lr)


class EpochTable:
    """Prints the study's per-epoch table as epochs finish (main process only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            tqdm.write(STUDY_HEADER)

    def row(self, r: EpochRow) -> None:
        if self.enabled:
            tqdm.write(
                f"{r.epoch:>5} | {r.train_loss:>13.4f} | {r.val_loss:>15.4f} | {r.val_accuracy:>8.4f} | "
                f"{r.val_f1_weighted:>13.4f} | {r.val_f1_macro:>10.4f} | {r.epoch_seconds:>7.1f} | "
                f"{r.train_examples_per_second:>5.0f}"
            )


class Setup:
    """Everything built before the run folder is touched: bad input fails here, leaving nothing behind."""

    def __init__(self, cfg: Config, accelerator: Any, out: Path | None = None, resume: bool = False) -> None:
        self.cfg = cfg
        self.on_epoch: Callable[[EpochRow], bool] | None = None
        self.tracker: NullTracker = NullTracker()
        self.ds = D.dataset_for(cfg)
        self.tokenizer = load_tokenizer(cfg.model)
        limit = position_limit(cfg.model)
        if limit and cfg.max_length > limit:  # longer inputs would index past the position embeddings
            print(
                f"intentlab: warning: max_length {cfg.max_length} is more than {cfg.model} supports; using {limit}",
                file=sys.stderr,
            )
            cfg = self.cfg = cfg.replace(max_length=limit)
        self.pad_id = pad_id(self.tokenizer)
        self.method = get_method(cfg.method)
        # the teacher's logits for the training texts (read back from `out` when kept there): a bad
        # teacher fails here, before the model is built or any text encoded
        self.teacher = distill.prepare(cfg, self.ds.train.texts, self.ds.labels, out, resume)
        splits = ("train", "validation", "test")
        self.tokens = {s: B.tokenize(self.tokenizer, self.ds.split(s).texts, cfg.max_length) for s in splits}
        self.y = {s: self.ds.ids(self.ds.split(s)) for s in splits}
        self.sampler = B.BucketBatchSampler(
            [len(t) for t in self.tokens["train"]],
            cfg.batch_size,
            cfg.bucket_batches,
            cfg.seed,
            min_batch=accelerator.num_processes,
        )
        if cfg.min_steps and cfg.epochs * len(self.sampler) < cfg.min_steps:  # small data: more epochs
            cfg = self.cfg = cfg.replace(epochs=math.ceil(cfg.min_steps / len(self.sampler)))
        steps = cfg.epochs * len(self.sampler)
        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        model = build_model(cfg, len(self.ds.labels), total_steps=steps)
        self.trainable, self.total = count_params(model)
        if cfg.bf16 and self.method.adapter and not self.method.quantized:
            frozen_linears_to_bf16(model)  # no per-step weight casts under bf16 autocast
            no_adapter_input_casts(model)  # nor bf16 inputs cast up to fp32 and back
        self.full_model = model  # what is saved; the trained module differs when features are cached
        self.cached: dict[str, torch.Tensor] | None = None
        self.encode_seconds = 0.0  # the one encoder pass of a cached-features run: part of its training time
        # Every process walks the same global batches and keeps its own share (see Collator), so a run on
        # N processes sees exactly the batches of a 1-process run with the same global batch size.
        if features_are_fixed(cfg):
            t0 = time.perf_counter()
            self.cached = self._encode_once(model, accelerator)
            self.encode_seconds = time.perf_counter() - t0
            model = HeadOnly(model)
            self.collate: Any = B.FeatureCollator(
                self.cached["train"], self.y["train"], accelerator.process_index, accelerator.num_processes
            )
        else:
            self.collate = B.Collator(
                self.tokens["train"],
                self.y["train"],
                self.pad_id,
                accelerator.process_index,
                accelerator.num_processes,
            )
        optimizer = make_optimizer(model, cfg)
        from transformers import get_linear_schedule_with_warmup

        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * steps), steps)
        if cfg.compile:
            model = torch.compile(model, dynamic=True)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.from_layer = 0  # training steps enter the encoder here (> 0: the layers below ran once)
        if self.cached is None:
            self._cache_frozen_layers(accelerator)
        if self.teacher is not None:  # each batch also carries its rows' teacher logits
            self.collate = distill.DistillCollator(
                self.collate, self.teacher.logits, accelerator.process_index, accelerator.num_processes
            )

    def _cache_frozen_layers(self, accelerator: Any) -> None:
        """Compute the frozen bottom layers once for the training texts, where that is exact (see
        `training/frozen.py`); their time counts as training time, like a cached-features run's."""
        from intentlab.inference.engine import Placement
        from intentlab.training import frozen

        train = self.tokens["train"]
        layers = frozen.cached_layers(
            self.cfg, self.full_model, [len(t) for t in train], accelerator.num_processes
        )
        if not layers:
            return
        t0 = time.perf_counter()
        placement = Placement(accelerator.device, bool(self.cfg.bf16))
        states = frozen.frozen_states(
            self.full_model, train, self.pad_id, layers, placement, self.cfg.eval_batch_size
        )
        self.collate = frozen.StateCollator(states, self.y["train"], layers)
        self.from_layer = layers
        self.encode_seconds += time.perf_counter() - t0

    def _encode_once(self, model: torch.nn.Module, accelerator: Any) -> dict[str, torch.Tensor]:
        """Pooled features of every split through the frozen encoder (the one inference path)."""
        from intentlab.inference.engine import Placement, forward_batches

        placement = Placement(accelerator.device, bool(self.cfg.bf16))
        model.to(accelerator.device)
        out = {}
        for split, ids in self.tokens.items():
            feats = forward_batches(
                model, ids, self.pad_id, placement, self.cfg.eval_batch_size, True, f"encoder pass ({split})"
            ).features
            out[split] = torch.from_numpy(feats).to(accelerator.device)
        return out


def make_accelerator(cfg: Config) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    precision = "bf16" if cfg.bf16 else "no"
    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", precision)) != precision:
        # one process training runs of both precisions (a sweep, a test session): Accelerate keeps its
        # state per process and refuses to change it; the distributed state (PartialState) is kept
        AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        mixed_precision=precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    if cfg.batch_size % accelerator.num_processes:
        raise UserError(
            f"batch_size {cfg.batch_size} is not divisible by {accelerator.num_processes} processes. "
            "Pick a global batch size that is a multiple of the process count."
        )
    return accelerator
