"""`model/intentlab.json` and `model/labels.json`: what a model folder says it holds, typed and checked.

Everything here may come from a stranger: `read_model_info` checks every key and value before any
model is built, and a problem is one `UserError` naming the folder. Torch-free: reports, serving's
admin checks and the writer read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from intentlab.config import POOLINGS
from intentlab.errors import UserError
from intentlab.methods import ENCODER_KINDS, STORAGE_KINDS
from intentlab.runs.files import LABELS, MODEL_INFO
from intentlab.runs.safe_files import read_json

MAX_LENGTH_RANGE = (8, 8192)
MAX_INFO_BYTES = 1 * 2**20
LEGACY_PICKLE = "baseline.pkl"  # how intentlab before 0.1 stored the baseline: refused, never unpickled


@dataclass(frozen=True)
class ModelInfo:
    """How to rebuild a run's model: its method, storage kind, base model, pooling and sizes."""

    method: str
    weights: str  # the storage kind (models/storage.py)
    base_model: str
    pooling: str
    dropout: float
    num_labels: int
    max_length: int = 128
    schema_version: int = 1
    # the tokenizer's files (name -> SHA-256) and vocabulary size when the run was saved; empty/None in
    # runs saved before they were recorded
    tokenizer_files: dict[str, str] = field(default_factory=dict)
    vocab_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not out["tokenizer_files"]:
            del out["tokenizer_files"], out["vocab_size"]  # a TF-IDF run has no tokenizer
        return {"schema_version": out.pop("schema_version"), **out}


def _problems(info: Any, labels: Any) -> list[str]:
    """Every problem with a model folder's intentlab.json and labels.json (empty: fine)."""
    if not isinstance(info, dict):
        return [f"{MODEL_INFO} must hold an object, not {type(info).__name__}"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        return [f"{LABELS} must hold a non-empty list of label names"]
    p = []
    if len(set(labels)) != len(labels):
        p.append(f"{LABELS} repeats a label")
    if info.get("weights") not in STORAGE_KINDS:
        p.append(f"weights must be one of {', '.join(STORAGE_KINDS)}, got {info.get('weights')!r}")
    if type(info.get("num_labels")) is not int or info["num_labels"] != len(labels):
        p.append(f"num_labels must equal the {len(labels)} labels, got {info.get('num_labels')!r}")
    if not isinstance(info.get("method"), str):
        p.append(f"method must be a name, got {info.get('method')!r}")
    if info.get("weights") not in ENCODER_KINDS:  # the baseline's folder describes no encoder
        return p
    if not isinstance(info.get("base_model"), str) or not info["base_model"].strip():
        p.append("base_model must name a model")
    if info.get("pooling") not in POOLINGS:
        p.append(f"pooling must be one of {', '.join(POOLINGS)}, got {info.get('pooling')!r}")
    dropout = info.get("dropout")
    if type(dropout) not in (int, float) or not 0 <= dropout < 1:
        p.append(f"dropout must be a number in [0, 1), got {dropout!r}")
    files = info.get("tokenizer_files", {})
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and "/" not in k and isinstance(v, str) and len(v) == 64 for k, v in files.items()
    ):
        p.append("tokenizer_files must map file names to SHA-256 checksums")
    vocab = info.get("vocab_size")
    if vocab is not None and (type(vocab) is not int or vocab < 1):
        p.append(f"vocab_size must be a positive integer, got {vocab!r}")
    max_length = info.get("max_length", 128)
    low, high = MAX_LENGTH_RANGE
    if type(max_length) is not int or not low <= max_length <= high:
        p.append(f"max_length must be an integer in {low}..{high}, got {max_length!r}")
    return p


def parse_model_info(info: Any, labels_doc: Any, folder: Path) -> tuple[ModelInfo, list[str]]:
    """The typed info and label list from the two files' parsed JSON (any problem: one UserError)."""
    labels = labels_doc.get("labels") if isinstance(labels_doc, dict) else None
    problems = _problems(info, labels)
    if problems:
        raise UserError(
            f"{folder}: {'; '.join(problems)}. The model folder is corrupt or was edited; train the run again."
        )
    typed = ModelInfo(
        method=info["method"],
        weights=info["weights"],
        base_model=str(info.get("base_model") or ""),
        pooling=str(info.get("pooling") or "mean"),
        dropout=float(info.get("dropout", 0.0)),
        num_labels=info["num_labels"],
        max_length=int(info.get("max_length", 128)),
        schema_version=int(info.get("schema_version", 1))
        if type(info.get("schema_version", 1)) is int
        else 1,
        tokenizer_files=dict(info.get("tokenizer_files") or {}),
        vocab_size=info.get("vocab_size"),
    )
    return typed, list(labels)


def read_model_info(folder: Path) -> tuple[ModelInfo, list[str]]:
    """The checked intentlab.json and label list of a model folder (any problem: one UserError)."""
    try:
        info = read_json(folder / MODEL_INFO, MAX_INFO_BYTES)
        labels_doc = read_json(folder / LABELS)
    except FileNotFoundError:
        from intentlab.runs.files import RESULT

        if (folder / LEGACY_PICKLE).is_file():
            raise legacy_pickle(folder) from None
        if (folder.parent / RESULT).is_file():
            raise record_only(folder.parent, "model/") from None
        raise UserError(
            f"{folder} holds no intentlab model ({MODEL_INFO} or {LABELS} missing). "
            "Pass a run folder written by `intentlab train`."
        ) from None
    except OSError as e:
        raise UserError(
            f"{folder}: {MODEL_INFO} or {LABELS} is unreadable ({type(e).__name__}). Train the run again."
        ) from None
    return parse_model_info(info, labels_doc, folder)


def legacy_pickle(folder: Path) -> UserError:
    """The error for a baseline saved as a pickle by an older intentlab: refused, never unpickled."""
    return UserError(
        f"{folder.parent} is a baseline run saved as a pickle by an older intentlab; pickles can run code, "
        f"so it is not loaded. Train it again (seconds): intentlab train --config {folder.parent}/config.yaml "
        "--out NEW_RUN."
    )


def record_only(run: Path, missing: str) -> UserError:
    """The error for a run's record kept without its model (like the runs in docs/results)."""
    return UserError(
        f"{run} has no {missing}: it is a run's record without its model (like the runs kept in "
        "docs/results). Pass the run folder `intentlab train` wrote, or train it again: "
        f"intentlab train --config {run}/config.yaml --out NEW_RUN."
    )
