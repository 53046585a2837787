"""Saving and loading `<run>/model/`: tokenizer, label map and weights, loadable on their own.

Layout of the folder:

    intentlab.json      how to rebuild the model (method, storage, base model, pooling, label count)
    labels.json         {"labels": [...]}: position = class id
    tokenizer files
    adapter/            adapter methods: peft adapter + classifier head (peft `modules_to_save`)
    model.safetensors + encoder/config.json     full: every weight, no base model needed
    head.safetensors    head: the trained head only; the frozen encoder comes from the base model
    tfidf.json + tfidf.safetensors              the TF-IDF baseline (models/tfidf.py)

Which of these a run has is its method's storage kind in the method table. Everything read here may
come from a stranger: `read_model_info` checks every key and value before anything is built, and
nothing is ever unpickled or run as code.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from intentlab.config import POOLINGS, Config
from intentlab.errors import ModelNotFound, UserError
from intentlab.folders import write_json_atomic
from intentlab.models import tfidf
from intentlab.models.classifier import IntentClassifier, load_encoder, load_tokenizer, no_adapter_input_casts
from intentlab.models.methods import ADAPTER, ALL_WEIGHTS, HEAD_ONLY, STORAGES, TFIDF, get

MODEL_INFO = "intentlab.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    labels: list[str]
    info: dict[str, Any]


def checkpoint_bytes(folder: str | Path) -> int:
    """Bytes of weight files under `folder` (tokenizer and JSON files excluded)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.suffix in WEIGHT_SUFFIXES)


def save_model(model: nn.Module, cfg: Config, tokenizer: Any, labels: list[str], out: str | Path) -> int:
    """Write the model folder atomically (temp folder + rename). Returns the checkpoint size in bytes."""
    from safetensors.torch import save_file

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer.save_pretrained(tmp)
    weights = get(cfg.method).storage
    if weights == ADAPTER:
        # embeddings are never resized, so skip peft's vocabulary check (a hub lookup, even offline)
        model.save_pretrained(tmp / "adapter", save_embedding_layers=False)
    elif weights == ALL_WEIGHTS:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        model.encoder.config.save_pretrained(tmp / "encoder")
    else:
        state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, tmp / "head.safetensors")
    write_model_info(tmp, cfg, labels, weights)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return checkpoint_bytes(out)


def write_model_info(folder: Path, cfg: Config, labels: list[str], weights: str) -> None:
    """labels.json and intentlab.json: what `read_model_info` needs to rebuild the model."""
    write_json_atomic(folder / "labels.json", {"labels": list(labels)})
    info = {
        "schema_version": 1,
        "method": cfg.method,
        "weights": weights,
        "base_model": cfg.model,
        "pooling": cfg.pooling,
        "dropout": cfg.dropout,
        "num_labels": len(labels),
        "max_length": cfg.max_length,
    }
    write_json_atomic(folder / MODEL_INFO, info)


def encoder_options(info: dict[str, Any]) -> dict[str, Any]:
    """How the run's method loads its base (QLoRA: in 4 bits); {} for runs of unknown or other methods."""
    from intentlab.models.methods import METHODS

    method = METHODS.get(str(info.get("method")))
    return method.encoder_options() if method and method.encoder_options else {}


def model_folder(path: str | Path) -> Path:
    """`RUN/model` for a run folder, or the folder itself when it is a model folder."""
    folder = Path(path)
    if (folder / "model" / MODEL_INFO).is_file() or not (folder / MODEL_INFO).is_file():
        folder = folder / "model"
    return folder


