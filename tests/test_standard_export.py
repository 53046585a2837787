"""Exports other stacks load without intentlab: a [CLS]-pooled run is a plain BertForSequenceClassification
(transformers, pipeline, peft), its model card parses with huggingface_hub, and an adapter that
cannot be standard fails loudly instead of predicting at chance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_args
from intentlab.cli import main

TEXTS = [
    "i lost my card",
    "how do i top up my account",
    "what exchange rate do you use",
    "my card has not arrived",
]

# Runs in a child process where importing intentlab fails: only torch, transformers and peft are used.
NO_INTENTLAB = """
import json, sys
sys.modules["intentlab"] = None  # any import of intentlab raises ImportError
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
folder, kind, base, texts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
tok = AutoTokenizer.from_pretrained(base if kind == "peft" else folder, trust_remote_code=False)
if kind == "peft":
    from peft import PeftModel
    labels = json.load(open(folder + "/labels.json"))["labels"]
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels), trust_remote_code=False)
    model = PeftModel.from_pretrained(model, folder).eval()
else:
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False).eval()
    clf = pipeline("text-classification", model=folder, trust_remote_code=False)
    print(json.dumps({"pipeline": [r["label"] for r in clf(texts)]}))
with torch.inference_mode():
    logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
print(json.dumps({"logits": logits.tolist(), "id2label": getattr(model.config, "id2label", None)}))
"""


def outside(folder: Path, kind: str, base: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", NO_INTENTLAB, str(folder), kind, base, json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    out = {}
    for line in proc.stdout.strip().splitlines():
        out.update(json.loads(line))
    return out


@pytest.fixture(scope="module")
def cls_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cls")
    runs = {}
    # the shipped default: [CLS] pooling for lora and full; adapters on the top layer only, as LoRA's
    # shipped adapter_layers does on MiniLM (on the 2-layer model its count of 3 would adapt both)
    extra = {
        "lora": ["--adapter-layers", "1"],
        "full": [],
        "ia3": ["--pooling", "cls", "--adapter-layers", "1"],
    }
    for method, flags in extra.items():
        runs[method] = root / method
        args = tiny_args(tiny_model, toy_data, 2)
        assert main(["train", "--method", method, "--out", str(runs[method]), *args, *flags]) == 0
        assert "pooling: cls" in (runs[method] / "config.yaml").read_text()
    return runs


@pytest.mark.parametrize("method", ["lora", "full"])
def test_cls_runs_export_as_plain_bert_for_sequence_classification(
    cls_runs: dict[str, Path], tmp_path: Path, method: str
) -> None:
    from intentlab.deploy.export import export_run
    from intentlab.inference.opener import open_run

    out = tmp_path / "export"
    report = export_run(cls_runs[method], out, merge=True)
    assert report["standard"] and not (out / "modeling_intentlab.py").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and "auto_map" not in config
    got = outside(out, "transformers", "")
    ref = open_run(cls_runs[method], bf16=False)
    np.testing.assert_allclose(np.array(got["logits"]), ref.logits(TEXTS), atol=1e-4)
    assert got["pipeline"] == [p[0][0] for p in ref.predict(TEXTS)]  # id2label set: real intent names


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_a_cls_adapter_exports_as_a_standard_peft_adapter(
    cls_runs: dict[str, Path], tmp_path: Path, tiny_model: str, method: str
) -> None:
    from safetensors.torch import load_file

    from intentlab.deploy.export import export_run
    from intentlab.inference.opener import open_run

    out = tmp_path / "adapter"
    export_run(cls_runs[method], out)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and config["base_model_name_or_path"] == tiny_model
    adapted = {
        k for k in load_file(out / "adapter_model.safetensors") if "classifier" not in k and "pooler" not in k
    }
    assert adapted and all(".layer.1." in k for k in adapted)  # --adapter-layers 1: the top layer only
    got = outside(out, "peft", tiny_model)
    np.testing.assert_allclose(
        np.array(got["logits"]), open_run(cls_runs[method], bf16=False).logits(TEXTS), atol=1e-4
    )


def test_a_mean_pooled_adapter_fails_loudly_on_the_standard_class(
    tmp_path: Path, tiny_model: str, toy_data: str
) -> None:
    run = tmp_path / "mean"
    args = [*tiny_args(tiny_model, toy_data, 1), "--pooling", "mean"]
    assert main(["train", "--method", "lora", "--out", str(run), *args]) == 0
    # the run's own adapter folder: peft refuses it rather than loading it with missing keys
    (run / "model" / "adapter" / "labels.json").write_text((run / "model" / "labels.json").read_text())
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_INTENTLAB,
            str(run / "model" / "adapter"),
            "peft",
            tiny_model,
            json.dumps(TEXTS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "No modules were targeted" in proc.stderr, proc.stderr[-800:]


def test_every_export_and_run_has_a_model_card(cls_runs: dict[str, Path], tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from intentlab.deploy.export import export_run

    export_run(cls_runs["full"], tmp_path / "export", merge=True)
    for path in (
        tmp_path / "export" / "README.md",
        cls_runs["lora"] / "model" / "README.md",
        cls_runs["lora"] / "model" / "adapter" / "README.md",
    ):
        card = ModelCard.load(path)
        metrics = {e.metric_type: e.metric_value for e in card.data.eval_results}
        assert set(metrics) == {"accuracy", "f1"} and 0 <= metrics["accuracy"] <= 1
        text = path.read_text()
        assert "card_arrival" in text and "## Intended use and limits" in text and "intentlab train" in text
        assert str(tmp_path) not in text and "/tmp/" not in text  # no local absolute paths
        assert card.data.base_model is None  # the tiny test model is a local path: never written


def test_the_adapter_cards_snippet_runs_as_written_and_names_the_intents(
    cls_runs: dict[str, Path], tmp_path: Path, tiny_model: str
) -> None:
    """The card's own code, copied out of it, in a process without intentlab: intent names, not LABEL_n."""
    import re

    from intentlab.deploy.export import export_run
    from intentlab.inference.opener import open_run

    out = tmp_path / "adapter"
    export_run(cls_runs["lora"], out)
    text = (out / "README.md").read_text()
    snippet = re.search(r"## How to load it\n\n```python\n(.*?)```", text, re.S).group(1)
    snippet = snippet.replace('"BASE_MODEL"', repr(tiny_model)).replace("PATH", str(out))
    check = f"""
import json, sys, torch
sys.modules["intentlab"] = None
{snippet}
with torch.inference_mode():
    logits = model(**tokenizer({TEXTS!r}, padding=True, return_tensors="pt")).logits
print(json.dumps({{"logits": logits.tolist(), "names": [model.config.id2label[int(i)] for i in logits.argmax(1)]}}))
"""
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    run = open_run(cls_runs["lora"], bf16=False)
    np.testing.assert_allclose(np.array(got["logits"]), run.logits(TEXTS), atol=1e-4)
    assert got["names"] == [p[0][0] for p in run.predict(TEXTS)]


