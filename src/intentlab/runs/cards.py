"""Model cards: a README.md with a Hugging Face `model-index` header for every run's model folder and
every export, written from the run record alone (no local absolute paths in it).

    write_card(run, run / "model" / "README.md", kind="intentlab run")

The YAML header is built with `huggingface_hub.ModelCardData`, so `ModelCard.load()` parses it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from intentlab import methods as M
from intentlab.runs.files import CARD, MODEL, MODEL_INFO
from intentlab.runs.record import RunResult, load_result

LOADING = {
    "transformers": (
        "```python\nfrom transformers import pipeline\n"
        'classify = pipeline("text-classification", model="PATH")\nclassify("I lost my card")\n```'
    ),
    "peft": (
        "```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForSequenceClassification\n"
        'base = AutoModelForSequenceClassification.from_pretrained("BASE", num_labels=NUM_LABELS)\n'
        'model = PeftModel.from_pretrained(base, "PATH")\n```'
    ),
    "remote-code": (
        "This export uses **mean pooling**, which is not one of transformers' built-in heads, so loading it "
        "runs the `modeling_intentlab.py` beside this card (read it first):\n\n"
        "```python\nfrom transformers import AutoModelForSequenceClassification\n"
        'model = AutoModelForSequenceClassification.from_pretrained("PATH", trust_remote_code=True)\n```'
    ),
    "onnx": (
        "```python\nimport onnxruntime as ort\n"
        'session = ort.InferenceSession("PATH/model.onnx")   # inputs: input_ids, attention_mask; outputs: logits, features\n```'
    ),
    "intentlab": '```bash\nintentlab predict PATH "I lost my card"\nintentlab serve PATH\n```',
}


def _hub_id(name: str) -> str | None:
    """The model's hub id, or None for a local path (never written into a card)."""
    return None if name.startswith(("/", ".", "~")) or Path(name).exists() else name


def _scrub(text: str) -> str:
    """Local absolute paths become their last part."""
    return re.sub(r"(?<![\w.])/(?:[^\s/'\"]+/)+([^\s/'\"]+)", r"\1", text)


def _metadata(result: RunResult, library: str) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    run, test = result.run, result.test
    evals = [
        EvalResult(
            task_type="text-classification",
            dataset_type=run.data,
            dataset_name=run.data,
            dataset_split="test",
            metric_type=metric,
            metric_name=label,
            metric_value=round(float(value), 4),
        )
        for metric, label, value in (
            ("accuracy", "accuracy (in scope)", test.accuracy),
            ("f1", "macro-F1 (in scope)", test.f1_macro),
        )
    ]
    base = _hub_id(run.model)
    return ModelCardData(
        base_model=base if M.get(run.method).encoder else None,
        datasets=[run.data],
        library_name=library,
        pipeline_tag="text-classification",
        tags=["intent-classification", "intentlab", run.method],
        model_name=f"intentlab-{run.name}-{run.data}",
        eval_results=evals,
    )


