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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intentlab.errors import UserError
from intentlab.inference.engine import Outputs, TorchBackend
from intentlab.inference.predictor import Decider
from intentlab.models.adapters import recorded_encoder_options
from intentlab.models.speed import bf16_inference_weights
from intentlab.runs.files import MODEL
from intentlab.runs.model_info import ModelInfo
from intentlab.runs.record import RunResult, load_result

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def peft_name(name: str) -> str:
    """The adapter's name inside peft: with a '-', which no module path holds (peft's AdaLoRA loading
    misreads rank-pattern keys that contain the adapter name, e.g. 'm' in 'intermediate')."""
    return f"adapter-{name}"


class SharedAdapterView(nn.Module):
    """One adapter of a shared base, seen as a classifier: switches the base to its adapter, pools
    with the one pooling function and applies its own head (classifier, and pooler when trained)."""

    def __init__(self, base: Any, name: str, head: nn.ModuleDict, pooling: str) -> None:
        super().__init__()
        self.base = [base]  # a list: not a registered submodule (the base is shared, not owned)
        self.adapter = name
        self.head = head
        self.pooling = pooling

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from intentlab.models.classifier import pool

        base = self.base[0]
        base.set_adapter(self.adapter)
        encoder = base.base_model.model.encoder
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooler = self.head["pooler"] if "pooler" in self.head else getattr(encoder, "pooler", None)
        return pool(hidden, attention_mask, self.pooling, pooler)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head["classifier"](features)


@dataclass
class Entry:
    name: str
    run: Path
    info: ModelInfo
    labels: list[str]
    result: RunResult | None  # None for an export folder (it carries its card, not the run record)
    shared_key: tuple[str, ...] | None  # set for adapters on a shared base
    backend: Any  # the one inference path: torch over the run's model (or its view of a shared base), or ONNX
    decider: Decider  # calibrated probabilities, top-k and the out-of-scope decision
    threshold: float | None = None  # an admin's override of the fitted out-of-scope threshold

    def describe(self) -> dict[str, Any]:
        run = self.result.run if self.result else None
        test = self.result.test if self.result else None
        return {
            "name": self.name,
            "method": self.info.method,
            "base_model": self.info.base_model,
            "backend": type(self.backend).__name__,
            "dataset": run.data if run else None,
            "num_labels": len(self.labels),
            "pooling": self.info.pooling,
            "shares_base": self.shared_key is not None,
            "out_of_scope": None
            if self.decider.ood is None
            else {
                "scorer": self.decider.ood.chosen,
                "threshold": self.threshold
                if self.threshold is not None
                else self.decider.ood.thresholds[self.decider.ood.chosen],
                "fitted_threshold": self.decider.ood.thresholds[self.decider.ood.chosen],
            },
            "metrics": {k: getattr(test, k) for k in ("accuracy", "f1_macro", "f1_weighted")}
            if test
            else None,
        }


