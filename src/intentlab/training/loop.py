"""The one training loop, shared by every method (full, lora, dora, ia3, head).

    intentlab train --method lora --out runs/lora

Recipe: setup (data -> tokens -> model -> optimizer, all validated before the run folder is touched)
-> epochs (bucketed batches, bf16 autocast, AdamW with linear warm-up/decay, clipping; validation after
each epoch; early stopping keeps the best epoch's weights) -> test evaluation -> run folder.
Devices and processes come from Hugging Face Accelerate, so `accelerate launch` works unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from intentlab import data as D
from intentlab.config import Config
from intentlab.data import batching as B
from intentlab.errors import UserError
from intentlab.hardware import default_device_type, fast_bf16
from intentlab.inference.engine import Placement, forward_batches, pad_id
from intentlab.inference.metrics import metrics
from intentlab.models.classifier import (
    build_model,
    count_params,
    head_modules,
    load_tokenizer,
    load_trainable_state,
    quiet_transformers,
    trainable_state,
)
from intentlab.models.io import save_model
from intentlab.models.methods import get as get_method
from intentlab.reporting.plots import training_curves
from intentlab.runs import (
    CONFIG,
    METRICS,
    PREDICTIONS,
    RESULT,
    RunDir,
    provenance,
    read_config,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from intentlab.training import checkpoint as ckpt
from intentlab.training.measure import (
    length_histogram,
    peak_memory_mb,
    reset_peak_rss,
    rss_mb,
    split_fingerprint,
)
from intentlab.training.tracking import NullTracker, make_tracker

STUDY_HEADER = "Epoch | Training Loss | Validation Loss | Accuracy | F1 | F1 (macro) | s/epoch | ex/s"


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


class Setup:
    """Everything built before the run folder is touched: bad input fails here, leaving nothing behind."""

    def __init__(self, cfg: Config, accelerator: Any) -> None:
        self.cfg = cfg
        self.on_epoch: Callable[[dict[str, Any]], bool] | None = None
        self.tracker: NullTracker = NullTracker()
        self.ds = D.dataset_for(cfg)
        self.tokenizer = load_tokenizer(cfg.model)
        self.pad_id = pad_id(self.tokenizer)
        self.method = get_method(cfg.method)
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
        steps = cfg.epochs * len(self.sampler)
        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        model = build_model(cfg, len(self.ds.labels), total_steps=steps)
        self.trainable, self.total = count_params(model)
        # Every process walks the same global batches and keeps its own share (see Collator), so a run on
        # N processes sees exactly the batches of a 1-process run with the same global batch size.
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


def make_accelerator(cfg: Config) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    accelerator = Accelerator(
        mixed_precision="bf16" if cfg.bf16 else "no",
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
    if cfg.batch_size % accelerator.num_processes:
        raise UserError(
            f"batch_size {cfg.batch_size} is not divisible by {accelerator.num_processes} processes. "
            "Pick a global batch size that is a multiple of the process count."
        )
    return accelerator


def train(
    cfg: Config,
    out: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Train one run into `out` (or continue it from its checkpoint) and return its result.json content.

    `on_epoch(row)` is called after each validation; returning True stops training there (a sweep's
    pruner uses it); the run is still finished and recorded, with `train.pruned` set.
    """
    quiet_transformers()
    reset_peak_rss()  # this run's peak, even in a process that trained others before
    if cfg.bf16 is None:
        cfg = cfg.replace(bf16=fast_bf16(default_device_type()))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process
    out = Path(out)
    run_dir = None if resume else RunDir(out, overwrite)  # every process checks, so all fail together
    setup = Setup(cfg, accelerator)  # validates data and model before anything is written
    run_dir = run_dir if main else None  # only the main process writes the run folder
    if run_dir:
        run_dir.claim()
        D.print_warnings(setup.ds)
    accelerator.wait_for_everyone()
    setup.on_epoch = on_epoch
    setup.tracker = (
        make_tracker(
            cfg.track, cfg.tracking_uri, out, setup.ds.name, cfg.name or f"{cfg.method}-seed{cfg.seed}"
        )
        if main
        else NullTracker()
    )
    if main and not resume:
        setup.tracker.params(cfg.to_dict())
    try:
        if main and not resume:
            write_text_atomic(out / CONFIG, cfg.to_yaml())
        with ckpt.StopFlag() as stop:
            result = _fit(setup, accelerator, out, progress, stop, resume)
    except ckpt.Interrupted:
        raise  # the run folder stays, with its checkpoint
    except BaseException:
        if run_dir and (run_dir.backup is not None or not (out / ckpt.CHECKPOINT).exists()):
            run_dir.abort()  # restore what --overwrite replaced; or drop a run with nothing to resume
        raise
    if run_dir:
        run_dir.commit()
    return result


