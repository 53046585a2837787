"""The run record: the typed `result.json` of a run and how every reader gets it back.

`RunResult` (with `EpochRow` per epoch, `Scores` for the test split and `OodSummary` for the
out-of-scope section) is the one typed record of a run. It is written by the run writer
(`training/writer.py`) and read back by `load_result()` for every reader (report, compare, serve,
evaluate), records of schema 1 (intentlab before the typed record) included. `config.yaml` is read
only through `read_config()`.

This module imports neither torch nor training code: reports and serving read runs through it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from intentlab.errors import UserError
from intentlab.runs.files import CONFIG, METRICS, RESULT

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)  # 1: records written before the typed record; same keys, some absent
EPOCH_KEYS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_f1_macro",
    "val_f1_weighted",
    "epoch_seconds",
    "train_examples_per_second",
    "lr",
)


# ----------------------------------------------------------------------------- the typed record
def _from(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass `cls` from a mapping, ignoring keys it does not know (older or newer writers)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class EpochRow:
    """One line of metrics.jsonl: the study's per-epoch numbers and what they cost."""

    epoch: int
    train_loss: float | None  # None for the baseline (no loss)
    val_loss: float | None
    val_accuracy: float
    val_f1_macro: float
    val_f1_weighted: float
    epoch_seconds: float
    train_examples_per_second: float
    lr: float | None
    eval_seconds: float | None = None
    elapsed_seconds: float | None = None
    padding_fraction: float | None = None
    peak_memory_mb: float | None = None


@dataclass
class Scores:
    """Metrics of one split: loss (None without probabilities), accuracy, macro/weighted F1, n."""

    accuracy: float
    f1_macro: float
    f1_weighted: float
    n: int
    loss: float | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class RunInfo:
    """What was trained, on what, and where."""

    method: str
    model: str
    seed: int
    data: str
    split_fingerprint: str
    config: dict[str, Any]
    dataset: dict[str, Any]
    started_at: str = ""
    finished_at: str = ""
    num_processes: int = 1
    device: str = "cpu"
    resumed: int = 0
    test_fingerprint: str | None = None  # labels + test only: what runs of a learning curve share

    @property
    def name(self) -> str:
        """The run's label in reports: its config `name` (else its method), and `@SIZE` for a run on a
        training sample (a learning curve's cell)."""
        base = self.config.get("name") or self.method
        size = self.config.get("train_size")
        return f"{base}@{size}" if size not in (None, "all") else base


@dataclass
class TrainInfo:
    """How training went and what it cost."""

    epochs: list[EpochRow]
    best_epoch: int
    best_val_accuracy: float
    trainable_params: int
    total_params: int
    train_seconds: float
    peak_memory_mb: float
    memory_kind: str
    checkpoint_bytes: int
    stopped_early: bool = False
    pruned: bool = False
    rss_before_train_mb: float | None = None
    train_tokens_per_epoch: int | None = None
    train_accuracy: float | None = (
        None  # on the training split at the end: the generalisation gap's other side
    )
    train_accuracy_examples: int | None = None  # how many training examples it was measured on (None: all)
    frozen_layers_cached: int = 0  # encoder layers below the adapters computed once, not every step

    @property
    def epochs_run(self) -> int:
        return len(self.epochs)

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / max(self.total_params, 1)

    @property
    def mean_epoch_seconds(self) -> float:
        return sum(r.epoch_seconds for r in self.epochs) / max(len(self.epochs), 1)

    @property
    def train_examples_per_second(self) -> float:
        return sum(r.train_examples_per_second for r in self.epochs) / max(len(self.epochs), 1)


@dataclass
class OodSummary:
    """result.json's `ood` section: the out-of-scope scorers measured on test (`scorers`: per scorer,
    its threshold and metrics), the one chosen and why, and the calibration (inference/ood_fit.py)."""

    scorers: dict[str, dict[str, Any]]
    chosen: str
    rule: str
    k: int
    target_recall: float
    temperature: float
    calibration: dict[str, Any] = field(default_factory=dict)
    oos_rows: dict[str, int] = field(default_factory=dict)
    probabilistic: bool = True
    state_sha256: str | None = None  # of ood/'s state (inference/ood.checksum): which state these numbers are

    @property
    def chosen_metrics(self) -> dict[str, Any]:
        return self.scorers[self.chosen]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OodSummary:
        return _from(cls, data)


@dataclass
class TeacherInfo:
    """result.json's `teacher` section: which run taught this one, and how."""

    path: str
    sha256: str  # over the teacher's model/ files (names and contents)
    method: str
    model: str
    test_accuracy: float
    alpha: float
    temperature: float
    texts: int  # training texts the teacher scored
    reused: bool = False  # the logits were read back from this run's folder, not computed again


