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


def model_info_for(cfg: Config, labels: list[str]) -> ModelInfo:
    """What a run of `cfg` records about its model."""
    return ModelInfo(
        method=cfg.method,
        weights=of_method(cfg.method).kind,
        base_model=cfg.model,
        pooling=cfg.pooling,
        dropout=cfg.dropout,
        num_labels=len(labels),
        max_length=cfg.max_length,
    )


def save_model(model: Any, cfg: Config, tokenizer: Any, labels: list[str], out: str | Path) -> int:
    """Write the model folder atomically (temp folder + rename): the weights as the method's storage
    kind stores them, its tokenizer (encoder runs) and its description. Returns the weights' bytes."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    of_method(cfg.method).save(model, tmp)
    write_model_info(tmp, model_info_for(cfg, labels), labels)
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
        return _load_weights(folder, info, labels, base, load_tokenizer(str(folder)), kind)
    except ModelNotFound as e:  # --model is not the fix here (predict/serve have none)
        if e.name != base:  # the run's own tokenizer or encoder config: its files are damaged
            raise UserError(
                f"cannot load {e.name} ({e.reason}). The run's files are corrupt; train the run again."
            ) from None
        raise UserError(
            f"{folder.parent} was trained on the base model {e.name!r}, which cannot be loaded here "
            f"({e.reason}). Run the command where that folder or Hugging Face id is reachable."
        ) from None


def not_an_encoder_run(run: Path) -> UserError:
    return UserError(
        f"{run} is a TF-IDF baseline run: `intentlab predict` and `evaluate` read it, "
        "`serve` and `export` need an encoder run."
    )


def _load_weights(
    folder: Path, info: ModelInfo, labels: list[str], base: str, tokenizer: Any, kind: Storage
) -> LoadedModel:
    from safetensors import SafetensorError

    try:
        model = kind.load(folder, info, labels, base)
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise UserError(
            f"cannot load the weights in {folder} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
            "The files are corrupt or were written for another base model; train the run again."
        ) from None
    model.eval()
    return LoadedModel(model, tokenizer, labels, info, kind)