def resume_config(run: str | Path, flags: dict[str, Any]) -> Config:
    """The recorded config of an unfinished run; only machine-level flags may change on resume."""
    from intentlab.config import merge, validate

    run = Path(run)
    if not (run / CONFIG).is_file():
        raise UserError(
            f"{run} is not a run folder (no {CONFIG}). Pass the --out folder of an interrupted run to --resume."
        )
    if (run / RESULT).is_file():
        raise UserError(
            f"run {run} is already complete. Nothing to resume; use --overwrite to train it again."
        )
    allowed = {"threads", "data_dir"}
    changed = sorted(k for k, v in flags.items() if v is not None and k not in allowed)
    if changed:
        raise UserError(
            f"--resume continues with the run's recorded config; drop {', '.join('--' + c.replace('_', '-') for c in changed)}."
        )
    cfg = merge(read_config(run), {k: v for k, v in flags.items() if v is not None}, "command line")
    validate(cfg)
    return cfg


def _evaluate(accelerator: Any, setup: Setup, split: str) -> np.ndarray:
    """Logits for a split; with several processes each scores a share of the batches, then they are gathered."""
    from accelerate.utils import gather_object

    ids, cfg = setup.tokens[split], setup.cfg
    model = accelerator.unwrap_model(setup.model)
    # validation runs where training runs, so the training machine's precision is the right one here
    placement = Placement(accelerator.device, bool(cfg.bf16))
    if accelerator.num_processes == 1:
        return forward_batches(model, ids, setup.pad_id, placement, cfg.eval_batch_size).logits
    mine = list(range(accelerator.process_index, len(ids), accelerator.num_processes))
    logits = forward_batches(
        model, [ids[i] for i in mine], setup.pad_id, placement, cfg.eval_batch_size
    ).logits
    pairs = gather_object([(i, row) for i, row in zip(mine, logits, strict=True)])
    out = np.zeros((len(ids), logits.shape[1]), dtype=np.float32)
    for i, row in pairs:
        out[i] = row
    return out


def train_step(
    setup: Setup, accelerator: Any, indices: list[int], global_step: int = 0
) -> tuple[torch.Tensor, int, int]:
    """One optimizer step on one global batch; returns this process's summed cross-entropy (a tensor:
    no host sync), its example count and its padded token count."""
    batch = {k: v.to(accelerator.device) for k, v in setup.collate(indices).items()}
    # the model's loss is this process's summed loss x (processes / global batch): DDP's mean over
    # processes then gives exactly the global batch mean, even when the shares differ by one example
    out = setup.model(**batch)
    accelerator.backward(out.loss)
    if setup.cfg.max_grad_norm > 0:
        accelerator.clip_grad_norm_(setup.model.parameters(), setup.cfg.max_grad_norm)
    setup.optimizer.step()
    setup.scheduler.step()
    if setup.method.on_step is not None:
        setup.method.on_step(accelerator.unwrap_model(setup.model), global_step)
    setup.optimizer.zero_grad(set_to_none=True)
    ce = F.cross_entropy(out.logits.detach().float(), batch["labels"], reduction="sum")
    return ce, batch["labels"].shape[0], batch["input_ids"].numel()