@dataclass
class RunResult:
    """result.json: {"run", "train", "test", "meta"}; `meta` holds schema_version and provenance."""

    run: RunInfo
    train: TrainInfo
    test: Scores
    meta: dict[str, Any]
    ood: OodSummary | None = None  # out-of-scope detection and calibration
    teacher: TeacherInfo | None = None  # the run it was distilled from (training/distill.py)

    @property
    def schema_version(self) -> int:
        return int(self.meta.get("schema_version", 0))

    def to_dict(self) -> dict[str, Any]:
        train = asdict(self.train)
        # derived numbers are written out too, so that other tools read them without intentlab
        for key in ("epochs_run", "trainable_percent", "mean_epoch_seconds", "train_examples_per_second"):
            train[key] = getattr(self.train, key)
        out = {"run": asdict(self.run), "train": train, "test": asdict(self.test), "meta": dict(self.meta)}
        if self.ood is not None:
            out["ood"] = asdict(self.ood)
        if self.teacher is not None:
            out["teacher"] = asdict(self.teacher)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        train = dict(data["train"])
        train["epochs"] = [_from(EpochRow, r) for r in train.get("epochs", [])]
        return cls(
            run=_from(RunInfo, data["run"]),
            train=_from(TrainInfo, train),
            test=_from(Scores, data["test"]),
            meta=dict(data.get("meta", {})),
            ood=OodSummary.from_dict(data["ood"]) if isinstance(data.get("ood"), dict) else None,
            teacher=_from(TeacherInfo, data["teacher"]) if isinstance(data.get("teacher"), dict) else None,
        )


def is_complete(run: str | Path) -> bool:
    """True for a finished run: its record is written last."""
    return (Path(run) / RESULT).is_file()


def read_epochs(run: str | Path) -> list[EpochRow]:
    """The epoch rows written so far (metrics.jsonl), e.g. of a run still training."""
    path = Path(run) / METRICS
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_from(EpochRow, json.loads(line)) for line in lines if line.strip()]


# ----------------------------------------------------------------------------- reading runs
def read_config(run: str | Path) -> Any:
    """The recorded `config.yaml` of a run as a validated `Config` (every reader goes through here)."""
    from intentlab.config import Config, merge, read_yaml

    path = Path(run) / CONFIG
    if not path.is_file():
        raise not_a_run_folder(Path(run))
    return merge(Config(), read_yaml(path), str(path))


def restore_interrupted_overwrite(run: Path) -> None:
    """Put back a run that a killed `train --overwrite` left aside, when no one is writing it now."""
    from intentlab.folders import FolderLock, recover_replaced

    if not list(run.absolute().parent.glob(f".{run.name}.replaced-*")):
        return
    try:
        with FolderLock(run.absolute()).acquire():
            for note in recover_replaced(run.absolute(), CONFIG, RESULT):
                print(f"intentlab: {note}", file=sys.stderr)
    except UserError:
        pass  # another process is writing it: leave it alone


def not_a_run_folder(folder: Path) -> UserError:
    """The error for a folder without config.yaml; one that holds runs (a compare, learning-curve or
    sweep folder, up to 3 levels down) gets some of their paths."""
    inside = sorted(
        str(p.parent.relative_to(folder)) for depth in (1, 2, 3) for p in folder.glob("*/" * depth + RESULT)
    )
    listed = ", ".join(inside[:3]) + (", ..." if len(inside) > 3 else "")
    fix = (
        f"It holds runs ({listed}): pass one of them."
        if inside
        else "Pass a folder written by `intentlab train`."
    )
    return UserError(f"{folder} is not a run folder (no {CONFIG}). {fix}")


def load_result(run: str | Path) -> RunResult:
    """The typed record of a complete run; a missing, incomplete, corrupt or newer-schema run is a
    UserError."""
    run = Path(run)
    if not (run / RESULT).is_file():
        restore_interrupted_overwrite(run)
    if not run.is_dir():
        raise UserError(f"run folder {run} not found. Pass a folder written by `intentlab train`.")
    path = run / RESULT
    if not path.is_file() and not (run / CONFIG).is_file():
        raise not_a_run_folder(run)
    if not path.is_file():
        raise UserError(
            f"run {run} is incomplete (no {RESULT}): it was interrupted or is still running. "
            "Resume it with `intentlab train --resume` or train it again."
        )
    from intentlab.runs.safe_files import read_json

    try:
        result = read_json(path)
    except UserError as e:
        raise UserError(f"{e} Train the run again.") from None
    meta = result.get("meta") if isinstance(result, dict) else None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if version not in READABLE_SCHEMAS:
        raise UserError(
            f"run {run} has schema version {version}, this intentlab reads versions "
            f"{', '.join(map(str, READABLE_SCHEMAS))}. Use the intentlab version that wrote it, or train it again."
        )
    try:
        return RunResult.from_dict(result)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(
            f"{path} is not a valid run record ({type(e).__name__}: {e}). Train the run again."
        ) from None
