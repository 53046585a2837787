"""The one training loop, shared by every method (full, lora, dora, ia3, head).

    intentlab train --method lora --out runs/lora

Recipe: setup (data -> tokens -> model -> optimizer, all validated before the run folder is touched)
-> epochs (bucketed batches, bf16 autocast, AdamW with linear warm-up/decay, clipping; validation after
each epoch; early stopping keeps the best epoch's weights) -> test evaluation -> run folder.
Devices and processes come from Hugging Face Accelerate, so `accelerate launch` works unchanged.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from intentlab import data as D
from intentlab.config import Config
from intentlab.errors import UserError
from intentlab.evaluate import metrics, predict_logits
from intentlab.hardware import default_device_type, fast_bf16
from intentlab.methods import (
    build_model,
    count_params,
    head_modules,
    load_tokenizer,
    load_trainable_state,
    trainable_state,
)
from intentlab.model_io import save_model
from intentlab.plots import training_curves
from intentlab.runs import (
    CONFIG,
    METRICS,
    PREDICTIONS,
    RESULT,
    RunDir,
    provenance,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)

STUDY_HEADER = "Epoch | Training Loss | Validation Loss | Accuracy | F1 | F1 (macro) | s/epoch | ex/s"


def quiet_transformers() -> None:
    """Silence transformers' weight-loading bars and notices; intentlab prints its own progress."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def split_fingerprint(ds: D.Dataset) -> str:
    """Hash of labels + validation + test: runs that may be compared share it."""
    h = hashlib.sha256()
    for part in (ds.labels, ds.validation.texts, ds.validation.labels, ds.test.texts, ds.test.labels):
        h.update("\x1f".join(part).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def length_histogram(ids: list[list[int]]) -> dict[str, int]:
    """{tokens: count} over a split, for the report's length histogram."""
    counts = Counter(len(t) for t in ids)
    return {str(k): counts[k] for k in sorted(counts)}


def rss_mb() -> float:
    """Current resident memory of this process (Linux), MB."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"


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

    def row(self, r: dict[str, Any]) -> None:
        if self.enabled:
            tqdm.write(
                f"{r['epoch']:>5} | {r['train_loss']:>13.4f} | {r['val_loss']:>15.4f} | {r['val_accuracy']:>8.4f} | "
                f"{r['val_f1_weighted']:.4f} | {r['val_f1_macro']:>10.4f} | {r['epoch_seconds']:>7.1f} | "
                f"{r['train_examples_per_second']:>5.0f}"
            )


def train(cfg: Config, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train one run into `out` and return its result.json content."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    quiet_transformers()
    if cfg.bf16 is None:
        cfg = cfg.replace(bf16=fast_bf16(default_device_type()))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(
        mixed_precision="bf16" if cfg.bf16 else "no",
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    if cfg.batch_size % accelerator.num_processes:
        raise UserError(
            f"batch_size {cfg.batch_size} is not divisible by {accelerator.num_processes} processes. "
            "Pick a global batch size that is a multiple of the process count."
        )
    main = accelerator.is_main_process
    run_dir = RunDir(out, overwrite) if main else None

    # ---- setup: everything that can fail on bad input happens before the run folder is touched
    ds = D.load_dataset(
        cfg.data,
        cfg.data_dir,
        cfg.text_column,
        cfg.label_column,
        cfg.val_fraction,
        cfg.test_fraction,
        cfg.split_seed,
    )
    tokenizer = load_tokenizer(cfg.model)
    set_seed(cfg.seed)
    model = build_model(cfg, len(ds.labels))
    trainable, total = count_params(model)
    tokens = {
        s: D.tokenize(tokenizer, ds.split(s).texts, cfg.max_length) for s in ("train", "validation", "test")
    }
    y = {s: ds.ids(ds.split(s)) for s in ("train", "validation", "test")}
    sampler = D.BucketBatchSampler(
        [len(t) for t in tokens["train"]], cfg.batch_size, cfg.bucket_batches, cfg.seed
    )
    loader = torch.utils.data.DataLoader(
        list(range(len(tokens["train"]))),
        batch_sampler=sampler,
        collate_fn=D.Collator(tokens["train"], y["train"], tokenizer.pad_token_id or 0),
    )
    optimizer = make_optimizer(model, cfg)
    from transformers import get_linear_schedule_with_warmup

    steps = cfg.epochs * len(sampler)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * steps), steps)
    if cfg.compile:
        model = torch.compile(model, dynamic=True)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    out = run_dir.claim() if run_dir else Path(out)
    try:
        if main:
            write_text_atomic(out / CONFIG, cfg.to_yaml())
        result = _fit(
            cfg,
            accelerator,
            model,
            optimizer,
            scheduler,
            loader,
            sampler,
            tokens,
            y,
            ds,
            tokenizer,
            out,
            trainable,
            total,
            progress,
        )
    except BaseException:
        if run_dir:
            run_dir.abort()
        raise
    if run_dir:
        run_dir.commit()
    return result


def _evaluate(accelerator: Any, model: Any, cfg: Config, ids: list[list[int]], pad_id: int) -> np.ndarray:
    return predict_logits(
        accelerator.unwrap_model(model), ids, cfg.eval_batch_size, pad_id, cfg.bf16, accelerator.device
    )


def _fit(
    cfg,
    accelerator,
    model,
    optimizer,
    scheduler,
    loader,
    sampler,
    tokens,
    y,
    ds,
    tokenizer,
    out,
    trainable,
    total,
    progress,
) -> dict[str, Any]:
    main = accelerator.is_main_process
    pad_id = tokenizer.pad_token_id or 0
    started = datetime.now(timezone.utc)
    rss_before = rss_mb()
    table = EpochTable(main and progress)
    rows: list[dict[str, Any]] = []
    best_acc, best_epoch, best_state, bad_epochs = -1.0, 0, None, 0
    fit_start = time.perf_counter()
    real_tokens = sum(len(t) for t in tokens["train"])
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=accelerator.device)
        seen = 0
        padded_tokens = 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not (main and progress))
        for step, batch in enumerate(bar):
            labels = batch.pop("labels")
            logits = model(**batch)
            loss = F.cross_entropy(logits.float(), labels)
            accelerator.backward(loss)
            if cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * labels.shape[0]  # no host sync per step
            seen += labels.shape[0]
            padded_tokens += batch["input_ids"].numel()
            if step % 25 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        loss_sum = accelerator.reduce(loss_sum, reduction="sum")
        seen_all = seen * accelerator.num_processes
        epoch_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        val = metrics(y["validation"], _evaluate(accelerator, model, cfg, tokens["validation"], pad_id))
        row = {
            "epoch": epoch,
            "train_loss": float(loss_sum.item()) / max(seen_all, 1),
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_f1_macro": val["f1_macro"],
            "val_f1_weighted": val["f1_weighted"],
            "epoch_seconds": epoch_seconds,
            "train_examples_per_second": seen_all / epoch_seconds,
            "lr": scheduler.get_last_lr()[0],
            "eval_seconds": time.perf_counter() - t1,
            "elapsed_seconds": time.perf_counter() - fit_start,
            "padding_fraction": 1 - real_tokens / max(padded_tokens * accelerator.num_processes, 1),
            "peak_memory_mb": peak_memory_mb(accelerator.device)[0],
        }
        rows.append(row)
        table.row(row)
        if main:
            write_jsonl_atomic(out / METRICS, rows)
        if val["accuracy"] > best_acc:
            best_acc, best_epoch, bad_epochs = val["accuracy"], epoch, 0
            best_state = trainable_state(accelerator.unwrap_model(model)) if epoch < cfg.epochs else None
        else:
            bad_epochs += 1
            if cfg.patience and bad_epochs >= cfg.patience:
                break
    train_seconds = time.perf_counter() - fit_start
    unwrapped = accelerator.unwrap_model(model)
    if best_epoch != rows[-1]["epoch"] and best_state is not None:
        load_trainable_state(unwrapped, best_state)  # early stopping: the best epoch's weights
    test_logits = _evaluate(accelerator, model, cfg, tokens["test"], pad_id)
    test = metrics(y["test"], test_logits, ds.labels)
    peak, memory_kind = peak_memory_mb(accelerator.device)
    result: dict[str, Any] = {
        "run": {
            "method": cfg.method,
            "model": cfg.model,
            "seed": cfg.seed,
            "data": ds.name,
            "split_fingerprint": split_fingerprint(ds),
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "config": cfg.to_dict(),
            "dataset": {
                **D.describe(ds),
                "source": ds.source,
                "train_token_lengths": length_histogram(tokens["train"]),
            },
        },
        "train": {
            "epochs": rows,
            "epochs_run": len(rows),
            "best_epoch": best_epoch,
            "best_val_accuracy": best_acc,
            "stopped_early": len(rows) < cfg.epochs,
            "trainable_params": trainable,
            "total_params": total,
            "trainable_percent": 100.0 * trainable / total,
            "train_seconds": train_seconds,
            "mean_epoch_seconds": float(np.mean([r["epoch_seconds"] for r in rows])),
            "train_examples_per_second": float(np.mean([r["train_examples_per_second"] for r in rows])),
            "peak_memory_mb": peak,
            "memory_kind": memory_kind,
            "rss_before_train_mb": rss_before,
            "train_tokens_per_epoch": real_tokens,
            "checkpoint_bytes": 0,
        },
        "test": test,
        "meta": provenance(),
    }
    if accelerator.is_main_process:
        result["train"]["checkpoint_bytes"] = save_model(unwrapped, cfg, tokenizer, ds.labels, out / "model")
        write_json_atomic(
            out / PREDICTIONS,
            {"labels": ds.labels, "y_true": y["test"], "y_pred": test_logits.argmax(1).tolist()},
        )
        training_curves(
            rows, out / "plots" / "training.png", f"{cfg.method} · {Path(cfg.model).name} · seed {cfg.seed}"
        )
        write_json_atomic(out / RESULT, result)  # last: its presence marks the run complete
    accelerator.wait_for_everyone()
    return result
