"""The one run writer: every trainer, and `intentlab ood`, ends a run here, in one order.

    with RunWriter(out, overwrite=overwrite) as w:   # checks and locks the folder; nothing written yet
        ...                                           # validate, fit (bad input leaves nothing behind)
        w.claim(cfg)                                  # the folder (an old run moved aside) + config.yaml
        w.write_teacher(teacher)                      # teacher/ of a distilled run
        w.save_model(model, cfg, tokenizer, labels)   # model/ (atomic), as the method's storage kind saves
        w.write_record(result, ...)                   # metrics.jsonl, test_predictions.json, result.json last
        result = w.finish(cfg, ds)                    # ood/ when wanted, model cards, permissions, commit

An exception inside the block drops the half-written folder and puts back the run that `--overwrite`
replaced (`folders.OutputDir`), except for a training run interrupted with a checkpoint to resume.
`RunWriter.refit_ood(run)` is `intentlab ood`: the same last steps on a finished run, in place, under
its lock. `ood/` is written as a whole (a temporary folder renamed into place), and result.json, the
test decisions and the cards follow it, so a killed refit never leaves them out of step.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from intentlab.folders import (
    FolderLock,
    OutputDir,
    real_path,
    recover_replaced,
    share_modes,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from intentlab.runs.cards import write_run_cards
from intentlab.runs.files import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    MODEL,
    OOD,
    OOD_DECISIONS,
    PLOTS,
    PREDICTIONS,
    RESULT,
    RUN_ENTRIES,
    RUN_MARKER,
    TEACHER,
)
from intentlab.runs.record import EpochRow, RunResult, load_result
from intentlab.training import checkpoint


class RunWriter:
    """Writes one run folder. `main` is False on the other processes of a distributed run: they check
    the folder with the main process (so that all fail together) and write nothing."""

    def __init__(
        self, out: str | Path, overwrite: bool = False, resume: bool = False, main: bool = True
    ) -> None:
        self.out = real_path(out)  # the real folder: an alias (symlink) takes the same lock
        self.main = main
        self.resume = resume
        self.folder: OutputDir | None = None
        self.lock: FolderLock | None = None
        if resume:
            if main:
                self.lock = FolderLock(self.out).acquire(str(self.out))
                for note in recover_replaced(self.out, RUN_MARKER, RESULT):
                    print(f"intentlab: {note}", file=sys.stderr)
        else:
            self.folder = OutputDir(
                self.out, overwrite, main, marker=RUN_MARKER, entries=RUN_ENTRIES, complete=RESULT
            )

    # ------------------------------------------------------------------ the steps, in order
    def claim(self, cfg: Any) -> Path:
        """Create the folder (moving an existing one aside with --overwrite) and write config.yaml.
        Call once every input is validated. A resumed run keeps its folder and config."""
        if self.main and not self.resume:
            assert self.folder is not None
            self.folder.claim()
            write_text_atomic(self.out / CONFIG, cfg.to_yaml())
        return self.out

    def write_teacher(self, teacher: Any) -> None:
        """teacher/: a distilled run's teacher logits and where they came from (kept across --resume)."""
        from intentlab.training import distill

        if self.main and not (self.resume and teacher.info.reused):  # a resumed run has them already
            distill.save(teacher, self.out / TEACHER)

    def write_epochs(self, rows: list[EpochRow]) -> None:
        """metrics.jsonl: the epochs so far (rewritten after each, so a crash keeps them)."""
        if self.main:
            write_jsonl_atomic(self.out / METRICS, [asdict(r) for r in rows])

    def save_model(self, model: Any, cfg: Any, tokenizer: Any, labels: list[str]) -> int:
        """model/: weights as the method's storage kind saves them, tokenizer, label map. Returns the
        weights' bytes (the record's checkpoint size)."""
        from intentlab.models.io import save_model

        return save_model(model, cfg, tokenizer, labels, self.out / MODEL) if self.main else 0

    def write_plots(self, rows: list[EpochRow], title: str) -> None:
        from intentlab.reporting.plots import training_curves

        if self.main:
            training_curves([asdict(r) for r in rows], self.out / PLOTS / "training.png", title)

    def write_record(
        self,
        result: RunResult,
        labels: list[str],
        y_true: list[int],
        y_pred: list[int],
        confidence: list[float] | None = None,
        texts: list[str] | None = None,
    ) -> None:
        """metrics.jsonl, test_predictions.json (in-scope test rows: ids, top probability and text, for
        paired tests and the report's error analysis), then result.json (written by no other code)."""
        if not self.main:
            return
        self.write_epochs(result.train.epochs)
        inscope = [i for i, y in enumerate(y_true) if y >= 0]  # closed-set pairs; out-of-scope rows: ood/
        preds: dict[str, Any] = {
            "labels": list(labels),
            "y_true": [y_true[i] for i in inscope],
            "y_pred": [y_pred[i] for i in inscope],
        }
        if confidence is not None:
            preds["confidence"] = [round(float(confidence[i]), 5) for i in inscope]
        if texts is not None:
            preds["texts"] = [texts[i] for i in inscope]
        write_json_atomic(self.out / PREDICTIONS, preds)
        _write_result(self.out, result)

    def finish(self, cfg: Any, ds: Any) -> RunResult:
        """The run's last steps: out-of-scope scorers when its data or config asks for them, the model
        cards, the folder's permissions, then commit (the replaced run is deleted, the lock released)."""
        from intentlab.inference.ood_fit import wants_ood

        if self.main:
            if wants_ood(cfg, ds):
                _write_ood(self.out, ds, cfg)
            write_run_cards(self.out)
            share_modes(self.out)
            checkpoint.remove(self.out)  # the run is finished: nothing to resume
        result = load_result(self.out) if self.main else None
        self.commit()
        return result  # type: ignore[return-value]  # None only on non-main processes, which ignore it

    def commit(self) -> None:
        if self.folder is not None:
            self.folder.commit()
        self.release()

    def abort(self) -> None:
        """Drop the half-written run (or put back the one --overwrite replaced), unless it is a run
        that a checkpoint makes resumable and nothing was replaced."""
        if self.folder is not None:
            resumable = (self.out / CHECKPOINT).exists() and self.folder.backup is None
            if resumable:
                self.folder.release()
            else:
                self.folder.abort()
        self.release()

    def release(self) -> None:
        if self.folder is not None:
            self.folder.release()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        from intentlab.errors import Interrupted

        if kind is None:
            self.release()
        elif issubclass(kind, Interrupted):
            self.release()  # the folder stays, with its checkpoint
        else:
            self.abort()

    # ------------------------------------------------------------------ intentlab ood
    @staticmethod
    def refit_ood(
        run: str | Path, data_dir: str | None = None, k: int | None = None, target_recall: float | None = None
    ) -> RunResult:
        """`intentlab ood RUN`: fit (or refit) a finished run's scorers, thresholds and calibration, in
        place under its lock; returns the updated record."""
        from intentlab.data.run_data import run_dataset

        run = real_path(run)
        with FolderLock(run).acquire(str(run)):
            ds, cfg = run_dataset(run, data_dir)
            _write_ood(run, ds, cfg, k, target_recall)
            write_run_cards(run)  # the card states the threshold
            share_modes(run / OOD)
            return load_result(run)


def _write_result(run: Path, result: RunResult) -> None:
    write_json_atomic(run / RESULT, result.to_dict())


def _write_ood(
    run: Path, ds: Any, cfg: Any, k: int | None = None, target_recall: float | None = None
) -> None:
    """Fit the scorers, write ood/ as a whole (a temporary folder renamed into place), then the
    record's `ood` section."""
    from intentlab.inference import ood as O
    from intentlab.inference.ood_fit import fit_ood

    fit = fit_ood(run, ds, cfg, k, target_recall)
    tmp = run / f".{OOD}.tmp-{time.time_ns()}"
    try:
        O.save(fit.state, tmp, {"chosen": fit.summary.chosen, "rule": fit.summary.rule})
        write_json_atomic(tmp / OOD_DECISIONS, fit.decisions)
        old = run / f".{OOD}.old-{time.time_ns()}"
        if (run / OOD).exists():
            (run / OOD).rename(old)
        tmp.rename(run / OOD)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_result(
        run, replace(load_result(run), ood=replace(fit.summary, state_sha256=O.checksum(run / OOD)))
    )
