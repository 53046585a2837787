"""The classical floor: TF-IDF word + character n-grams with a linear SVM (scikit-learn).

Same data split, same metrics, the same typed run record and run-folder contract as the neural
methods, so reports put it beside them. A fine-tuned model that does not beat it is not worth its
compute. Its model is stored without pickle (see `models/tfidf.py`).

    intentlab train --method baseline --out runs/baseline
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from intentlab import data as D
from intentlab.config import Config
from intentlab.inference.engine import softmax
from intentlab.inference.metrics import metrics
from intentlab.models import tfidf
from intentlab.runs.record import EpochRow, RunResult, Scores
from intentlab.training.measure import one_pass_train_info, reset_peak_rss, run_info, train_accuracy
from intentlab.training.provenance import provenance
from intentlab.training.writer import RunWriter


def train_baseline(
    cfg: Config,
    out: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochRow], bool] | None = None,
) -> RunResult:
    """Fit the baseline on train, report validation and test metrics, write a run folder.

    The fit takes seconds and keeps no checkpoint, so resuming an interrupted baseline run fits it
    again from its recorded config, in place. Its one "epoch" row goes to `on_epoch` (a sweep's trial)."""
    reset_peak_rss()
    with RunWriter(out, overwrite or resume) as writer:
        ds = D.dataset_for(cfg)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        pipe = tfidf.make_pipeline(cfg.seed, cfg.svm_c).fit(ds.train.texts, ds.ids(ds.train))
        fit_seconds = time.perf_counter() - t0
        val = metrics(ds.ids(ds.validation), tfidf.margins(pipe, ds.validation.texts))
        test_margins = tfidf.margins(pipe, ds.test.texts)
        test = metrics(ds.ids(ds.test), test_margins, ds.labels)
        test["loss"] = None  # SVM margins are not probabilities: no cross-entropy
        writer.claim(cfg)  # validated input never leaves a folder behind
        D.print_warnings(ds)
        size = writer.save_model(pipe, cfg, None, ds.labels)
        result = RunResult(
            run=run_info(cfg, ds, started, tfidf.NAME, {**D.describe(ds), "source": ds.source}),
            train=one_pass_train_info(
                val,
                fit_seconds,
                len(ds.train),
                tfidf.parameter_count(pipe),
                size,
                train_accuracy(
                    ds.ids(ds.train),
                    cfg.seed,
                    lambda rows: tfidf.margins(pipe, [ds.train.texts[i] for i in rows]),
                ),
                val_loss=None,  # SVM margins are not probabilities: no cross-entropy
                lr=None,
            ),
            test=Scores(**test),
            meta=provenance(),
        )
        if on_epoch is not None:
            result.train.pruned = bool(on_epoch(result.train.epochs[0]))
        # a softmax of SVM margins: ranks, not calibrated
        confidence = softmax(test_margins).max(axis=1).tolist()
        writer.write_record(
            result, ds.labels, ds.ids(ds.test), test_margins.argmax(1).tolist(), confidence, ds.test.texts
        )
        return writer.finish(cfg, ds)
