"""`intentlab evaluate RUN`: reload a run and score it on a split of the data it was trained on.

The data split is rebuilt from the run's recorded config (same files, same seeded carve-out); the
scores come from the one inference path, so they equal what training recorded on the same machine
and precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentlab.data.run_data import run_dataset
from intentlab.errors import UserError


def evaluate_run(
    run: str | Path, split: str = "test", data_dir: str | None = None, other_data: bool = False
) -> dict[str, Any]:
    """Reload a run and evaluate it on `split` of the data it was trained on (same carve-out)."""
    from intentlab.inference.metrics import metrics, scorer_metrics
    from intentlab.inference.opener import open_run

    run = Path(run)
    ds, cfg = run_dataset(run, data_dir, other_data)
    predictor = open_run(run, batch_size=cfg.eval_batch_size)
    if predictor.labels != ds.labels:
        raise UserError(
            f"the labels of {run} differ from those of its data now. Evaluate on the data it was trained on."
        )
    part = ds.split(split)
    out = predictor.outputs(part.texts, predictor.decider.needs_features, progress=f"evaluate {split}")
    scores = metrics(ds.ids(part), out.logits, ds.labels)
    if not predictor.probabilistic:
        scores["loss"] = None  # SVM margins are not probabilities: no cross-entropy (as in training)
    if predictor.ood is not None:  # the same decisions predict and serve make, scored on this split
        import numpy as np

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
