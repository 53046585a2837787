"""The classical floor: TF-IDF word + character n-grams with a linear SVM (scikit-learn).

Same data split, same metrics, the same typed run record and run-folder contract as the neural
methods, so reports put it beside them. A fine-tuned model that does not beat it is not worth its
compute. Its model is stored without pickle (see `models/tfidf.py`).

    intentlab train --method baseline --out runs/baseline
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from intentlab import data as D
from intentlab.config import Config
from intentlab.folders import OutputDir, write_text_atomic
from intentlab.inference.engine import softmax
from intentlab.inference.metrics import metrics
from intentlab.inference.ood_run import fit_run_ood, wants_ood
from intentlab.models import tfidf
from intentlab.models.io import write_model_info
from intentlab.models.methods import TFIDF
from intentlab.runs import CONFIG, RunResult, Scores, provenance, write_record
from intentlab.training.measure import one_pass_train_info, reset_peak_rss, run_info, train_accuracy


def train_baseline(
    cfg: Config, out: str | Path, overwrite: bool = False, resume: bool = False, **_: Any
) -> RunResult:
    """Fit the baseline on train, report validation and test metrics, write a run folder.

    The fit takes seconds and keeps no checkpoint, so resuming an interrupted baseline run fits it
    again from its recorded config, in place."""
    reset_peak_rss()
    run_dir = OutputDir(out, overwrite or resume)
    try:
        result = _fit_and_write(cfg, run_dir)
    except BaseException:
        run_dir.abort()
        raise
    run_dir.commit()
    return result


def _fit_and_write(cfg: Config, run_dir: OutputDir) -> RunResult:
    """Fit, score, then claim the folder and write the run (validated input never leaves a folder)."""
    ds = D.dataset_for(cfg)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    pipe = tfidf.make_pipeline(cfg.seed).fit(ds.train.texts, ds.ids(ds.train))
    fit_seconds = time.perf_counter() - t0
    val = metrics(ds.ids(ds.validation), tfidf.margins(pipe, ds.validation.texts))
    test_margins = tfidf.margins(pipe, ds.test.texts)
    test = metrics(ds.ids(ds.test), test_margins, ds.labels)
    test["loss"] = None  # SVM margins are not probabilities: no cross-entropy
    n_params = tfidf.parameter_count(pipe)
    out = run_dir.claim()
    D.print_warnings(ds)
    write_text_atomic(out / CONFIG, cfg.to_yaml())
    model_dir = out / "model"
    model_dir.mkdir()
    size = tfidf.save(pipe, model_dir)
    write_model_info(model_dir, cfg, ds.labels, weights=TFIDF)
    result = RunResult(
        run=run_info(cfg, ds, started, tfidf.NAME, {**D.describe(ds), "source": ds.source}),
        train=one_pass_train_info(
            val,
            fit_seconds,
            len(ds.train),
            n_params,
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
    confidence = softmax(test_margins).max(axis=1).tolist()  # a softmax of SVM margins: ranks, not calibrated
    write_record(
        out, result, ds.labels, ds.ids(ds.test), test_margins.argmax(1).tolist(), confidence, ds.test.texts
    )
    if wants_ood(cfg, ds):
        from intentlab.runs import load_result

        fit_run_ood(out, locked=True)
        result = load_result(out)
    from intentlab.deploy.card import write_run_cards

    write_run_cards(out)
    return result
