"""The one training loop, shared by every method the loop trains (full, lora, dora, ia3, adalora, head...).

    intentlab train --method lora --out runs/lora

Recipe: setup (data -> tokens -> model -> optimizer, all validated before the run folder is touched;
`training/setup.py` chooses the training regime once: the whole model, frozen lower layers computed
once, or a frozen encoder's features computed once) -> epochs (bucketed batches, bf16 autocast, AdamW
with linear warm-up/decay, clipping; validation after each epoch; early stopping keeps the best
epoch's weights) -> test evaluation -> the run writer (`training/writer.py`). `Loop` holds the run's
state, so its steps read it instead of passing it along. Devices and processes come from Hugging Face
Accelerate, so `accelerate launch` works unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from intentlab import data as D
from intentlab.config import Config
from intentlab.errors import Interrupted, UserError
from intentlab.hardware import default_device_type, fast_bf16, set_torch_threads
from intentlab.inference.engine import Placement, forward_batches, softmax
from intentlab.inference.metrics import metrics
from intentlab.models.adapters import on_step
from intentlab.models.build import load_trainable_state, trainable_state
from intentlab.models.loading import quiet_transformers
from intentlab.runs.files import CONFIG, RESULT
from intentlab.runs.record import EpochRow, RunResult, Scores, TrainInfo, read_config, read_epochs
from intentlab.training import checkpoint as ckpt
from intentlab.training.distill import soft_term as distill_soft_term
from intentlab.training.measure import (
    length_histogram,
    peak_memory_mb,
    reset_peak_rss,
    rss_mb,
    run_info,
    train_accuracy,
)
from intentlab.training.provenance import provenance
from intentlab.training.setup import EpochTable, Setup, make_accelerator
from intentlab.training.tracking import NullTracker, make_tracker
from intentlab.training.writer import RunWriter


def train(
    cfg: Config,
    out: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochRow], bool] | None = None,
) -> RunResult:
    """Train one run into `out` (or continue it from its checkpoint) and return its record.

    `on_epoch(row)` is called after each validation; returning True stops training there (a sweep's
    pruner uses it); the run is still finished and recorded, with `train.pruned` set.
    """
    quiet_transformers()
    reset_peak_rss()  # this run's peak, even in a process that trained others before
    cfg = for_this_machine(cfg)
    set_torch_threads(cfg.threads)
    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process
    # every process checks the folder, so all fail together; only the main process locks and writes it
    with RunWriter(out, overwrite, resume, main=main) as writer:
        setup = Setup(cfg, accelerator, writer.out, resume)  # validates everything before a write
        writer.claim(setup.cfg)
        if setup.teacher is not None:
            writer.write_teacher(setup.teacher)
        if main and not resume:
            D.print_warnings(setup.ds)
        accelerator.wait_for_everyone()
        setup.on_epoch = on_epoch
        name = setup.cfg.name or f"{setup.cfg.method}-seed{setup.cfg.seed}"
        setup.tracker = (
            make_tracker(setup.cfg.track, setup.cfg.tracking_uri, writer.out, setup.ds.name, name)
            if main
            else NullTracker()
        )
        if main and not resume:
            setup.tracker.params(setup.cfg.to_dict())
        with ckpt.StopFlag() as stop:
            Loop(setup, accelerator, writer, progress, stop).run(resume)
        return writer.finish(setup.cfg, setup.ds)


def for_this_machine(cfg: Config) -> Config:
    """The config with what it leaves open (`bf16`, `attention`: null) decided for this machine, as
    `train` runs it: bf16 autocast where bf16 is fast, and then eager attention on a CPU."""
    if cfg.bf16 is None:
        cfg = cfg.replace(bf16=fast_bf16(default_device_type()))
    if cfg.attention is None and cfg.bf16 and default_device_type() == "cpu":
        # measured in benchmarks/attention.py: under CPU bf16 autocast the eager kernel trains faster
        # (LoRA 1.39x, full 1.07x); in fp32 it does not, so fp32 keeps transformers' choice
        cfg = cfg.replace(attention="eager")
    return cfg


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


def _evaluate(
    accelerator: Any, setup: Setup, split: str, rows: list[int] | None = None, progress: str | None = None
) -> np.ndarray:
    """Logits for a split (or its `rows`); with several processes each scores a share of the batches,
    then they are gathered."""
    from accelerate.utils import gather_object

    ids, cfg = setup.tokens[split], setup.cfg
    if rows is not None:
        ids = [ids[i] for i in rows]
    model = accelerator.unwrap_model(setup.model)
    # validation runs where training runs, so the training machine's precision is the right one here
    placement = Placement(accelerator.device, bool(cfg.bf16))
    if setup.cached is not None:  # a frozen encoder: its features were computed once
        cached = setup.cached[split] if rows is None else setup.cached[split][rows]
        autocast = torch.autocast(placement.device.type, dtype=torch.bfloat16, enabled=placement.bf16)
        with torch.inference_mode(), autocast:  # as the inference path classifies them
            was = model.training
            model.eval()
            logits = torch.cat([model.classify(f) for f in cached.split(cfg.eval_batch_size)])
            model.train(was)
        return logits.float().cpu().numpy()
    if accelerator.num_processes == 1:
        return forward_batches(
            model, ids, setup.pad_id, placement, cfg.eval_batch_size, progress=progress
        ).logits
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
    batch = {
        k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v
        for k, v in setup.collate(indices).items()
    }
    # the model's loss is this process's summed loss x (processes / global batch): DDP's mean over
    # processes then gives exactly the global batch mean, even when the shares differ by one example
    teacher = batch.pop("teacher_logits", None)
    out = setup.model(**batch)
    loss = out.loss
    if teacher is not None:  # distillation: the teacher's soft targets mixed in (training/distill.py)
        cfg = setup.cfg
        soft = distill_soft_term(
            out.logits, teacher, batch["labels"], cfg.distill_alpha, cfg.distill_temperature
        )
        loss = loss + soft * batch["loss_scale"]
    accelerator.backward(loss)
    if setup.cfg.max_grad_norm > 0:
        accelerator.clip_grad_norm_(setup.model.parameters(), setup.cfg.max_grad_norm)
    setup.optimizer.step()
    setup.scheduler.step()
    hook = on_step(setup.method)
    if hook is not None:
        hook(accelerator.unwrap_model(setup.model), global_step)
    setup.optimizer.zero_grad(set_to_none=True)
    ce = F.cross_entropy(out.logits.detach().float(), batch["labels"], reduction="sum")
    return ce, batch["labels"].shape[0], batch["attention_mask"].numel() if "attention_mask" in batch else 0


@dataclass
class LoopState:
    """The loop's counters: all a checkpoint needs besides Accelerate's model/optimizer/RNG state.
    Finished epochs' rows live in metrics.jsonl, not here."""

    started: str
    epoch: int = 1  # the epoch in progress
    step: int = 0  # optimizer steps done within it
    best_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    loss_sum: float = 0.0  # partial-epoch sums, for mid-epoch checkpoints
    seen: int = 0
    padded: int = 0
    elapsed: float = 0.0
    epoch_elapsed: float = 0.0
    resumed: int = 0
    done: bool = False
    pruned: bool = False

    @classmethod
    def restore(cls, data: dict[str, Any]) -> LoopState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Loop:
    """One run's training: the setup, the accelerator, the writer and the loop's state, held together,
    so that each step reads them from here."""

    def __init__(
        self, setup: Setup, accelerator: Any, writer: RunWriter, progress: bool, stop: ckpt.StopFlag
    ) -> None:
        self.setup, self.cfg, self.accelerator, self.writer = setup, setup.cfg, accelerator, writer
        self.out = writer.out
        self.main = accelerator.is_main_process
        self.progress = progress
        self.stop = stop
        self.state = LoopState(started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights, when not the last
        self.rows: list[EpochRow] = []
        self.real_tokens = sum(len(t) for t in setup.tokens["train"])
        self.fit_start = 0.0

    def run(self, resume: bool) -> None:
        """Every epoch (from the checkpoint when resuming), then the test evaluation and the record."""
        table = EpochTable(self.main and self.progress)
        restored = ckpt.load(self.accelerator, self.out) if resume else None
        if restored:
            saved, self.best_state = restored
            self.state = LoopState.restore(saved)
            self.state.resumed += 1
            self.rows = [r for r in read_epochs(self.out) if r.epoch < self.state.epoch]
            if self.main:
                tqdm.write(f"resuming {self.out} at epoch {self.state.epoch}, step {self.state.step}")
        for row in self.rows:
            table.row(row)
        rss_before = rss_mb()
        state = self.state
        # a cached-features run's encoder pass (every split, done in Setup) counts as training time
        self.fit_start = time.perf_counter() - state.elapsed - self.setup.encode_seconds
        while state.epoch <= self.cfg.epochs and not state.done:
            epoch_start = time.perf_counter() - state.epoch_elapsed
            loss_total, seen_all = self.train_epoch()
            row = self.validate(loss_total, seen_all, time.perf_counter() - epoch_start)
            self.rows.append(row)
            table.row(row)
            self.setup.tracker.epoch(row)
            self.writer.write_epochs(self.rows)
            self.end_epoch(row)
        state.elapsed = time.perf_counter() - self.fit_start
        self.finish(rss_before)

    def evaluate(self, split: str, rows: list[int] | None = None, progress: str | None = None) -> np.ndarray:
        shown = progress if self.main and self.progress else None
        return _evaluate(self.accelerator, self.setup, split, rows, shown)

    def train_epoch(self) -> tuple[float, int]:
        """The optimizer steps of one epoch (from `state.step` when resumed mid-epoch); returns the
        summed training loss and example count over all processes. Writes mid-epoch checkpoints, and a
        final one when a signal asks to stop."""
        setup, accelerator, state, cfg = self.setup, self.accelerator, self.state, self.cfg
        epoch = state.epoch
        epoch_start = time.perf_counter() - state.epoch_elapsed
        setup.model.train()
        setup.sampler.set_epoch(epoch)
        loss_sum = torch.tensor(state.loss_sum, device=accelerator.device)
        seen = torch.tensor(float(state.seen), device=accelerator.device)
        skip = state.step
        batches = setup.sampler.batches()
        bar = tqdm(
            batches[skip:],
            desc=f"epoch {epoch}/{cfg.epochs}",
            leave=False,
            disable=not (self.main and self.progress),
            initial=skip,
            total=len(batches),
        )
        for step, indices in enumerate(bar, start=skip + 1):
            ce, n, padded = train_step(setup, accelerator, indices, (epoch - 1) * len(batches) + step)
            loss_sum += ce  # no host sync per step
            seen += n
            state.padded += padded
            if step % 25 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{ce.item() / max(n, 1):.3f}")
            stopping = _stop_requested(accelerator, self.stop)
            if stopping or (
                cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0 and step < len(batches)
            ):
                state.step, state.loss_sum, state.seen = step, float(loss_sum.item()), int(seen.item())
                state.elapsed = time.perf_counter() - self.fit_start
                state.epoch_elapsed = time.perf_counter() - epoch_start
                ckpt.save(accelerator, self.out, asdict(state), self.best_state)
                if stopping:
                    raise Interrupted(
                        f"stopped at epoch {epoch}, step {step} with a checkpoint. Resume with: intentlab train --resume {self.out}"
                    )
        bar.close()
        loss_total = float(accelerator.reduce(loss_sum, reduction="sum").item())
        return loss_total, int(accelerator.reduce(seen, reduction="sum").item())

    def validate(self, loss_total: float, seen_all: int, epoch_seconds: float) -> EpochRow:
        """Score the validation split and make the epoch's row."""
        setup, state, accelerator = self.setup, self.state, self.accelerator
        t0 = time.perf_counter()
        val = metrics(setup.y["validation"], self.evaluate("validation"))
        return EpochRow(
            epoch=state.epoch,
            train_loss=loss_total / max(seen_all, 1),
            val_loss=val["loss"],
            val_accuracy=val["accuracy"],
            val_f1_macro=val["f1_macro"],
            val_f1_weighted=val["f1_weighted"],
            epoch_seconds=epoch_seconds,
            train_examples_per_second=seen_all / epoch_seconds,
            lr=setup.scheduler.get_last_lr()[0],
            eval_seconds=time.perf_counter() - t0,
            elapsed_seconds=time.perf_counter() - self.fit_start,
            padding_fraction=1 - self.real_tokens / (state.padded * accelerator.num_processes)
            if state.padded
            else None,
            peak_memory_mb=peak_memory_mb(accelerator.device)[0],
        )

    def end_epoch(self, row: EpochRow) -> None:
        """Pruning and early stopping decisions, the best epoch's weights, and the epoch-boundary
        checkpoint."""
        setup, state, cfg = self.setup, self.state, self.cfg
        epoch = state.epoch
        if setup.on_epoch is not None and setup.on_epoch(row):
            state.done = state.pruned = True
        if row.val_accuracy > state.best_acc:
            state.best_acc, state.best_epoch, state.bad_epochs = row.val_accuracy, epoch, 0
            # the last epoch's weights are the model's own: no copy needed
            self.best_state = (
                trainable_state(self.accelerator.unwrap_model(setup.model)) if epoch < cfg.epochs else None
            )
        else:
            state.bad_epochs += 1
            state.done = state.done or bool(cfg.patience and state.bad_epochs >= cfg.patience)
        state.epoch, state.step, state.loss_sum, state.seen, state.padded = epoch + 1, 0, 0.0, 0, 0
        state.epoch_elapsed, state.elapsed = 0.0, time.perf_counter() - self.fit_start
        if state.epoch <= cfg.epochs and not state.done:  # resumable from every epoch boundary
            ckpt.save(self.accelerator, self.out, asdict(state), self.best_state)

    def finish(self, rss_before: float) -> None:
        """Best weights back, test evaluation, then model, plots and the record through the writer."""
        setup, state, cfg, ds, accelerator = self.setup, self.state, self.cfg, self.setup.ds, self.accelerator
        unwrapped = accelerator.unwrap_model(setup.model)
        if state.best_epoch != self.rows[-1].epoch and self.best_state is not None:
            load_trainable_state(unwrapped, self.best_state)  # early stopping: the best epoch's weights
        if setup.cached is not None:
            unwrapped = setup.full_model  # the head trained on cached features is part of it
        test_logits = self.evaluate("test", progress="test")
        train_acc, train_rows = train_accuracy(
            setup.y["train"], cfg.seed, lambda rows: self.evaluate("train", rows, progress="train accuracy")
        )
        peak, memory_kind = peak_memory_mb(accelerator.device)
        dataset = {
            **D.describe(ds),
            "source": ds.source,
            "train_token_lengths": length_histogram(setup.tokens["train"]),
        }
        result = RunResult(
            run=run_info(
                cfg,
                ds,
                state.started,
                cfg.model,
                dataset,
                accelerator.num_processes,
                str(accelerator.device),
                state.resumed,
            ),
            train=TrainInfo(
                epochs=self.rows,
                best_epoch=state.best_epoch,
                best_val_accuracy=state.best_acc,
                stopped_early=len(self.rows) < cfg.epochs,
                pruned=state.pruned,
                trainable_params=setup.trainable,
                total_params=setup.total,
                train_seconds=state.elapsed,
                peak_memory_mb=peak,
                memory_kind=memory_kind,
                rss_before_train_mb=rss_before,
                train_tokens_per_epoch=self.real_tokens,
                checkpoint_bytes=0,
                train_accuracy=train_acc,
                train_accuracy_examples=train_rows,
                frozen_layers_cached=setup.from_layer,
            ),
            test=Scores(**metrics(setup.y["test"], test_logits, ds.labels)),
            meta=provenance(),
            teacher=setup.teacher.info if setup.teacher is not None else None,
        )
        if self.main:
            result.train.checkpoint_bytes = self.writer.save_model(unwrapped, cfg, setup.tokenizer, ds.labels)
            self.writer.write_plots(self.rows, f"{cfg.method} · {Path(cfg.model).name} · seed {cfg.seed}")
            confidence = softmax(test_logits).max(axis=1).tolist()
            self.writer.write_record(
                result, ds.labels, setup.y["test"], test_logits.argmax(1).tolist(), confidence, ds.test.texts
            )
            setup.tracker.finish(result, self.out)
        accelerator.wait_for_everyone()


def _stop_requested(accelerator: Any, stop: ckpt.StopFlag) -> bool:
    """True on every process when any process got SIGINT/SIGTERM (so all checkpoint together)."""
    if accelerator.num_processes == 1:
        return stop.signal is not None
    flag = torch.tensor(1.0 if stop.signal is not None else 0.0, device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
