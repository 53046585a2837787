"""Which function trains a run of each method: one per regime of the method table (`methods.REGIMES`).

    trainer_for("lora")(cfg, "runs/lora")      # the one training loop
    trainer_for("baseline")(cfg, "runs/tfidf") # the TF-IDF fit

Every trainer takes the same arguments and ends in the run writer (`training/writer.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from intentlab.methods import BASELINE, LOOP, SETFIT, get
from intentlab.runs.record import RunResult
from intentlab.training.baseline import train_baseline
from intentlab.training.loop import train
from intentlab.training.setfit import train_setfit

# a trainer: (cfg, out, overwrite=False, resume=False, progress=True, on_epoch=None) -> RunResult, as
# `training.loop.train`; `on_epoch(row)` returning True stops the run (a sweep's pruner)
Trainer = Callable[..., RunResult]
TRAINERS: dict[str, Trainer] = {LOOP: train, BASELINE: train_baseline, SETFIT: train_setfit}


def trainer_for(method: str) -> Trainer:
    """The function that trains a run of `method`."""
    return TRAINERS[get(method).regime]
