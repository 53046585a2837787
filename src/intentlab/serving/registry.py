"""Many adapters on one base model: the model side of `intentlab serve`.

Adapter runs (LoRA, DoRA, IA3) that share a base model, pooling and peft type share ONE copy of the
base in memory: each run is a named peft adapter on it, with its own classifier head (and pooler)
kept outside peft, because heads of different label sets have different shapes. Full and head runs
are loaded as their own models. All model calls happen on one worker thread (see serve.py), so
switching the active adapter never races with another request.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from intentlab.errors import UserError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class Entry:
    name: str
    run: Path
    info: dict[str, Any]
    labels: list[str]
    tokenizer: Any
    result: dict[str, Any]
    shared_key: tuple[str, ...] | None  # set for adapters on a shared base
    model: nn.Module | None = None  # full/head runs: their own model
    head: nn.ModuleDict = field(default_factory=nn.ModuleDict)  # adapters: classifier (+ pooler)

    def describe(self) -> dict[str, Any]:
        run = self.result.get("run", {})
        test = self.result.get("test", {})
        return {
            "name": self.name,
            "method": self.info["method"],
            "base_model": self.info["base_model"],
            "dataset": run.get("data"),
            "num_labels": len(self.labels),
            "pooling": self.info["pooling"],
            "shares_base": self.shared_key is not None,
            "metrics": {k: test.get(k) for k in ("accuracy", "f1_macro", "f1_weighted")},
        }


class Registry:
    """Load, unload and run named adapters; thread-safe for loading, single-threaded for inference."""

    def __init__(self, bf16: bool = False, max_length: int = 128) -> None:
        self.entries: dict[str, Entry] = {}
        self.bases: dict[tuple[str, ...], Any] = {}  # shared key -> PeftModel holding many adapters
        self.bf16 = bf16
        self.max_length = max_length
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ loading
    def load(self, name: str, run: str | Path) -> Entry:
        from intentlab.models.io import load_model, read_model_info
        from intentlab.runs import load_result

        if not NAME_RE.match(name):
            raise UserError(f"adapter name {name!r} is invalid. Use 1-64 letters, digits, '.', '_' or '-'.")
        run = Path(run)
        with self.lock:
            if name in self.entries:
                raise UserError(f"adapter {name!r} is already loaded. Unload it first or pick another name.")
            result = load_result(run)
            folder = run / "model"
            info, labels = read_model_info(folder)
            if info["weights"] != "adapter":
                loaded = load_model(run)
                entry = Entry(name, run, info, labels, loaded.tokenizer, result, None, model=loaded.model)
            else:
                entry = self._load_adapter(name, run, folder, info, labels, result)
            self.entries[name] = entry
            return entry

    def _load_adapter(
        self,
        name: str,
        run: Path,
        folder: Path,
        info: dict[str, Any],
        labels: list[str],
        result: dict[str, Any],
    ) -> Entry:
        from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from intentlab.models.classifier import IntentClassifier, load_encoder, load_tokenizer

        try:
            config = PeftConfig.from_pretrained(str(folder / "adapter"))
            state = load_file(folder / "adapter" / "adapter_model.safetensors")
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
            raise UserError(
                f"adapter files of {run} are missing or corrupt ({type(e).__name__}). Train the run again."
            ) from None
        head_state = {k: v for k, v in state.items() if ".classifier." in k or ".pooler." in k}
        adapter_state = {k: v for k, v in state.items() if k not in head_state}
        config = copy.deepcopy(config)
        config.modules_to_save = None  # heads live outside peft here (label sets differ per adapter)
        key = (info["base_model"], info["pooling"], str(config.peft_type))
        base = self.bases.get(key)
        try:
            if base is None:
                encoder = load_encoder(info["base_model"], info["pooling"])
                shared = IntentClassifier(encoder, num_labels=1, pooling=info["pooling"], dropout=0.0)
                shared.name_or_path = info["base_model"]
                base = get_peft_model(shared, config, adapter_name=name)
            else:
                base.add_adapter(name, config)
            res = set_peft_model_state_dict(base, adapter_state, adapter_name=name)
        except (RuntimeError, ValueError, KeyError) as e:
            if key in self.bases and name in base.peft_config:
                base.delete_adapter(name)  # leave the shared base as it was
            raise UserError(
                f"adapter of {run} does not fit base {info['base_model']!r} ({str(e)[:120]}). Check the run."
            ) from None
        unexpected = [k for k in getattr(res, "unexpected_keys", []) if "lora" in k or "ia3" in k]
        if unexpected:
            raise UserError(
                f"adapter of {run} has weights its config does not declare ({unexpected[:2]}). Train it again."
            )
        base.eval()
        self.bases[key] = base
        head = nn.ModuleDict()
        hidden = base.base_model.model.encoder.config.hidden_size
        head["classifier"] = nn.Linear(hidden, len(labels))
        head["classifier"].load_state_dict(
            {k.rsplit(".", 1)[1]: v for k, v in head_state.items() if ".classifier." in k}
        )
        pooler_state = {k.split(".pooler.", 1)[1]: v for k, v in head_state.items() if ".pooler." in k}
        if pooler_state:
            head["pooler"] = copy.deepcopy(base.base_model.model.encoder.pooler)
            head["pooler"].load_state_dict(pooler_state)
        head.eval()
        tokenizer = load_tokenizer(str(folder))
        return Entry(name, run, info, labels, tokenizer, result, key, head=head)

    def unload(self, name: str) -> None:
        with self.lock:
            entry = self.entries.pop(name, None)
            if entry is None:
                raise KeyError(name)
            if entry.shared_key is not None:
                base = self.bases[entry.shared_key]
                if len(base.peft_config) == 1:
                    del self.bases[entry.shared_key]  # last adapter: free the base
                else:
                    base.delete_adapter(name)

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def logits(self, name: str, texts: list[str]) -> np.ndarray:
        from intentlab.data.batching import Collator, sorted_batches, tokenize

        entry = self.entries[name]
        ids = tokenize(entry.tokenizer, texts, int(entry.info.get("max_length", self.max_length)))
        collate = Collator(ids, None, entry.tokenizer.pad_token_id or 0)
        out = np.zeros((len(ids), len(entry.labels)), dtype=np.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for idx in sorted_batches([len(s) for s in ids], 64):
                out[idx] = self._forward(entry, collate(idx)).float().numpy()
        return out

    def _forward(self, entry: Entry, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if entry.model is not None:
            return entry.model(**batch)
        base = self.bases[entry.shared_key]  # type: ignore[index]
        base.set_adapter(entry.name)
        model = base.base_model.model
        hidden = model.encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        if "pooler" in entry.head:
            pooled = entry.head["pooler"](hidden)
        else:
            pooled = model.pool(hidden, batch["attention_mask"])
        return entry.head["classifier"](pooled)

    def predict(self, name: str, texts: list[str], top_k: int) -> list[list[dict[str, Any]]]:
        entry = self.entries[name]
        z = self.logits(name, texts).astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        k = max(1, min(top_k, len(entry.labels)))
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        return [
            [{"intent": entry.labels[j], "probability": float(p[i, j])} for j in row]
            for i, row in enumerate(top)
        ]
