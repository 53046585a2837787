"""`intentlab export RUN --out DIR [--merge] [--onnx [--quantize int8]]`: a deployable folder, verified.

- `--merge` (always for full and head runs): the adapter folded into the base weights (peft
  `merge_and_unload`) as a transformers folder. A [CLS]-pooled BERT run is a plain
  `BertForSequenceClassification` (no remote code); a mean-pooled run carries `modeling_intentlab.py`
  and says so (config, card, printed note).
- Without `--merge`, an adapter run is exported as a peft adapter: for a [CLS]-pooled BERT run in the
  standard form (`task_type: SEQ_CLS`, transformers' module names, the base model's hub id) that
  `PeftModel.from_pretrained` loads onto `AutoModelForSequenceClassification`; otherwise intentlab's own
  adapter, which fails loudly on any other model shape.
- `--onnx` also writes `model.onnx` (logits and pooled features); `--quantize int8` adds
  `model.int8.onnx`, refused when its top-1 agreement with the run is under `--min-agreement`.

Every export also holds the tokenizer, labels.json, intentlab.json, the run's out-of-scope state
(`ood/`) and a model card (README.md), so `intentlab predict` and `serve` read it too. Every artifact
is loaded back from disk the way its users load it and scored on the run's test split against the
run itself (unmerged, fp32): argmax identical and probabilities within `PROB_TOLERANCE`, or nothing
is kept. The numbers go to `export_verification.json` and are printed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.runs.files import CARD, EXPORT_MARKER, LABELS, MODEL_INFO, OOD

PROB_TOLERANCE = 1e-4
ONNX_TOLERANCE = 1e-3
QUANTIZE = (None, "int8")


def export_run(
    run: str | Path,
    out: str | Path,
    merge: bool = False,
    onnx: bool = False,
    overwrite: bool = False,
    data_dir: str | None = None,
    quantize: str | None = None,
    min_agreement: float = 0.99,
) -> dict[str, Any]:
    """Export and verify; returns the verification report (one entry per artifact)."""
    from intentlab.folders import OutputDir

    if quantize not in QUANTIZE:
        raise UserError(f"--quantize {quantize!r} is not supported. Use --quantize int8.")
    if quantize and not onnx:
        raise UserError("--quantize works on the ONNX export. Add --onnx.")
    if not 0 <= min_agreement <= 1:
        raise UserError(f"--min-agreement must be within 0..1, got {min_agreement}.")
    run, out = Path(run), Path(out)
    # staged: a killed export leaves no folder behind that serve could take for a verified one
    run_dir = OutputDir(
        out, overwrite, marker=EXPORT_MARKER, entries=None, complete=EXPORT_MARKER, staged=True
    )
    try:
        report = _export(run, run_dir, merge, onnx, data_dir, quantize, min_agreement)
    except BaseException:
        run_dir.abort()
        raise
    run_dir.commit()
    return report


def _agreement(probs: np.ndarray, ref: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    inscope = y >= 0
    return {
        "max_prob_diff": float(np.abs(probs - ref).max()),
        "top1_agreement": float(np.mean(probs.argmax(1) == ref.argmax(1))),
        "accuracy": float(np.mean(probs.argmax(1)[inscope] == y[inscope])),
    }


def _export(
    run: Path,
    run_dir: Any,
    merge: bool,
    onnx: bool,
    data_dir: str | None,
    quantize: str | None,
    min_agreement: float,
) -> dict[str, Any]:
    from intentlab.data.run_data import run_dataset
    from intentlab.deploy import hf
    from intentlab.inference.engine import Placement, TorchBackend, softmax
    from intentlab.models.adapters import recorded_encoder_options
    from intentlab.models.classifier import classifier_of
    from intentlab.models.io import load_model, model_folder
    from intentlab.runs.cards import onnx_section, write_card

    ds, cfg = run_dataset(run, data_dir, other_data=True)  # any texts verify an export
    fp32 = Placement.for_this_machine("cpu", bf16=False)
    loaded = load_model(run)
    merge = merge or onnx  # ONNX Runtime runs plain weights: an adapter is merged for it
    quantized = bool(recorded_encoder_options(loaded.info))
    if quantized and (merge or onnx):
        raise UserError(
            f"{run} is a QLoRA run: its adapter was trained on a 4-bit base, so merging it into full-precision "
            "weights would not reproduce it. Export the adapter (drop --merge and --onnx)."
        )
    ref_backend = TorchBackend(loaded.model, loaded.tokenizer, cfg.max_length, fp32)
    ids = ref_backend.encode(ds.test.texts)
    y = np.asarray(ds.ids(ds.test))
    ref = softmax(ref_backend.run_ids(ids).logits)
    encoder_config = classifier_of(loaded.model).encoder.config
    standard = hf.is_standard(loaded.info, encoder_config) and not quantized
    target = run_dir.claim()
    folder = model_folder(run)
    for name in (LABELS, MODEL_INFO):
        shutil.copy(folder / name, target / name)
    if (run / OOD).is_dir():
        shutil.copytree(run / OOD, target / OOD)
    artifacts: dict[str, Any] = {}

    def check(name: str, model: Any, tolerance: float = PROB_TOLERANCE) -> None:
        probs = softmax(TorchBackend(model, loaded.tokenizer, cfg.max_length, fp32).run_ids(ids).logits)
        artifacts[name] = {**_agreement(probs, ref, y), "tolerance": tolerance}

    if loaded.storage.mergeable and not merge:
        base_id = cfg.model
        if standard and encoder_config.model_type in hf.STANDARD_ADAPTER_TYPES:
            kind, loading = "peft adapter for BertForSequenceClassification (task_type SEQ_CLS)", "peft"
            hf.write_standard_adapter(folder, loaded.info, base_id, target)
            loaded.tokenizer.save_pretrained(target)
            check("peft adapter", hf.load_standard_adapter(target, base_id, len(loaded.labels)))
        else:
            why = "mean pooling" if not standard else "only BERT adapters are rewritten for peft's classes"
            kind, loading = (
                f"intentlab adapter ({why}: load it with intentlab, or export with --merge)",
                "intentlab",
            )
            shutil.copytree(folder / "adapter", target / "adapter")
            loaded.tokenizer.save_pretrained(target)
            _record_tokenizer(target, loaded)
            check("intentlab adapter", load_model(target).model)
    else:
        model = loaded.storage.merged(loaded.model)
        if standard:
            kind = f"transformers {hf.STANDARD[encoder_config.model_type][0]} (no remote code)"
            loading = "transformers"
            hf.write_standard(model, loaded.tokenizer, loaded.labels, loaded.info, target)
        else:
            kind, loading = (
                "transformers model with remote code (modeling_intentlab.py: mean pooling)",
                "remote-code",
            )
            hf.write_remote_code(model, loaded.tokenizer, loaded.labels, loaded.info, target)
        check("transformers", hf.load_transformers(target, remote_code=not standard))
        if onnx:
            _onnx(model, loaded.tokenizer, target, cfg.max_length, ids, ref, y, quantize, artifacts)
    _record_tokenizer(target, loaded)
    made_by = " ".join(
        ["intentlab export", run.name, "--out", Path(run_dir.path).name]
        + ["--merge"] * merge
        + ["--onnx"] * onnx
        + ([f"--quantize {quantize}"] if quantize and onnx else [])
    )
    extra = [onnx_section(artifacts, len(ids))] if "onnx" in artifacts else None
    write_card(run, target / CARD, kind=f"exported: {kind}", loading=loading, made_by=made_by, extra=extra)
    report = {"kind": kind, "standard": standard, "n": len(ids), "artifacts": artifacts}
    (target / EXPORT_MARKER).write_text(json.dumps(report, indent=2))
    failed = [
        name
        for name, a in artifacts.items()
        if (a["max_prob_diff"] > a["tolerance"] or a["top1_agreement"] < 1.0)
        and not (name == "onnx int8" and a["top1_agreement"] >= min_agreement)
    ]
    if failed:
        raise UserError(
            f"export of {run} does not reproduce the run's predictions ({', '.join(failed)}: "
            f"{json.dumps({n: artifacts[n] for n in failed})}). Nothing was kept."
        )
    return report


def _record_tokenizer(target: Path, loaded: Any) -> None:
    """The export's intentlab.json with the checksums of the tokenizer files it holds (the export's
    own copies, which `predict` and `serve` check like a run's)."""
    from dataclasses import replace

    from intentlab.models.io import write_model_info
    from intentlab.runs.safe_files import sha256_regular

    names = [n for n in loaded.info.tokenizer_files if (target / n).is_file()]
    info = replace(loaded.info, tokenizer_files={n: sha256_regular(target / n) for n in names})
    write_model_info(target, info, loaded.labels)


def _onnx(
    model: Any,
    tokenizer: Any,
    target: Path,
    max_length: int,
    ids: list[list[int]],
    ref: np.ndarray,
    y: np.ndarray,
    quantize: str | None,
    artifacts: dict[str, Any],
) -> None:
    from intentlab.deploy.onnx import export_onnx, quantize_int8
    from intentlab.inference.engine import softmax
    from intentlab.inference.onnx import OnnxBackend

    path = export_onnx(model, tokenizer, target)
    probs = softmax(OnnxBackend(path, tokenizer, max_length).run_ids(ids).logits)
    artifacts["onnx"] = {**_agreement(probs, ref, y), "tolerance": ONNX_TOLERANCE}
    if quantize == "int8":
        q = quantize_int8(path)
        probs = softmax(OnnxBackend(q, tokenizer, max_length).run_ids(ids).logits)
        artifacts["onnx int8"] = {
            **_agreement(probs, ref, y),
            "tolerance": 1.0,  # quantized weights: judged on top-1 agreement (--min-agreement)
            "bytes": q.stat().st_size,
            "fp32_bytes": path.stat().st_size,
        }
