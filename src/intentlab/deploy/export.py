"""`intentlab export RUN --out DIR [--merge] [--onnx]`: a deployable folder, verified against the run.

- `--merge` folds LoRA/DoRA/IA3 into the base weights (peft `merge_and_unload`) and keeps the trained
  head. The result is a plain transformers folder (config.json with `auto_map`, model.safetensors,
  tokenizer, `modeling_intentlab.py`) that loads with `AutoModelForSequenceClassification`
  (`trust_remote_code=True`) and needs neither peft nor intentlab.
- Without `--merge`, an adapter run is exported as its portable peft adapter folder plus tokenizer and
  labels (load it on the base model with peft); a full or head run is always written merged.
- `--onnx` also writes `model.onnx` (torch.onnx exporter) with dynamic batch and sequence axes.

Every export is verified on the run's test split: argmax identical to the unmerged model, and
probabilities within `PROB_TOLERANCE`; the command prints both figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.models.methods import ADAPTER

PROB_TOLERANCE = 1e-4


def write_hf_folder(model: Any, tokenizer: Any, labels: list[str], info: dict[str, Any], out: Path) -> None:
    """Save an (unwrapped) IntentClassifier as a transformers folder with its modeling code."""
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
        "encoder": enc,
        "pooling": info["pooling"],
        "classifier_dropout": info.get("dropout", 0.1),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
        "intentlab": {k: info[k] for k in ("method", "base_model", "max_length") if k in info},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    shutil.copy(hf_template.__file__, out / "modeling_intentlab.py")
    tokenizer.save_pretrained(out)


def export_run(
    run: str | Path,
    out: str | Path,
    merge: bool = False,
    onnx: bool = False,
    overwrite: bool = False,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Export and verify; returns {'kind', 'max_prob_diff', 'argmax_equal', 'n', 'tolerance'}.

    The reference is the run itself, loaded unmerged, in fp32 on the CPU; the export is loaded back
    from the folder just written (never the in-memory model) and scored on the run's test split.
    """
    from intentlab.folders import OutputDir

    run, out = Path(run), Path(out)
    run_dir = OutputDir(out, overwrite, marker="export_verification.json", entries=None)
    try:
        report = _export(run, run_dir, merge, onnx, data_dir)
    except BaseException:
        run_dir.abort()
        raise
    run_dir.commit()
    return report


def _export(run: Path, run_dir: Any, merge: bool, onnx: bool, data_dir: str | None) -> dict[str, Any]:
    from intentlab.inference.engine import Placement, TorchBackend, softmax
    from intentlab.inference.evaluate import run_dataset
    from intentlab.models.io import load_model

    ds, cfg = run_dataset(run, data_dir, other_data=True)  # any texts verify an export
    fp32 = Placement.for_this_machine("cpu", bf16=False)
    loaded = load_model(run)
    ref = TorchBackend(loaded.model, loaded.tokenizer, cfg.max_length, fp32)
    ids = ref.encode(ds.test.texts)
    ref_probs = softmax(ref.run_ids(ids).logits)
    is_adapter = loaded.info["weights"] == ADAPTER
    if onnx and is_adapter and not merge:
        raise UserError("--onnx needs a merged model. Add --merge.")
    target = run_dir.claim()
    if is_adapter and not merge:
        kind = "peft adapter (unmerged)"
        shutil.copytree(run / "model", target, dirs_exist_ok=True)
        again = load_model(target)  # the exported folder, loaded on its own
    else:
        kind = "merged transformers model" if is_adapter else "transformers model"
        model = loaded.model.merge_and_unload() if is_adapter else loaded.model
        write_hf_folder(model, loaded.tokenizer, loaded.labels, loaded.info, target)
        again = _load_hf(target)
    probs = softmax(TorchBackend(again.model, loaded.tokenizer, cfg.max_length, fp32).run_ids(ids).logits)
    probs_onnx_diff = None
    if onnx:
        from intentlab.inference.onnx import OnnxBackend

        _export_onnx(target, loaded.tokenizer)
        onnx_backend = OnnxBackend(target / "model.onnx", loaded.tokenizer, cfg.max_length)
        probs_onnx_diff = float(np.abs(softmax(onnx_backend.run_ids(ids).logits) - ref_probs).max())
    diff = float(np.abs(probs - ref_probs).max())
    same = bool((probs.argmax(1) == ref_probs.argmax(1)).all())
    report = {
        "kind": kind,
        "n": len(ids),
        "max_prob_diff": diff,
        "argmax_equal": same,
        "tolerance": PROB_TOLERANCE,
        "onnx_max_prob_diff": probs_onnx_diff,
    }
    ok = (
        same
        and diff <= PROB_TOLERANCE
        and (probs_onnx_diff is None or probs_onnx_diff <= 10 * PROB_TOLERANCE)
    )
    (target / "export_verification.json").write_text(json.dumps(report, indent=2))
    if not ok:
        raise UserError(
            f"export of {run} does not reproduce the run's predictions ({report}). Nothing was kept."
        )
    return report


def _load_hf(folder: Path) -> Any:
    """The exported transformers folder, loaded through plain transformers."""
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification

    return SimpleNamespace(
        model=AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    )


def _export_onnx(folder: Path, tokenizer: Any) -> Path:
    """Write `folder/model.onnx` from the exported transformers folder (dynamic batch and sequence)."""
    from intentlab.inference.onnx import import_onnxruntime

    import_onnxruntime()
    import torch

    model = _load_hf(folder).model

    class Logits(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=input_ids, attention_mask=attention_mask).logits

    sample = tokenizer(
        ["an example query", "a second, longer example query"], padding=True, return_tensors="pt"
    )
    torch.onnx.export(
        Logits(model),
        (sample["input_ids"], sample["attention_mask"]),
        str(folder / "model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "logits": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    return folder / "model.onnx"
