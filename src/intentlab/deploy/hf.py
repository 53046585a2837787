"""Writing a run's model in the forms other stacks load: a transformers folder and a peft adapter.

A run pooled over [CLS] with BERT's pooler (`--pooling cls`) is exactly transformers'
`BertForSequenceClassification` (pooler -> dropout -> linear), so it is written as one. An MPNet run
pooled over `<s>` is exactly `MPNetForSequenceClassification` at inference: its head is dropout ->
dense -> tanh -> dropout -> projection on `<s>`, and intentlab's is the checkpoint's pooler (dense ->
tanh on `<s>`) -> dropout -> linear, so the pooler becomes the head's dense layer and the linear layer
its projection (dropout is off at inference). Plain
`AutoModelForSequenceClassification.from_pretrained` and `pipeline("text-classification")` load it,
and its adapter loads with `PeftModel.from_pretrained` onto that class. A mean-pooled run has no
built-in transformers head: its folder carries `modeling_intentlab.py` (remote code, labelled as
such in its config and card), and its adapter is intentlab's own, which fails loudly elsewhere.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from intentlab.models.loading import resolve_model_path
from intentlab.runs.model_info import ModelInfo

# encoders whose [CLS] pooler + linear head is <Type>ForSequenceClassification, with the encoder's
# attribute there (ours is `encoder`) and where our pooler and linear layer go
STANDARD = {
    "bert": ("BertForSequenceClassification", "bert", {}),
    "mpnet": (
        "MPNetForSequenceClassification",
        "mpnet",
        {"encoder.pooler.dense.": "classifier.dense.", "classifier.": "classifier.out_proj."},
    ),
}
STANDARD_TYPES = tuple(STANDARD)
STANDARD_ADAPTER_TYPES = ("bert",)  # peft adapters rewritten for the standard class (module paths)
PREFIX = "bert"  # the encoder's attribute in BertForSequenceClassification (ours is `encoder`)


def is_standard(info: ModelInfo, encoder_config: Any) -> bool:
    """True when the run's head is exactly transformers' built-in sequence-classification head."""
    return info.pooling == "cls" and getattr(encoder_config, "model_type", None) in STANDARD_TYPES


def _labelled_config(encoder_config: Any, labels: list[str], dropout: float, architecture: str) -> Any:
    config = encoder_config.__class__.from_dict(encoder_config.to_dict())
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.classifier_dropout = dropout
    config.architectures = [architecture]
    return config


def _standard_name(key: str, prefix: str, moves: dict[str, str]) -> str:
    for ours, theirs in moves.items():
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    return re.sub(r"^encoder\.", f"{prefix}.", key)


def write_standard(model: Any, tokenizer: Any, labels: list[str], info: ModelInfo, out: Path) -> None:
    """A merged [CLS]-pooled model as a plain <Type>ForSequenceClassification folder."""
    import transformers

    architecture, prefix, moves = STANDARD[model.encoder.config.model_type]
    config = _labelled_config(model.encoder.config, labels, info.dropout, architecture)
    hf = getattr(transformers, architecture)(config)
    state = {_standard_name(k, prefix, moves): v for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise ValueError(f"weights do not map onto {architecture}: {missing[:3]} {unexpected[:3]}")
    hf.save_pretrained(out)
    tokenizer.save_pretrained(out)


def write_remote_code(model: Any, tokenizer: Any, labels: list[str], info: ModelInfo, out: Path) -> None:
    """A merged mean-pooled model as a transformers folder with its modeling code (remote code)."""
    import torch  # noqa: F401  (safetensors.torch needs it)
    from safetensors.torch import save_file

    from intentlab.deploy import hf_template

    enc = model.encoder.config.to_dict()
    for key in ("architectures", "auto_map", "_name_or_path", "transformers_version", "id2label", "label2id"):
        enc.pop(key, None)
    config = {
        "model_type": "intentlab",
        "architectures": ["IntentlabForSequenceClassification"],
        "auto_map": {
            "AutoConfig": "modeling_intentlab.IntentlabConfig",
            "AutoModelForSequenceClassification": "modeling_intentlab.IntentlabForSequenceClassification",
        },
        "intentlab_remote_code": "mean pooling is not a built-in transformers head: loading runs modeling_intentlab.py",
        "encoder": enc,
        "pooling": info.pooling,
        "classifier_dropout": info.dropout,
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    shutil.copy(hf_template.__file__, out / "modeling_intentlab.py")
    tokenizer.save_pretrained(out)


def load_transformers(folder: Path, remote_code: bool) -> Any:
    """The exported folder through transformers' `from_pretrained`, to verify it. A remote-code export is
    loaded with intentlab's own copy of its model class (the file it was copied from), never with
    `trust_remote_code`: intentlab runs no code from a folder, even one it has just written."""
    from transformers import AutoModelForSequenceClassification

    if remote_code:
        from intentlab.deploy.hf_template import IntentlabForSequenceClassification

        return IntentlabForSequenceClassification.from_pretrained(folder).eval()
    return AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False).eval()


def write_standard_adapter(run_model: Path, info: ModelInfo, base_id: str, out: Path) -> None:
    """The run's peft adapter rewritten for BertForSequenceClassification: task_type SEQ_CLS, standard
    module paths, and the base model's hub id."""
    from safetensors.torch import load_file, save_file

    src = run_model / "adapter"
    config = json.loads((src / "adapter_config.json").read_text())
    for key in ("target_modules", "feedforward_modules"):  # feedforward: IA3's
        if isinstance(config.get(key), str):  # older runs' lists of names already fit the standard class
            config[key] = config[key].replace(r"encoder\.encoder\.", rf"{PREFIX}\.encoder\.")
    for key in ("rank_pattern", "alpha_pattern"):
        if isinstance(config.get(key), dict):
            config[key] = {re.sub(r"^encoder\.", f"{PREFIX}.", k): v for k, v in config[key].items()}
    config.update(task_type="SEQ_CLS", base_model_name_or_path=base_id, inference_mode=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    state = load_file(src / "adapter_model.safetensors")
    renamed = {
        re.sub(r"^base_model\.model\.encoder\.", f"base_model.model.{PREFIX}.", k): v
        for k, v in state.items()
    }
    save_file({k: v.contiguous() for k, v in renamed.items()}, out / "adapter_model.safetensors")


def load_standard_adapter(folder: Path, base: str, num_labels: int) -> Any:
    """The standard adapter on transformers' own class, the way a peft user loads it."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(base), num_labels=num_labels
    )
    return PeftModel.from_pretrained(model, folder).eval()