def _check_info(info: Any, labels: Any) -> list[str]:
    """Every problem with a model folder's intentlab.json and labels.json (empty: fine)."""
    if not isinstance(info, dict):
        return [f"{MODEL_INFO} must hold an object, not {type(info).__name__}"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        return ["labels.json must hold a non-empty list of label names"]
    p = []
    if len(set(labels)) != len(labels):
        p.append("labels.json repeats a label")
    if info.get("weights") not in STORAGES:
        p.append(f"weights must be one of {', '.join(STORAGES)}, got {info.get('weights')!r}")
    if type(info.get("num_labels")) is not int or info["num_labels"] != len(labels):
        p.append(f"num_labels must equal the {len(labels)} labels, got {info.get('num_labels')!r}")
    if info.get("weights") == TFIDF:
        return p
    if not isinstance(info.get("base_model"), str) or not info["base_model"].strip():
        p.append("base_model must name a model")
    if info.get("pooling") not in POOLINGS:
        p.append(f"pooling must be one of {', '.join(POOLINGS)}, got {info.get('pooling')!r}")
    dropout = info.get("dropout")
    if type(dropout) not in (int, float) or not 0 <= dropout < 1:
        p.append(f"dropout must be a number in [0, 1), got {dropout!r}")
    max_length = info.get("max_length", 128)
    if type(max_length) is not int or not 8 <= max_length <= 8192:
        p.append(f"max_length must be an integer in 8..8192, got {max_length!r}")
    return p


def read_model_info(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """The checked intentlab.json and label list of a model folder (any problem: one UserError)."""
    try:
        info = json.loads((folder / MODEL_INFO).read_text(encoding="utf-8"))
        labels_doc = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        if (folder / tfidf.LEGACY_PICKLE).is_file():
            tfidf.load(folder, [])  # raises the one-line "old pickled baseline" error; never unpickles
        if (folder.parent / "result.json").is_file():
            raise _record_only(folder.parent, "model/") from None
        raise UserError(
            f"{folder} holds no intentlab model ({MODEL_INFO} or labels.json missing). "
            "Pass a run folder written by `intentlab train`."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise UserError(
            f"{folder}: {MODEL_INFO} or labels.json is unreadable ({type(e).__name__}). Train the run again."
        ) from None
    labels = labels_doc.get("labels") if isinstance(labels_doc, dict) else None
    problems = _check_info(info, labels)
    if problems:
        raise UserError(
            f"{folder}: {'; '.join(problems)}. The model folder is corrupt or was edited; train the run again."
        )
    return info, labels


# What each storage needs beside intentlab.json and labels.json (tokenizer_config.json: every encoder).
WEIGHT_FILES = {
    ALL_WEIGHTS: ("model.safetensors", "encoder/config.json"),
    HEAD_ONLY: ("head.safetensors",),
    ADAPTER: ("adapter/adapter_config.json", "adapter/adapter_model.safetensors"),
}


def _record_only(run: Path, missing: str) -> UserError:
    return UserError(
        f"{run} has no {missing}: it is a run's record without its model (like the runs kept in "
        "docs/results). Pass the run folder `intentlab train` wrote, or train it again: "
        f"intentlab train --config {run}/config.yaml --out NEW_RUN."
    )


def load_model(path: str | Path, base_model: str | None = None) -> LoadedModel:
    """Rebuild a trained model from a run folder (or its `model/` folder), in eval mode.

    `base_model` overrides the recorded base (e.g. a local copy of the hub model it was trained on).
    """
    folder = model_folder(path)
    info, labels = read_model_info(folder)
    if info["weights"] == TFIDF:
        raise UserError(
            f"{folder.parent} is a TF-IDF baseline run: `intentlab predict` and `evaluate` read it, "
            "`serve` and `export` need an encoder run."
        )
    missing = [
        f for f in ("tokenizer_config.json", *WEIGHT_FILES[info["weights"]]) if not (folder / f).is_file()
    ]
    if missing:
        raise _record_only(folder.parent, ", ".join(f"model/{f}" for f in missing))
    base = base_model or info["base_model"]
    try:
        return _load_weights(folder, info, labels, base, load_tokenizer(str(folder)))
    except ModelNotFound as e:  # --model is not the fix here (predict/serve have none)
        if e.name != base:  # the run's own tokenizer or encoder config: its files are damaged
            raise UserError(
                f"cannot load {e.name} ({e.reason}). The run's files are corrupt; train the run again."
            ) from None
        raise UserError(
            f"{folder.parent} was trained on the base model {e.name!r}, which cannot be loaded here "
            f"({e.reason}). Run the command where that folder or Hugging Face id is reachable."
        ) from None


def _load_weights(
    folder: Path, info: dict[str, Any], labels: list[str], base: str, tokenizer: Any
) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    head = IntentClassifier
    try:
        if info["weights"] == ALL_WEIGHTS:
            encoder = load_encoder(str(folder / "encoder"), info["pooling"], config_only=True)
            model = head(encoder, len(labels), info["pooling"], info["dropout"])
            model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
        elif info["weights"] == HEAD_ONLY:
            model = head(load_encoder(base, info["pooling"]), len(labels), info["pooling"], info["dropout"])
            state = load_file(folder / "head.safetensors")
            missing = set(state) - {n for n, _ in model.named_parameters()}
            if missing:
                raise UserError(
                    f"{folder}/head.safetensors has unexpected weights {sorted(missing)[:3]}. Train the run again."
                )
            model.load_state_dict(state, strict=False)
        else:
            from peft import PeftModel

            encoder = load_encoder(base, info["pooling"], **encoder_options(info))
            model = head(encoder, len(labels), info["pooling"], info["dropout"])
            model = PeftModel.from_pretrained(model, folder / "adapter")
            no_adapter_input_casts(model)
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise UserError(
            f"cannot load the weights in {folder} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
            "The files are corrupt or were written for another base model; train the run again."
        ) from None
    model.eval()
    return LoadedModel(model, tokenizer, labels, info)
