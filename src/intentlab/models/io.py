"""Saving and loading `<run>/model/`: tokenizer, label map and weights, loadable on their own.

Layout of the folder:

    intentlab.json      how to rebuild the model (runs/model_info.py: method, storage kind, base, pooling)
    labels.json         {"labels": [...]}: position = class id
    tokenizer files     (encoder runs)
    weights             as the run's storage kind writes them (models/storage.py)

Everything read here may come from a stranger: the folder's description is checked key by key
(`runs/model_info.py`) before anything is built, and nothing is ever unpickled or run as code.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intentlab.config import Config
from intentlab.errors import ModelNotFound, UserError
from intentlab.folders import write_json_atomic
from intentlab.models.loading import load_tokenizer
from intentlab.models.storage import Storage, of_method, storage
from intentlab.runs.files import LABELS, MODEL, MODEL_INFO
from intentlab.runs.model_info import ModelInfo, read_model_info, record_only
from intentlab.runs.safe_files import sha256_regular

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    labels: list[str]
    info: ModelInfo
    storage: Storage


def checkpoint_bytes(folder: str | Path) -> int:
    """Bytes of weight files under `folder` (tokenizer and JSON files excluded)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.suffix in WEIGHT_SUFFIXES)


def model_info_for(
    cfg: Config,
    labels: list[str],
    tokenizer_files: dict[str, str] | None = None,
    vocab_size: int | None = None,
) -> ModelInfo:
    """What a run of `cfg` records about its model (and its tokenizer's files and vocabulary size)."""
    return ModelInfo(
        method=cfg.method,
        weights=of_method(cfg.method).kind,
        base_model=cfg.model,
        pooling=cfg.pooling,
        dropout=cfg.dropout,
        num_labels=len(labels),
        max_length=cfg.max_length,
        tokenizer_files=tokenizer_files or {},
        vocab_size=vocab_size,
    )


def save_model(model: Any, cfg: Config, tokenizer: Any, labels: list[str], out: str | Path) -> int:
    """Write the model folder atomically (temp folder + rename): the weights as the method's storage
    kind stores them, its tokenizer (encoder runs) and its description. Returns the weights' bytes."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files: dict[str, str] = {}
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
        files = {p.name: sha256_regular(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    of_method(cfg.method).save(model, tmp)
    vocab = len(tokenizer) if tokenizer is not None else None
    write_model_info(tmp, model_info_for(cfg, labels, files, vocab), labels)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return checkpoint_bytes(out)


def write_model_info(folder: Path, info: ModelInfo, labels: list[str]) -> None:
    """labels.json and intentlab.json: what `read_model_info` needs to rebuild the model."""
    write_json_atomic(folder / LABELS, {"labels": list(labels)})
    write_json_atomic(folder / MODEL_INFO, info.to_dict())


def model_folder(path: str | Path) -> Path:
    """`RUN/model` for a run folder, or the folder itself when it is a model folder."""
    folder = Path(path)
    if (folder / MODEL / MODEL_INFO).is_file() or not (folder / MODEL_INFO).is_file():
        folder = folder / MODEL
    return folder


def load_model(path: str | Path, base_model: str | None = None) -> LoadedModel:
    """Rebuild a trained encoder model from a run folder (or its `model/` folder), in eval mode.

    `base_model` overrides the recorded base (e.g. a local copy of the hub model it was trained on).
    """
    folder = model_folder(path)
    info, labels = read_model_info(folder)
    kind = storage(info.weights)
    if not kind.encoder:
        raise not_an_encoder_run(folder.parent)
    missing = [f for f in ("tokenizer_config.json", *kind.files) if not (folder / f).is_file()]
    if missing:
        raise record_only(folder.parent, ", ".join(f"{MODEL}/{f}" for f in missing))
    base = base_model or info.base_model
    try:
        return _load_weights(folder, info, labels, base, run_tokenizer(folder, info), kind)
    except ModelNotFound as e:  # --model is not the fix here (predict/serve have none)
        if e.name != base:  # the run's own tokenizer or encoder config: its files are damaged
            raise UserError(
                f"cannot load {e.name} ({e.reason}). The run's files are corrupt; train the run again."
            ) from None
        raise UserError(
            f"{folder.parent} was trained on the base model {e.name!r}, which cannot be loaded here "
            f"({e.reason}). Run the command where that folder or Hugging Face id is reachable."
        ) from None


def check_tokenizer_files(folder: Path, info: ModelInfo) -> None:
    """The run's tokenizer files are there, regular, and what the run saved (their recorded checksums);
    runs saved before checksums were recorded need a vocabulary file at least. Without this a missing
    or replaced tokenizer.json made transformers build a 5-token vocabulary and predict garbage."""
    if info.tokenizer_files:
        for name, sha in info.tokenizer_files.items():
            try:
                ok = sha256_regular(folder / name) == sha
            except FileNotFoundError:
                raise UserError(
                    f"{folder / name} is missing: the run's files are corrupt (an incomplete tokenizer); "
                    "train the run again."
                ) from None
            if not ok:
                raise UserError(
                    f"{folder / name} is not the tokenizer the run saved (its checksum differs). "
                    "The run's files are corrupt; train the run again."
                )
        return
    vocab = [
        folder / n
        for n in ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
    ]
    present = [p for p in vocab if os.path.lexists(p)]
    if not present:
        raise UserError(
            f"{folder} has no tokenizer vocabulary (tokenizer.json or vocab.txt). Train the run again."
        )
    for p in present:
        sha256_regular(p)  # regular files only: a FIFO or a link to /dev/zero is refused here


def run_tokenizer(folder: Path, info: ModelInfo) -> Any:
    """The run's own tokenizer, checked (`check_tokenizer_files`) and of the vocabulary size it had."""
    check_tokenizer_files(folder, info)
    tokenizer = load_tokenizer(str(folder))
    want = info.vocab_size
    if want is not None and len(tokenizer) != want:
        raise UserError(
            f"the tokenizer in {folder} has {len(tokenizer):,} tokens; the run saved one of {want:,}. Train the run again."
        )
    return tokenizer


def not_an_encoder_run(run: Path) -> UserError:
    return UserError(
        f"{run} is a TF-IDF baseline run: `intentlab predict` and `evaluate` read it, "
        "`serve` and `export` need an encoder run."
    )


def _load_weights(
    folder: Path, info: ModelInfo, labels: list[str], base: str, tokenizer: Any, kind: Storage
) -> LoadedModel:
    from safetensors import SafetensorError

    kind.check(folder)
    try:
        model = kind.load(folder, info, labels, base)
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise UserError(
            f"cannot load the weights in {folder} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
            "The files are corrupt or were written for another base model; train the run again."
        ) from None
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if info.vocab_size is None and vocab and not vocab // 2 <= len(tokenizer) <= vocab:
        raise UserError(
            f"the tokenizer in {folder} has {len(tokenizer):,} tokens for an encoder of {vocab:,}: it is not the "
            "run's tokenizer. Train the run again."
        )
    model.eval()
    return LoadedModel(model, tokenizer, labels, info, kind)