def test_an_mpnet_cls_run_exports_as_plain_mpnet_for_sequence_classification(
    tmp_path: Path, toy_data: str
) -> None:
    """MPNet's own head (dense -> tanh -> projection on <s>) is intentlab's pooler -> linear: the merged
    export loads in plain transformers, without remote code, and gives the run's logits."""
    from intentlab.deploy.export import export_run
    from intentlab.inference.opener import open_run
    from test_packaged import tiny_mpnet

    model = tiny_mpnet(tmp_path / "mpnet")
    run = tmp_path / "run"
    args = [*tiny_args(str(model), toy_data, 2), "--pooling", "cls", "--method", "full"]
    assert main(["train", *args, "--out", str(run)]) == 0
    report = export_run(run, tmp_path / "export", merge=True)
    assert report["standard"] and "MPNetForSequenceClassification (no remote code)" in report["kind"]
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["architectures"] == ["MPNetForSequenceClassification"] and "auto_map" not in config
    got = outside(tmp_path / "export", "transformers", str(model))
    expected = open_run(run, bf16=False)
    np.testing.assert_allclose(np.array(got["logits"]), expected.logits(TEXTS), atol=1e-4)
    assert got["pipeline"] == [p[0][0] for p in expected.predict(TEXTS)]  # intent names, not LABEL_n
