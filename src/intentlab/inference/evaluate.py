"""`intentlab evaluate RUN`: reload a run and score it on a split of the data it was trained on.

The data split is rebuilt from the run's recorded config (same files, same seeded carve-out); the
scores come from the one inference path, so they equal what training recorded on the same machine
and precision.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from intentlab.errors import UserError


def run_dataset(run: Path, data_dir: str | None = None, other_data: bool = False) -> tuple[Any, Any]:
    """The dataset (same split) and config a run was trained with.

    The data files' checksums and the split's fingerprint must match what the run recorded; data
    that changed since is refused (a UserError) unless `other_data` says to score it anyway."""
    from intentlab.data import dataset_for
    from intentlab.runs import load_result, read_config
    from intentlab.training.measure import split_fingerprint

    result = load_result(run)  # refuses incomplete or foreign runs with a clear message
    cfg = read_config(run)
    recorded = result.run.dataset.get("source", {}).get("files", {})
    ds = dataset_for(cfg, data_dir or _recorded_banking77(cfg, recorded))
    if not other_data:
        changed = [
            split
            for split, f in ds.source["files"].items()
            if split in recorded and recorded[split].get("sha256") != f["sha256"]
        ]
        if changed or split_fingerprint(ds) != result.run.split_fingerprint:
            what = f"the {' and '.join(changed)} file(s) changed" if changed else "the split differs"
            raise UserError(
                f"the data is not what {run} was trained and tested on ({what} since). Point --data-dir at "
                "the original data, or pass --other-data to score this data anyway."
            )
    return ds, cfg


def _recorded_banking77(cfg: Any, recorded: dict[str, Any]) -> str | None:
    """The folder a Banking77 run read its train.csv and test.csv from, when nothing else says where to
    look now and both files are still there with the checksums the run recorded: a run scored in a new
    shell does not go looking for a download. (A stranger's run can name any path; only files whose
    contents match its checksums are ever read through it.)"""
    from intentlab.data.loading import sha256_of

    if cfg.data != "banking77" or cfg.data_dir or os.environ.get("INTENTLAB_DATA_DIR"):
        return None
    try:
        files = {
            split: (Path(recorded[split]["path"]), str(recorded[split]["sha256"]))
            for split in ("train", "test")
        }
    except (KeyError, TypeError):
        return None
    folders = {path.parent for path, _ in files.values()}
    if len(folders) != 1 or any(path.name != f"{split}.csv" for split, (path, _) in files.items()):
        return None
    if not all(path.is_file() and sha256_of(path) == sha for path, sha in files.values()):
        return None
    return str(folders.pop())


def evaluate_run(
    run: str | Path, split: str = "test", data_dir: str | None = None, other_data: bool = False
) -> dict[str, Any]:
    """Reload a run and evaluate it on `split` of the data it was trained on (same carve-out)."""
    from intentlab.inference.metrics import metrics
    from intentlab.inference.predictor import Predictor

    run = Path(run)
    ds, cfg = run_dataset(run, data_dir, other_data)
    predictor = Predictor.from_run(run, batch_size=cfg.eval_batch_size)
    if predictor.labels != ds.labels:
        raise UserError(
            f"the labels of {run} differ from those of its data now. Evaluate on the data it was trained on."
        )
    part = ds.split(split)
    out = predictor.outputs(part.texts, features=predictor.decider.needs_features)
    scores = metrics(ds.ids(part), out.logits, ds.labels)
    if not predictor.probabilistic:
        scores["loss"] = None  # SVM margins are not probabilities: no cross-entropy (as in training)
    if predictor.ood is not None:  # the same decisions predict and serve make, scored on this split
        import numpy as np

        from intentlab.inference.ood_run import scorer_metrics

        state = predictor.ood
        s = state.score(state.chosen, out.logits, out.features)
        y = np.asarray(ds.ids(part))
        ood = scorer_metrics(y, out.logits.argmax(1), s, state.thresholds[state.chosen], part.groups)
        scores["ood"] = {
            "scorer": state.chosen,
            **{k: v for k, v in ood.items() if k not in ("roc", "tradeoff")},
        }
        scores["out_of_scope"] = (s < state.thresholds[state.chosen]).tolist()
    return scores