def card_text(result: RunResult, labels: list[str], kind: str, loading: str) -> str:
    """The card's Markdown (with its YAML header)."""
    run, test, train = result.run, result.test, result.train
    library = {"transformers": "transformers", "remote-code": "transformers", "peft": "peft"}.get(
        loading, "intentlab"
    )
    meta = _metadata(result, library)
    model = _hub_id(run.model) or f"a local model ({Path(run.model).name})"
    sizes = run.dataset.get("sizes", {})
    lines = [
        f"---\n{meta.to_yaml()}\n---",
        f"# {meta.model_name}",
        f"An intent classifier trained by intentlab ({kind}): "
        f"**{M.prose(run.method)}** on `{model}`, {len(labels)} intents of **{run.data}** "
        f"(train {sizes.get('train', '?')}, validation {sizes.get('validation', '?')}, test {sizes.get('test', '?')} texts).",
        f"## Results (test split, seed {run.seed})",
        f"| accuracy | macro-F1 | weighted F1 | texts |\n|---|---|---|---|\n"
        f"| {100 * test.accuracy:.2f}% | {100 * test.f1_macro:.2f}% | {100 * test.f1_weighted:.2f}% | {test.n} |",
        f"Trainable parameters: {train.trainable_params:,} of {train.total_params:,}; {train.epochs_run} epoch{'s' if train.epochs_run != 1 else ''} "
        f"(best validation accuracy {100 * train.best_val_accuracy:.2f}% at epoch {train.best_epoch}). One seed is "
        "one sample: intentlab's `compare` measures the spread over seeds.",
    ]
    if result.ood:
        ood = result.ood
        chosen = ood.chosen_metrics
        sep = ", ".join(
            f"AUROC {v['auroc']:.3f} against {g}" for g, v in chosen.get("groups", {}).items()
        ) or (
            f"AUROC {chosen['auroc']:.3f}"
            if "auroc" in chosen
            else "no out-of-scope test texts to measure on"
        )
        lines += [
            "## Out of scope",
            f'It says "none of these" when its **{ood.chosen}** score is below **{chosen["threshold"]:.4g}** '
            f"({ood.rule}). On test: {sep}; in-scope accuracy with rejection "
            f"{100 * chosen['inscope_accuracy_with_rejection']:.2f}%. Probabilities are calibrated with temperature "
            f"{ood.temperature:.3f} (ECE {ood.calibration['before']['ece']:.3f} -> {ood.calibration['after']['ece']:.3f}).",
        ]
    lines += [
        "## Intended use and limits",
        f"Routing short customer-service queries to one of the {len(labels)} intents below, in the language and "
        f"domain of {run.data}. It has only seen those intents: "
        + (
            "texts outside them are flagged out of scope by the threshold above, which is tuned on validation data "
            "and may need retuning on your traffic. "
            if result.ood
            else "it has no out-of-scope threshold, so it always names one of them; fit one with `intentlab ood`. "
        )
        + "Accuracy on other domains, languages or long texts is unmeasured.",
        "## How to load it",
        LOADING[loading]
        .replace("BASE", _hub_id(run.model) or "BASE_MODEL")
        .replace("NUM_LABELS", str(len(labels))),
        "## Labels",
        ", ".join(f"`{label}`" for label in labels),
        "## How it was made",
        "```bash\n" + _scrub(" ".join(["intentlab", *result.meta.get("command", [])[1:]])) + "\n```",
        f"intentlab {result.meta.get('versions', {}).get('intentlab')}, torch {result.meta.get('versions', {}).get('torch')}, "
        f"transformers {result.meta.get('versions', {}).get('transformers')}, peft {result.meta.get('versions', {}).get('peft')}.",
    ]
    return _scrub("\n\n".join(lines)) + "\n"


def write_card(
    run: str | Path, dest: str | Path, kind: str = "intentlab run folder", loading: str = "intentlab"
) -> Path:
    """Write the card of `run` to `dest` (atomically)."""
    from intentlab.folders import write_text_atomic
    from intentlab.runs.model_info import read_model_info

    result = load_result(run)
    folder = Path(run) / MODEL if (Path(run) / MODEL / MODEL_INFO).is_file() else Path(run)  # run or export
    _, labels = read_model_info(folder)
    write_text_atomic(dest, card_text(result, labels, kind, loading))
    return Path(dest)


def write_run_cards(run: str | Path) -> None:
    """The cards of a run's own folder: model/README.md, and model/adapter/README.md in place of peft's
    blank template (that adapter needs intentlab; `intentlab export` writes the standard forms)."""
    run = Path(run)
    write_card(run, run / MODEL / CARD)
    if (run / MODEL / "adapter").is_dir():
        write_card(run, run / MODEL / "adapter" / CARD, kind="intentlab adapter; load it with intentlab")
