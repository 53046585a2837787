"""Which function trains a run of each method: one per regime of the method table (`methods.REGIMES`).

    trainer_for("lora")(cfg, "runs/lora")      # the one training loop
    trainer_for("baseline")(cfg, "runs/tfidf") # the TF-IDF fit

Every trainer takes the same arguments and ends in the run writer (`training/writer.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from intentlab.config import Config
from intentlab.methods import BASELINE, LOOP, SETFIT, get
from intentlab.runs.record import EpochRow, RunResult
from intentlab.training.baseline import train_baseline
from intentlab.training.loop import train
from intentlab.training.setfit import train_setfit


class Trainer(Protocol):
    def __call__(
        self,
        cfg: Config,
        out: str | Path,
        overwrite: bool = False,
        resume: bool = False,
        progress: bool = True,
        on_epoch: Callable[[EpochRow], bool] | None = None,
    ) -> RunResult: ...


TRAINERS: dict[str, Trainer] = {LOOP: train, BASELINE: train_baseline, SETFIT: train_setfit}


def trainer_for(method: str) -> Trainer:
    """The function that trains a run of `method`."""
    return TRAINERS[get(method).regime]