def _fit(
    setup: Setup, accelerator: Any, out: Path, progress: bool, stop: ckpt.StopFlag, resume: bool
) -> dict[str, Any]:
    cfg, model, scheduler = setup.cfg, setup.model, setup.scheduler
    main = accelerator.is_main_process
    table = EpochTable(main and progress)
    loop: dict[str, Any] = {
        "epoch": 1,
        "step": 0,
        "rows": [],
        "best_acc": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "loss_sum": 0.0,
        "seen": 0,
        "padded": 0,
        "elapsed": 0.0,
        "epoch_elapsed": 0.0,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed": 0,
    }
    best_state = None
    restored = ckpt.load(accelerator, out) if resume else None
    if restored:
        loop, best_state = restored
        loop["resumed"] += 1
        if main:
            tqdm.write(f"resuming {out} at epoch {loop['epoch']}, step {loop['step']}")
    rows = loop["rows"]
    for row in rows:
        table.row(row)
    rss_before = rss_mb()
    real_tokens = sum(len(t) for t in setup.tokens["train"])
    fit_start = time.perf_counter() - loop["elapsed"]
    while loop["epoch"] <= cfg.epochs and not loop.get("done"):
        epoch = loop["epoch"]
        model.train()
        setup.sampler.set_epoch(epoch)
        t0 = time.perf_counter() - loop["epoch_elapsed"]
        loss_sum = torch.tensor(loop["loss_sum"], device=accelerator.device)
        seen = torch.tensor(float(loop["seen"]), device=accelerator.device)
        skip = loop["step"]
        batches = setup.sampler.batches()
        bar = tqdm(
            batches[skip:],
            desc=f"epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not (main and progress),
            initial=skip,
            total=len(batches),
        )
        for step, indices in enumerate(bar, start=skip + 1):
            global_step = (epoch - 1) * len(batches) + step
            ce, n, padded = train_step(setup, accelerator, indices, global_step)
            loss_sum += ce  # no host sync per step
            seen += n
            loop["padded"] += padded
            if step % 25 == 0:
                bar.set_postfix(loss=f"{ce.item() / max(n, 1):.3f}")
            stopping = _stop_requested(accelerator, stop)
            if stopping or (
                cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and step < len(batches)
            ):
                loop.update(
                    step=step,
                    loss_sum=float(loss_sum.item()),
                    seen=int(seen.item()),
                    elapsed=time.perf_counter() - fit_start,
                    epoch_elapsed=time.perf_counter() - t0,
                )
                ckpt.save(accelerator, out, loop, best_state)
                if stopping:
                    raise ckpt.Interrupted(
                        f"stopped at epoch {epoch}, step {step} with a checkpoint. Resume with: intentlab train --resume {out}"
                    )
        bar.close()
        loss_total = float(accelerator.reduce(loss_sum, reduction="sum").item())
        seen_all = int(accelerator.reduce(seen, reduction="sum").item())
        epoch_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        val = metrics(setup.y["validation"], _evaluate(accelerator, setup, "validation"))
        row = {
            "epoch": epoch,
            "train_loss": loss_total / max(seen_all, 1),
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_f1_macro": val["f1_macro"],
            "val_f1_weighted": val["f1_weighted"],
            "epoch_seconds": epoch_seconds,
            "train_examples_per_second": seen_all / epoch_seconds,
            "lr": scheduler.get_last_lr()[0],
            "eval_seconds": time.perf_counter() - t1,
            "elapsed_seconds": time.perf_counter() - fit_start,
            "padding_fraction": 1 - real_tokens / max(loop["padded"] * accelerator.num_processes, 1),
            "peak_memory_mb": peak_memory_mb(accelerator.device)[0],
        }
        rows.append(row)
        table.row(row)
        setup.tracker.epoch(row)
        if main:
            write_jsonl_atomic(out / METRICS, rows)
        if setup.on_epoch is not None and setup.on_epoch(row):
            loop.update(done=True, pruned=True)
        if val["accuracy"] > loop["best_acc"]:
            loop.update(best_acc=val["accuracy"], best_epoch=epoch, bad_epochs=0)
            best_state = trainable_state(accelerator.unwrap_model(model)) if epoch < cfg.epochs else None
        else:
            loop["bad_epochs"] += 1
            loop["done"] = loop.get("done") or bool(cfg.patience and loop["bad_epochs"] >= cfg.patience)
        loop.update(
            epoch=epoch + 1,
            step=0,
            loss_sum=0.0,
            seen=0,
            padded=0,
            epoch_elapsed=0.0,
            elapsed=time.perf_counter() - fit_start,
        )
        if loop["epoch"] <= cfg.epochs and not loop.get("done"):
            ckpt.save(accelerator, out, loop, best_state)  # resumable from every epoch boundary
    loop["elapsed"] = time.perf_counter() - fit_start
    return _finish(setup, accelerator, out, loop, best_state, rss_before, real_tokens)


