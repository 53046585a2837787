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

# hub ids of the data sets intentlab knows by name, their language and licence (the cards' metadata)
DATASETS = {"banking77": ("PolyAI/banking77", "en", "cc-by-4.0")}
# licences of the packaged encoders (both Apache-2.0, as their model cards state)
MODEL_LICENSES = {
    "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
    "sentence-transformers/all-mpnet-base-v2": "apache-2.0",
    "all-mpnet-base-v2": "apache-2.0",
}

LOADING = {
    "transformers": (
        "```python\nfrom transformers import pipeline\n"
        'classify = pipeline("text-classification", model="PATH")\nclassify("I lost my card")\n```'
    ),
    "peft": (
        "```python\nimport json\nfrom peft import PeftModel\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        'labels = json.load(open("PATH/labels.json"))["labels"]\n'
        "base = AutoModelForSequenceClassification.from_pretrained(\n"
        '    "BASE",  # offline: a local copy of it\n'
        "    num_labels=NUM_LABELS,\n"
        "    id2label=dict(enumerate(labels)),\n"
        "    label2id={name: i for i, name in enumerate(labels)},\n"
        ")\n"
        'model = PeftModel.from_pretrained(base, "PATH").eval()\n'
        'tokenizer = AutoTokenizer.from_pretrained("PATH")\n```'
    ),
    "remote-code": (
        "This export uses **mean pooling**, which is not one of transformers' built-in heads, so loading it "
        "runs the `modeling_intentlab.py` beside this card (read it first):\n\n"
        "```python\nfrom transformers import AutoModelForSequenceClassification\n"
        'model = AutoModelForSequenceClassification.from_pretrained("PATH", trust_remote_code=True)\n```'
    ),
    "intentlab": '```bash\nintentlab predict PATH "I lost my card"\nintentlab serve PATH\n```',
}


def _hub_id(name: str) -> str | None:
    """The model's hub id, or None for a local path (never written into a card)."""
    return None if name.startswith(("/", ".", "~")) or Path(name).exists() else name


def onnx_section(artifacts: dict[str, Any], n: int) -> str:
    """How to run an export's ONNX files, with their measured agreement with the run."""
    files = [("model.onnx", "onnx", "fp32")] + (
        [("model.int8.onnx", "onnx int8", "dynamic int8")] if "onnx int8" in artifacts else []
    )
    measured = "; ".join(
        f"`{name}` ({kind}) agrees with the run on the top intent for "
        f"{100 * artifacts[key]['top1_agreement']:.1f}% of {n} verification texts "
        f"(largest probability difference {artifacts[key]['max_prob_diff']:.2g})"
        for name, key, kind in files
    )
    return (
        "## ONNX Runtime\n\n"
        f"{measured}. Inputs: `input_ids` and `attention_mask`, int64, shape (batch, tokens); the tokenizer's "
        "`token_type_ids` are not an input, so drop them. Outputs: `logits` (batch, intents) and `features` "
        "(the pooled sentence vector the out-of-scope scorers read).\n\n"
        "```python\nimport numpy as np, onnxruntime as ort\nfrom transformers import AutoTokenizer\n"
        'tokenizer = AutoTokenizer.from_pretrained("PATH")\n'
        'session = ort.InferenceSession("PATH/model.int8.onnx" if INT8 else "PATH/model.onnx")\n'
        'batch = tokenizer(["I lost my card"], return_tensors="np")\n'
        'inputs = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}\n'
        "logits, features = session.run(None, inputs)\n```"
    ).replace("INT8", "True" if len(files) > 1 else "False")


def _scrub(text: str) -> str:
    """Local absolute paths become their last part."""
    return re.sub(r"(?<![\w.])/(?:[^\s/'\"]+/)+([^\s/'\"]+)", r"\1", text)


def _metadata(result: RunResult, library: str) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    run, test = result.run, result.test
    evals = [
        EvalResult(
            task_type="text-classification",
            dataset_type=DATASETS.get(run.data, (run.data,))[0],
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
    dataset, language, _ = DATASETS.get(run.data, (run.data, None, None))
    return ModelCardData(
        base_model=base if M.get(run.method).encoder else None,
        license=MODEL_LICENSES.get(run.model),
        language=language,
        datasets=[dataset],
        library_name=library,
        pipeline_tag="text-classification",
        tags=["intent-classification", "intentlab", run.method],
        model_name=f"intentlab-{run.name}-{run.data}",
        eval_results=evals,
    )


def card_text(
    result: RunResult,
    labels: list[str],
    kind: str,
    loading: str,
    made_by: str | None = None,
    extra: list[str] | None = None,
) -> str:
    """The card's Markdown (with its YAML header). `made_by`: the command that wrote the folder (an
    export's), shown before the run's training command; `extra`: more sections (an export's ONNX files)."""
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
    if result.teacher:
        t = result.teacher
        lines.append(
            f"Distilled from a {M.prose(t.method)} run on `{_hub_id(t.model) or Path(t.model).name}` "
            f"(its test accuracy {100 * t.test_accuracy:.2f}%), with alpha {t.alpha:g} and temperature "
            f"{t.temperature:g}: the same architecture and serving cost as any run of its method."
        )
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
        *(extra or []),
        "## Labels",
        ", ".join(f"`{label}`" for label in labels),
        "## How it was made",
        *([f"```bash\n{made_by}\n```", "from a run trained with:"] if made_by else []),
        "```bash\n" + _scrub(" ".join(["intentlab", *result.meta.get("command", [])[1:]])) + "\n```",
        f"intentlab {result.meta.get('versions', {}).get('intentlab')}, torch {result.meta.get('versions', {}).get('torch')}, "
        f"transformers {result.meta.get('versions', {}).get('transformers')}, peft {result.meta.get('versions', {}).get('peft')}.",
    ]
    return _scrub("\n\n".join(lines)) + "\n"


def write_card(
    run: str | Path,
    dest: str | Path,
    kind: str = "intentlab run folder",
    loading: str = "intentlab",
    made_by: str | None = None,
    extra: list[str] | None = None,
) -> Path:
    """Write the card of `run` to `dest` (atomically)."""
    from intentlab.folders import write_text_atomic
    from intentlab.runs.model_info import read_model_info

    result = load_result(run)
    folder = Path(run) / MODEL if (Path(run) / MODEL / MODEL_INFO).is_file() else Path(run)  # run or export
    _, labels = read_model_info(folder)
    write_text_atomic(dest, card_text(result, labels, kind, loading, made_by, extra))
    return Path(dest)


def write_run_cards(run: str | Path) -> None:
    """The cards of a run's own folder: model/README.md, and model/adapter/README.md in place of peft's
    blank template (that adapter needs intentlab; `intentlab export` writes the standard forms)."""
    run = Path(run)
    write_card(run, run / MODEL / CARD)
    if (run / MODEL / "adapter").is_dir():
        write_card(run, run / MODEL / "adapter" / CARD, kind="intentlab adapter; load it with intentlab")
