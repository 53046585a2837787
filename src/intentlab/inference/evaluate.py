"""`intentlab evaluate RUN`: reload a run and score it on a split of the data it was trained on.

The data split is rebuilt from the run's recorded config (same files, same seeded carve-out); the
scores come from the one inference path, so they equal what training recorded on the same machine
and precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentlab.errors import UserError


def run_dataset(run: Path, data_dir: str | None = None) -> tuple[Any, Any]:
    """The dataset (same split) and config a run was trained with."""
    from intentlab.data import dataset_for
    from intentlab.runs import load_result, read_config

    load_result(run)  # refuses incomplete or foreign runs with a clear message
    cfg = read_config(run)
    return dataset_for(cfg, data_dir), cfg


def evaluate_run(run: str | Path, split: str = "test", data_dir: str | None = None) -> dict[str, Any]:
    """Reload a run and evaluate it on `split` of the data it was trained on (same carve-out)."""
    from intentlab.inference.metrics import metrics
    from intentlab.inference.predictor import Predictor

    run = Path(run)
    ds, cfg = run_dataset(run, data_dir)
    predictor = Predictor.from_run(run, batch_size=cfg.eval_batch_size)
    if predictor.labels != ds.labels:
        raise UserError(
            f"the labels of {run} differ from those of its data now. Evaluate on the data it was trained on."
        )
    part = ds.split(split)
    scores = metrics(ds.ids(part), predictor.logits(part.texts), ds.labels)
    if not predictor.probabilistic:
        scores["loss"] = None  # SVM margins are not probabilities: no cross-entropy (as in training)
    return scores