class Registry:
    """Load, unload and run named adapters; thread-safe for loading, single-threaded for inference."""

    def __init__(
        self,
        bf16: bool | None = None,
        device: str | None = None,
        backend: str = "torch",
        onnx_file: str | None = None,
        onnx_threads: int | None = None,
    ) -> None:
        self.backend = backend  # torch (run folders) or onnxruntime (export folders with model.onnx)
        self.onnx_file = onnx_file
        self.onnx_threads = onnx_threads  # threads per ONNX Runtime session (None: its default, all cores)
        self.entries: dict[str, Entry] = {}
        self.bases: dict[tuple[str, ...], Any] = {}  # shared key -> PeftModel holding many adapters
        self.bf16 = bf16  # None: each run's recorded precision, where this machine runs it fast
        self.device = device
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ loading
    def load(self, name: str, run: str | Path) -> Entry:
        """Open `run` (the one opener, `inference/opener.py`) as adapter `name`: an adapter run joins
        the shared base of its kind; every other run, and any ONNX export, is its own model."""
        from intentlab.inference.opener import open_run
        from intentlab.models.io import model_folder, not_an_encoder_run
        from intentlab.models.storage import storage
        from intentlab.runs.model_info import read_model_info

        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise UserError(f"adapter name {name!r} is invalid. Use 1-64 letters, digits, '.', '_' or '-'.")
        run = Path(run)
        with self.lock:
            if name in self.entries:
                raise UserError(f"adapter {name!r} is already loaded. Unload it first or pick another name.")
            shared = False
            if self.backend != "onnxruntime":
                load_result(run)  # a finished run: refuses incomplete or foreign folders first
                kind = storage(read_model_info(model_folder(run))[0].weights)
                if not kind.encoder:  # the batcher feeds token ids: a TF-IDF run reads texts
                    raise not_an_encoder_run(run)
                shared = kind.shares_base
            if shared:
                entry = self._load_adapter(name, run)
            else:
                p = open_run(
                    run,
                    bf16=self.bf16,
                    device=self.device,
                    backend=self.backend,
                    onnx_file=self.onnx_file,
                    onnx_threads=self.onnx_threads,
                )
                entry = Entry(name, run, p.info, p.labels, p.result, None, p.backend, p.decider)
            self.entries[name] = entry
            return entry

    def _load_adapter(self, name: str, run: Path) -> Entry:
        from peft import PeftConfig
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from intentlab.inference.opener import placement_for, run_ood
        from intentlab.models.io import run_tokenizer
        from intentlab.runs.model_info import read_model_info
        from intentlab.runs.safe_files import check_safetensors, read_json

        folder = run / MODEL
        info, labels = read_model_info(folder)
        result = load_result(run)
        try:
            read_json(folder / "adapter" / "adapter_config.json")  # a regular file of sane JSON, first
            config = PeftConfig.from_pretrained(str(folder / "adapter"))
            check_safetensors(folder / "adapter" / "adapter_model.safetensors")
            state = load_file(folder / "adapter" / "adapter_model.safetensors")
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
            raise UserError(
                f"adapter files of {run} are missing or corrupt ({type(e).__name__}). Train the run again."
            ) from None
        # before the base changes: a corrupt ood/ must not leave this adapter attached to the shared base
        decider = Decider(labels, run_ood(run, result, len(labels)))
        head_state = {k: v for k, v in state.items() if ".classifier." in k or ".pooler." in k}
        adapter_state = {k: v for k, v in state.items() if k not in head_state}
        config = copy.deepcopy(config)
        config.modules_to_save = None  # heads live outside peft here (label sets differ per adapter)
        # served adapters never train (and peft allows one trainable adapter per base)
        config.inference_mode = True
        # a base holds its weights in bf16 for bf16 placements (`bf16_inference_weights`): not shareable
        # with adapters run in fp32
        placement = placement_for(run, self.bf16, self.device)
        key = (
            info.base_model,
            info.pooling,
            str(config.peft_type),
            str(sorted(recorded_encoder_options(info))),
            "bf16" if placement.bf16 else "fp32",
        )
        base = self.bases.get(key)
        shared = base is not None
        try:
            base = self._attach(base, name, config, info, adapter_state)
            if placement.bf16:
                bf16_inference_weights(base)
            head = self._head(base, labels, head_state)
            view = SharedAdapterView(base, peft_name(name), head, info.pooling)
            backend = TorchBackend(view, run_tokenizer(folder, info), info.max_length, placement)
        except Exception as e:
            if shared and peft_name(name) in base.peft_config:
                base.delete_adapter(peft_name(name))  # leave the shared base exactly as it was
            if isinstance(e, UserError):
                raise
            raise UserError(
                f"adapter of {run} could not be loaded onto base {info.base_model!r} "
                f"({type(e).__name__}: {str(e)[:120]}). Check the run."
            ) from None
        self.bases[key] = base
        return Entry(name, run, info, labels, result, key, backend, decider)

    @staticmethod
    def _attach(base: Any, name: str, config: Any, info: ModelInfo, state: dict[str, Any]) -> Any:
        """Add adapter `name` to `base` (or create the shared base with it) and load its weights."""
        from peft import get_peft_model, set_peft_model_state_dict

        from intentlab.models.classifier import IntentClassifier
        from intentlab.models.loading import load_encoder
        from intentlab.models.speed import no_adapter_input_casts

        if base is None:
            encoder = load_encoder(info.base_model, info.pooling, **recorded_encoder_options(info))
            shell = IntentClassifier(encoder, num_labels=1, pooling=info.pooling, dropout=0.0)
            shell.name_or_path = info.base_model
            base = get_peft_model(shell, config, adapter_name=peft_name(name))
        else:
            base.add_adapter(peft_name(name), config)
        res = set_peft_model_state_dict(base, state, adapter_name=peft_name(name))
        unexpected = list(getattr(res, "unexpected_keys", []))
        if unexpected:
            raise UserError(
                f"the adapter has weights its config does not declare ({unexpected[:2]}). Train it again."
            )
        no_adapter_input_casts(base)
        base.eval()
        return base

    @staticmethod
    def _head(base: Any, labels: list[str], state: dict[str, Any]) -> nn.ModuleDict:
        """The adapter's own classifier (and trained pooler), outside the shared base."""
        head = nn.ModuleDict()
        hidden = base.base_model.model.encoder.config.hidden_size
        head["classifier"] = nn.Linear(hidden, len(labels))
        head["classifier"].load_state_dict(
            {k.rsplit(".", 1)[1]: v for k, v in state.items() if ".classifier." in k}
        )
        pooler_state = {k.split(".pooler.", 1)[1]: v for k, v in state.items() if ".pooler." in k}
        if pooler_state:
            head["pooler"] = copy.deepcopy(base.base_model.model.encoder.pooler)
            head["pooler"].load_state_dict(pooler_state)
        return head.eval()

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
                    base.delete_adapter(peft_name(name))

    # ------------------------------------------------------------------ inference
    def encode(self, name: str, texts: list[str]) -> list[list[int]]:
        """Token ids for one request, with the adapter's own tokenizer (KeyError: not loaded)."""
        return self.entries[name].backend.encode(texts)

    def outputs_ids(self, name: str, ids: list[list[int]]) -> Outputs:
        entry = self.entries[name]
        return entry.backend.run_ids(ids, features=entry.decider.needs_features)

    def predict(
        self, name: str, texts: list[str], k: int, threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """What the API returns for `texts` (used by tests and benchmarks; requests go through the batcher)."""
        entry = self.entries[name]
        out = self.outputs_ids(name, self.encode(name, texts))
        used = threshold if threshold is not None else entry.threshold
        return [p.to_dict() for p in entry.decider.decide(out, k, used)]
