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
from intentlab.inference.engine import Outputs, Placement, TorchBackend
from intentlab.inference.predictor import Decider
from intentlab.models.classifier import bf16_inference_weights
from intentlab.models.io import encoder_options
from intentlab.models.methods import ADAPTER
from intentlab.runs import RunResult

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
    info: dict[str, Any]
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
            "method": self.info["method"],
            "base_model": self.info["base_model"],
            "backend": type(self.backend).__name__,
            "dataset": run.data if run else None,
            "num_labels": len(self.labels),
            "pooling": self.info["pooling"],
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

    def _placement(self, run: Path) -> Placement:
        from intentlab.runs import read_config

        bf16 = self.bf16 if self.bf16 is not None else bool(read_config(run).bf16)
        return Placement.for_this_machine(self.device, bf16=bf16)

    @staticmethod
    def _backend(
        model: nn.Module, tokenizer: Any, info: dict[str, Any], placement: Placement
    ) -> TorchBackend:
        return TorchBackend(model, tokenizer, int(info.get("max_length", 128)), placement)

    # ------------------------------------------------------------------ loading
    def load(self, name: str, run: str | Path) -> Entry:
        from intentlab.models.io import load_model, read_model_info
        from intentlab.runs import load_result

        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise UserError(f"adapter name {name!r} is invalid. Use 1-64 letters, digits, '.', '_' or '-'.")
        run = Path(run)
        with self.lock:
            if name in self.entries:
                raise UserError(f"adapter {name!r} is already loaded. Unload it first or pick another name.")
            if self.backend == "onnxruntime":
                self.entries[name] = self._load_onnx(name, run)
                return self.entries[name]
            result = load_result(run)
            folder = run / "model"
            info, labels = read_model_info(folder)
            if info["weights"] != ADAPTER:
                loaded = load_model(run)
                backend = self._backend(loaded.model, loaded.tokenizer, info, self._placement(run))
                entry = Entry(name, run, info, labels, result, None, backend, self._decider(run, labels))
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
        result: RunResult,
    ) -> Entry:
        from peft import PeftConfig
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from intentlab.models.classifier import load_tokenizer

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
        # served adapters never train (and peft allows one trainable adapter per base)
        config.inference_mode = True
        # a base holds its weights in bf16 for bf16 placements (`bf16_inference_weights`): not shareable
        # with adapters run in fp32
        placement = self._placement(run)
        key = (
            info["base_model"],
            info["pooling"],
            str(config.peft_type),
            str(sorted(encoder_options(info))),
            "bf16" if placement.bf16 else "fp32",
        )
        base = self.bases.get(key)
        shared = base is not None
        try:
            base = self._attach(base, name, config, info, adapter_state)
            if placement.bf16:
                bf16_inference_weights(base)
            head = self._head(base, labels, head_state)
            view = SharedAdapterView(base, peft_name(name), head, info["pooling"])
            backend = self._backend(view, load_tokenizer(str(folder)), info, placement)
        except Exception as e:
            if shared and peft_name(name) in base.peft_config:
                base.delete_adapter(peft_name(name))  # leave the shared base exactly as it was
            if isinstance(e, UserError):
                raise
            raise UserError(
                f"adapter of {run} could not be loaded onto base {info['base_model']!r} "
                f"({type(e).__name__}: {str(e)[:120]}). Check the run."
            ) from None
        decider = self._decider(run, labels)
        self.bases[key] = base
        return Entry(name, run, info, labels, result, key, backend, decider)

    def _load_onnx(self, name: str, folder: Path) -> Entry:
        """An `intentlab export --onnx` folder on ONNX Runtime: int8 when it has one, else fp32."""
        from intentlab.deploy.onnx import FP32, INT8
        from intentlab.inference.onnx import OnnxBackend
        from intentlab.models.classifier import load_tokenizer
        from intentlab.models.io import read_model_info
        from intentlab.runs import RESULT, load_result

        candidates = [self.onnx_file] if self.onnx_file else [INT8, FP32]
        path = next((folder / c for c in candidates if (folder / c).is_file()), None)
        if path is None and (folder / "model").is_dir():  # a run folder, not an export of one
            raise UserError(
                f"{folder} is a run folder; --backend onnxruntime serves an export of it. Make one: "
                f"intentlab export {folder} --out EXPORT --merge --onnx [--quantize int8], then serve EXPORT."
            )
        if path is None:
            raise UserError(
                f"{folder} has no {' or '.join(candidates)}. Export the run first: "
                f"intentlab export RUN --out {folder} --merge --onnx [--quantize int8]."
            )
        info, labels = read_model_info(folder)
        backend = OnnxBackend(  # no spinning: idle ORT threads would take the CPU from the HTTP side
            path,
            load_tokenizer(str(folder)),
            int(info.get("max_length", 128)),
            threads=self.onnx_threads,
            spinning=False,
        )
        result = load_result(folder) if (folder / RESULT).is_file() else None
        return Entry(name, folder, info, labels, result, None, backend, self._decider(folder, labels))

    @staticmethod
    def _decider(run: Path, labels: list[str]) -> Decider:
        from intentlab.inference.ood import load as load_ood

        return Decider(labels, load_ood(run, len(labels)))

    @staticmethod
    def _attach(base: Any, name: str, config: Any, info: dict[str, Any], state: dict[str, Any]) -> Any:
        """Add adapter `name` to `base` (or create the shared base with it) and load its weights."""
        from peft import get_peft_model, set_peft_model_state_dict

        from intentlab.models.classifier import IntentClassifier, load_encoder, no_adapter_input_casts

        if base is None:
            encoder = load_encoder(info["base_model"], info["pooling"], **encoder_options(info))
            shell = IntentClassifier(encoder, num_labels=1, pooling=info["pooling"], dropout=0.0)
            shell.name_or_path = info["base_model"]
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
