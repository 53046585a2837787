"""Storage kinds as classes: how each kind of run prepares its model for training, saves its weights
into `<run>/model/`, loads them back and merges them for export.

    full      every weight (`model.safetensors` + `encoder/config.json`); no base model needed
    head      the trained head only (`head.safetensors`); the frozen encoder comes from the base model
    adapter   a peft adapter folder (`adapter/`) with the head in `modules_to_save`
    tfidf     the TF-IDF baseline as data (`tfidf.json` + `tfidf.safetensors`, models/tfidf.py)

A method names its kind in the method table (`intentlab/methods.py`); the kind's name is what
`intentlab.json` records as `weights`. Callers ask the kind (`storage(kind).save(...)`, `.merged()`,
`.shares_base`) and never compare its name: this module is the one place that knows what each kind is.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from intentlab.config import Config
from intentlab.errors import UserError
from intentlab.methods import ADAPTER, FULL, HEAD, TFIDF
from intentlab.runs.model_info import ModelInfo


class Storage:
    """One storage kind. Subclasses set the class attributes and implement what their kind does."""

    kind: ClassVar[str]
    files: ClassVar[tuple[str, ...]]  # weight files in model/ besides intentlab.json and labels.json
    encoder: ClassVar[bool] = True  # a BERT-family encoder run (False: the TF-IDF baseline)
    shares_base: ClassVar[bool] = False  # its runs can share one base model in memory (serving)
    frozen_encoder: ClassVar[bool] = False  # the encoder never trains: only the head (and pooler) does
    mergeable: ClassVar[bool] = False  # its trained parts sit beside the base weights until merged

    def prepare(self, cfg: Config, model: Any, total_steps: int) -> nn.Module:
        """Freeze, unfreeze or wrap a freshly built model so that what trains is what this kind saves."""
        raise NotImplementedError

    def save(self, model: Any, folder: Path) -> None:
        """Write the trained weights into the model folder (which exists)."""
        raise NotImplementedError

    def load(self, folder: Path, info: ModelInfo, labels: list[str], base: str) -> Any:
        """The trained model from its folder; `base` is the base model to load it onto."""
        raise NotImplementedError

    def merged(self, model: Any) -> Any:
        """The model with its trained parts folded into plain weights (exports); itself when it has none."""
        return model

    def weights_of(self, folder: Path) -> Iterable[Path]:
        return (folder / f for f in self.files)

    def check(self, folder: Path) -> None:
        """The kind's safetensors files are regular files with bounded headers (`runs/safe_files`),
        checked before safetensors parses them whole."""
        from intentlab.runs.safe_files import check_safetensors

        for path in self.weights_of(folder):
            if path.suffix == ".safetensors":
                check_safetensors(path)


class FullWeights(Storage):
    kind = FULL
    files = ("model.safetensors", "encoder/config.json")

    def prepare(self, cfg: Config, model: Any, total_steps: int) -> nn.Module:
        model.requires_grad_(True)
        if not cfg.train_word_embeddings:
            model.encoder.get_input_embeddings().requires_grad_(False)
        return model

    def save(self, model: Any, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
        model.encoder.config.save_pretrained(folder / "encoder")

    def load(self, folder: Path, info: ModelInfo, labels: list[str], base: str) -> Any:
        from safetensors.torch import load_file

        from intentlab.models.classifier import IntentClassifier
        from intentlab.models.loading import load_encoder

        encoder = load_encoder(str(folder / "encoder"), info.pooling, config_only=True)
        model = IntentClassifier(encoder, len(labels), info.pooling, info.dropout)
        model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
        return model


class HeadWeights(Storage):
    kind = HEAD
    files = ("head.safetensors",)
    frozen_encoder = True

    def prepare(self, cfg: Config, model: Any, total_steps: int) -> nn.Module:
        from intentlab.models.adapters import head_modules

        model.requires_grad_(False)
        for name in head_modules(cfg):
            module = model.classifier if name == "classifier" else model.encoder.pooler
            module.requires_grad_(True)
        return model

    def save(self, model: Any, folder: Path) -> None:
        from safetensors.torch import save_file

        state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, folder / "head.safetensors")

    def load(self, folder: Path, info: ModelInfo, labels: list[str], base: str) -> Any:
        from safetensors.torch import load_file

        from intentlab.models.classifier import IntentClassifier
        from intentlab.models.loading import load_encoder

        model = IntentClassifier(load_encoder(base, info.pooling), len(labels), info.pooling, info.dropout)
        state = load_file(folder / "head.safetensors")
        unexpected = set(state) - {n for n, _ in model.named_parameters()}
        if unexpected:
            raise UserError(
                f"{folder}/head.safetensors has unexpected weights {sorted(unexpected)[:3]}. Train the run again."
            )
        model.load_state_dict(state, strict=False)
        return model


class AdapterWeights(Storage):
    kind = ADAPTER
    files = ("adapter/adapter_config.json", "adapter/adapter_model.safetensors")
    shares_base = True
    mergeable = True

    def prepare(self, cfg: Config, model: Any, total_steps: int) -> nn.Module:
        from peft import get_peft_model

        from intentlab.models.adapters import peft_config

        config = peft_config(cfg, model, total_steps)
        try:
            return get_peft_model(model, config)
        except ValueError as e:
            raise UserError(
                f"{cfg.method}: {str(e).splitlines()[0][:200]}. Check target_modules against the model's layer names."
            ) from None

    def save(self, model: Any, folder: Path) -> None:
        # embeddings are never resized, so skip peft's vocabulary check (a hub lookup, even offline)
        model.save_pretrained(folder / "adapter", save_embedding_layers=False)

    def load(self, folder: Path, info: ModelInfo, labels: list[str], base: str) -> Any:
        from peft import PeftModel

        from intentlab.models.adapters import recorded_encoder_options
        from intentlab.models.classifier import IntentClassifier
        from intentlab.models.loading import load_encoder
        from intentlab.models.speed import no_adapter_input_casts

        encoder = load_encoder(base, info.pooling, **recorded_encoder_options(info))
        model = IntentClassifier(encoder, len(labels), info.pooling, info.dropout)
        model = PeftModel.from_pretrained(model, folder / "adapter")
        no_adapter_input_casts(model)
        return model

    def merged(self, model: Any) -> Any:
        return model.merge_and_unload()


class TfidfWeights(Storage):
    kind = TFIDF
    files = ("tfidf.json", "tfidf.safetensors")
    encoder = False

    def save(self, model: Any, folder: Path) -> None:
        from intentlab.models import tfidf

        tfidf.save(model, folder)

    def load(self, folder: Path, info: ModelInfo, labels: list[str], base: str) -> Any:
        from intentlab.models import tfidf

        return tfidf.load(folder, labels)


STORAGES: dict[str, Storage] = {
    s.kind: s for s in (FullWeights(), HeadWeights(), AdapterWeights(), TfidfWeights())
}


def storage(kind: str) -> Storage:
    """The storage class of a kind name (as the method table and intentlab.json give it)."""
    return STORAGES[kind]


def of_method(method: str) -> Storage:
    """The storage class of a method's runs."""
    from intentlab.methods import get

    return STORAGES[get(method).storage]