def _stop_requested(accelerator: Any, stop: ckpt.StopFlag) -> bool:
    """True on every process when any process got SIGINT/SIGTERM (so all checkpoint together)."""
    if accelerator.num_processes == 1:
        return stop.signal is not None
    flag = torch.tensor(1.0 if stop.signal is not None else 0.0, device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _finish(
    setup: Setup,
    accelerator: Any,
    out: Path,
    loop: dict[str, Any],
    best_state: dict[str, torch.Tensor] | None,
    rss_before: float,
    real_tokens: int,
) -> dict[str, Any]:
    """Best weights back, test evaluation, model + predictions + plots + result.json (last)."""
    cfg, ds, rows = setup.cfg, setup.ds, loop["rows"]
    unwrapped = accelerator.unwrap_model(setup.model)
    if loop["best_epoch"] != rows[-1]["epoch"] and best_state is not None:
        load_trainable_state(unwrapped, best_state)  # early stopping: the best epoch's weights
    test_logits = _evaluate(accelerator, setup, "test")
    test = metrics(setup.y["test"], test_logits, ds.labels)
    peak, memory_kind = peak_memory_mb(accelerator.device)
    result: dict[str, Any] = {
        "run": {
            "method": cfg.method,
            "model": cfg.model,
            "seed": cfg.seed,
            "data": ds.name,
            "split_fingerprint": split_fingerprint(ds),
            "started_at": loop["started"],
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resumed": loop["resumed"],
            "num_processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "config": cfg.to_dict(),
            "dataset": {
                **D.describe(ds),
                "source": ds.source,
                "train_token_lengths": length_histogram(setup.tokens["train"]),
            },
        },
        "train": {
            "epochs": rows,
            "epochs_run": len(rows),
            "best_epoch": loop["best_epoch"],
            "best_val_accuracy": loop["best_acc"],
            "stopped_early": len(rows) < cfg.epochs,
            "pruned": bool(loop.get("pruned")),
            "trainable_params": setup.trainable,
            "total_params": setup.total,
            "trainable_percent": 100.0 * setup.trainable / setup.total,
            "train_seconds": loop["elapsed"],
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
        result["train"]["checkpoint_bytes"] = save_model(
            unwrapped, cfg, setup.tokenizer, ds.labels, out / "model"
        )
        write_json_atomic(
            out / PREDICTIONS,
            {"labels": ds.labels, "y_true": setup.y["test"], "y_pred": test_logits.argmax(1).tolist()},
        )
        title = f"{cfg.method} · {Path(cfg.model).name} · seed {cfg.seed}"
        training_curves(rows, out / "plots" / "training.png", title)
        write_json_atomic(out / RESULT, result)  # last: its presence marks the run complete
        setup.tracker.finish(result, out)
        ckpt.remove(out)
    accelerator.wait_for_everyone()
    return result
