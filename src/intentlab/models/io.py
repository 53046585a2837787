"""Saving and loading `<run>/model/`: tokenizer, label map and weights, loadable on their own.

Layout of the folder:

    intentlab.json      how to rebuild the model (method, base model, pooling, label count); written last
    labels.json         {"labels": [...]}: position = class id
    tokenizer files
    adapter/            lora/dora/ia3: peft adapter + classifier head (peft `modules_to_save`)
    model.safetensors + encoder/config.json     full: every weight, no base model needed
    head.safetensors    head: the trained head only; the frozen encoder comes from the base model
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from intentlab.config import Config
from intentlab.errors import UserError
from intentlab.models.classifier import IntentClassifier, load_encoder, load_tokenizer
from intentlab.models.methods import get
from intentlab.runs import write_json_atomic

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
    write_json_atomic(tmp / "labels.json", {"labels": list(labels)})
    weights = get(cfg.method).storage
    if weights == "adapter":
        # embeddings are never resized, so skip peft's vocabulary check (a hub lookup, even offline)
        model.save_pretrained(tmp / "adapter", save_embedding_layers=False)
    elif weights == "full":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        model.encoder.config.save_pretrained(tmp / "encoder")
    else:
        state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, tmp / "head.safetensors")
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
    write_json_atomic(tmp / MODEL_INFO, info)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return checkpoint_bytes(out)


def read_model_info(folder: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        info = json.loads((folder / MODEL_INFO).read_text(encoding="utf-8"))
        labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))["labels"]
    except FileNotFoundError:
        if (folder / "baseline.pkl").is_file():
            raise UserError(
                f"{folder.parent} is a TF-IDF baseline run: `intentlab predict` and `evaluate` read it, "
                "`serve` and `export` need an encoder run (full, lora, dora, ia3 or head)."
            ) from None
        raise UserError(
            f"{folder} holds no intentlab model ({MODEL_INFO} or labels.json missing). "
            "Pass a run folder written by `intentlab train`."
        ) from None
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
        raise UserError(f"{folder}: {MODEL_INFO} or labels.json is corrupt. Train the run again.") from None
    return info, labels


def load_model(path: str | Path, base_model: str | None = None) -> LoadedModel:
    """Rebuild a trained model from a run folder (or its `model/` folder), in eval mode.

    `base_model` overrides the recorded base (e.g. a local copy of the hub model it was trained on).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    if (folder / "model" / MODEL_INFO).is_file() or not (folder / MODEL_INFO).is_file():
        folder = folder / "model"
    info, labels = read_model_info(folder)
    base = base_model or info["base_model"]
    tokenizer = load_tokenizer(str(folder))
    head = IntentClassifier
    try:
        if info["weights"] == "full":
            encoder = load_encoder(str(folder / "encoder"), info["pooling"], config_only=True)
            model = head(encoder, len(labels), info["pooling"], info["dropout"])
            model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
        elif info["weights"] == "head":
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

            model = head(load_encoder(base, info["pooling"]), len(labels), info["pooling"], info["dropout"])
            model = PeftModel.from_pretrained(model, folder / "adapter")
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise UserError(
            f"cannot load the weights in {folder} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
            "The files are corrupt or were written for another base model; train the run again."
        ) from None
    model.eval()
    return LoadedModel(model, tokenizer, labels, info)
