"""The classical floor: TF-IDF word + character n-grams with a linear SVM (scikit-learn).

Same data split, same metrics and the same run-directory contract as the neural methods, so reports put
it beside them. A fine-tuned model that does not beat it is not worth its compute.

    intentlab train --method baseline --out runs/baseline
"""

from __future__ import annotations

import pickle
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from intentlab import data as D
from intentlab.config import Config
from intentlab.errors import UserError
from intentlab.inference.metrics import metrics
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
from intentlab.training.measure import peak_memory_mb, reset_peak_rss, split_fingerprint

MODEL_FILE = "baseline.pkl"


def make_pipeline(seed: int = 0) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True),
    )
    return make_pipeline(features, LinearSVC(C=0.5, random_state=seed))


def _scores(pipe: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(pipe.decision_function(texts), dtype=np.float64)


def load_baseline(run: str | Path) -> tuple[Any, list[str]]:
    """The fitted pipeline and label list of a baseline run. The file is a pickle: load only runs you trust."""
    path = Path(run) / "model" / MODEL_FILE
    try:
        blob = pickle.loads(path.read_bytes())
        return blob["pipeline"], list(blob["labels"])
    except FileNotFoundError:
        raise UserError(f"{path} not found. Train the baseline run again.") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError):
        raise UserError(f"{path} is corrupt. Train the baseline run again.") from None


def is_baseline_run(run: str | Path) -> bool:
    return (Path(run) / "model" / MODEL_FILE).is_file()


def train_baseline(
    cfg: Config, out: str | Path, overwrite: bool = False, resume: bool = False, **_: Any
) -> dict[str, Any]:
    """Fit the baseline on train, report validation and test metrics, write a run folder.

    The fit takes seconds and keeps no checkpoint, so resuming an interrupted baseline run fits it
    again from its recorded config, in place."""
    overwrite = overwrite or resume
    reset_peak_rss()
    run_dir = RunDir(out, overwrite)
    ds = D.dataset_for(cfg)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    pipe = make_pipeline(cfg.seed).fit(ds.train.texts, ds.ids(ds.train))
    fit_seconds = time.perf_counter() - t0
    val = metrics(ds.ids(ds.validation), _scores(pipe, ds.validation.texts))
    test_scores = _scores(pipe, ds.test.texts)
    test = metrics(ds.ids(ds.test), test_scores, ds.labels)
    test["loss"] = None  # SVM margins are not probabilities: no cross-entropy
    svm = pipe[-1]
    n_params = int(svm.coef_.size + svm.intercept_.size)
    row = {
        "epoch": 1,
        "train_loss": None,
        "val_loss": None,
        "val_accuracy": val["accuracy"],
        "val_f1_macro": val["f1_macro"],
        "val_f1_weighted": val["f1_weighted"],
        "epoch_seconds": fit_seconds,
        "train_examples_per_second": len(ds.train) / fit_seconds,
        "lr": None,
        "elapsed_seconds": fit_seconds,
    }
    out = run_dir.claim()
    D.print_warnings(ds)
    try:
        write_text_atomic(out / CONFIG, cfg.to_yaml())
        write_jsonl_atomic(out / METRICS, [row])
        (out / "model").mkdir()
        blob = pickle.dumps({"pipeline": pipe, "labels": ds.labels})
        (out / "model" / MODEL_FILE).write_bytes(blob)
        write_json_atomic(
            out / PREDICTIONS,
            {"labels": ds.labels, "y_true": ds.ids(ds.test), "y_pred": test_scores.argmax(1).tolist()},
        )
        result = {
            "run": {
                "method": "baseline",
                "model": "tfidf-word1-2+char2-5-linearsvc",
                "seed": cfg.seed,
                "data": ds.name,
                "split_fingerprint": split_fingerprint(ds),
                "started_at": started.isoformat(timespec="seconds"),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "num_processes": 1,
                "device": "cpu",
                "config": cfg.to_dict(),
                "dataset": {**D.describe(ds), "source": ds.source},
            },
            "train": {
                "epochs": [row],
                "epochs_run": 1,
                "best_epoch": 1,
                "best_val_accuracy": val["accuracy"],
                "stopped_early": False,
                "trainable_params": n_params,
                "total_params": n_params,
                "trainable_percent": 100.0,
                "train_seconds": fit_seconds,
                "mean_epoch_seconds": fit_seconds,
                "train_examples_per_second": row["train_examples_per_second"],
                "peak_memory_mb": peak_memory_mb()[0],
                "memory_kind": "process_peak_rss",
                "checkpoint_bytes": len(blob),
            },
            "test": test,
            "meta": provenance(),
        }
        write_json_atomic(out / RESULT, result)
    except BaseException:
        run_dir.abort()
        raise
    run_dir.commit()
    return result
