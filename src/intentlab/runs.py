"""The run-folder contract: the typed run record, atomic writes, provenance, and safe (re)creation.

A run directory holds:

    config.yaml        the resolved config (every default written out)
    metrics.jsonl      one JSON object per epoch
    result.json        {"run", "train", "test", "meta"}; written last, so its presence marks completion
    test_predictions.json   gold and predicted label ids on the test split (for paired statistics)
    model/             tokenizer + label map + adapter (or full weights); loadable on its own
    plots/             per-run charts

Folders are created and written through `folders.py` (atomic files, a lock per folder, overwrite
that never loses a run). `RunResult` (with `EpochRow` per epoch and `Scores` for the test split) is the one typed record of a
run; `write_record()` is the one function that writes it, shared by the training loop and the
baseline; `load_result()` reads it back for every reader (report, compare, serve, evaluate), records
of schema 1 (intentlab before the typed record) included.

This module imports neither torch nor training code: reports and serving read runs through it.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from intentlab import allocator
from intentlab.errors import UserError
from intentlab.folders import is_complete, read_jsonl, write_json_atomic, write_jsonl_atomic
from intentlab.hardware import machine_kind

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
COMMAND: list[
    str
] = []  # the intentlab command line being run (set by cli.main), for provenance  # 1: records written before the typed record; same keys, some absent
RESULT = "result.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
PREDICTIONS = "test_predictions.json"
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
class RunResult:
    """result.json: {"run", "train", "test", "meta"}; `meta` holds schema_version and provenance."""

    run: RunInfo
    train: TrainInfo
    test: Scores
    meta: dict[str, Any]
    ood: dict[str, Any] | None = None  # out-of-scope detection and calibration (inference/ood.py)

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
            out["ood"] = self.ood
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
            ood=data.get("ood") if isinstance(data.get("ood"), dict) else None,
        )


def write_record(
    out: Path,
    result: RunResult,
    labels: list[str],
    y_true: list[int],
    y_pred: list[int],
    confidence: list[float] | None = None,
    texts: list[str] | None = None,
) -> None:
    """Write a finished run's record: metrics.jsonl, test_predictions.json (in-scope test rows: ids,
    top probability and text, for paired tests and the report's error analysis), then result.json last
    (its presence marks the run complete). The training loop and the baseline both end here."""
    write_jsonl_atomic(out / METRICS, [asdict(r) for r in result.train.epochs])
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
    write_json_atomic(out / PREDICTIONS, preds)
    write_json_atomic(out / RESULT, result.to_dict())


def read_epochs(run: str | Path) -> list[EpochRow]:
    """The epoch rows written so far (metrics.jsonl), e.g. of a run still training."""
    path = Path(run) / METRICS
    return [_from(EpochRow, r) for r in read_jsonl(path)] if path.is_file() else []


# ----------------------------------------------------------------------------- provenance
def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the intentlab checkout, when it is a git repository."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": bool(dirty)} if commit else {}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """Versions, code revision, machine and command line: enough to say where a number came from."""
    pkgs = ("intentlab", "torch", "transformers", "peft", "accelerate", "scikit-learn", "numpy", "tokenizers")
    return {
        "schema_version": SCHEMA_VERSION,
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in pkgs}},
        "git": git_info(),
        "command": COMMAND or sys.argv,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "machine_kind": machine_kind(),
        "allocator": allocator.active(),
    }


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
            for note in recover_replaced(run.absolute()):
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
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt ({e}). Train the run again.") from None
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


__all__ = [
    "CONFIG",
    "METRICS",
    "PREDICTIONS",
    "RESULT",
    "EpochRow",
    "RunInfo",
    "RunResult",
    "Scores",
    "TrainInfo",
    "is_complete",
    "load_result",
    "provenance",
    "read_config",
    "read_epochs",
    "write_record",
]
