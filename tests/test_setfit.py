"""SetFit as a method: trained by the setfit library, stored as an ordinary full run (no joblib), and
its body + logistic-regression head reproduced exactly by intentlab's classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_args
from intentlab.cli import main

pytest.importorskip("setfit")


def test_the_head_becomes_a_linear_layer_with_the_same_probabilities(tiny_model: str, toy_data: str) -> None:
    from intentlab.config import resolve
    from intentlab.data import dataset_for
    from intentlab.inference.engine import Placement, TorchBackend, softmax
    from intentlab.models.loading import load_tokenizer
    from intentlab.training.setfit import _fit, as_classifier

    cfg = resolve(
        "setfit", None, {"model": tiny_model, "data": toy_data, "setfit_max_pairs": 32, "batch_size": 8}
    )
    ds = dataset_for(cfg)
    model, _, pairs = _fit(cfg, ds)
    assert pairs == 32
    texts = ds.test.texts
    theirs = np.asarray(model.predict_proba(texts))
    clf = as_classifier(model, len(ds.labels))
    ours = softmax(
        TorchBackend(clf, load_tokenizer(tiny_model), 128, Placement.for_this_machine("cpu", bf16=False))
        .run(texts)
        .logits
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_a_setfit_run_is_an_ordinary_run(
    tmp_path: Path, tiny_model: str, toy_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intentlab.data import dataset_for
    from intentlab.inference.opener import open_run
    from intentlab.runs import read_config

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "setfit"
    args = [*tiny_args(tiny_model, toy_data, 1), "--setfit-max-pairs", "32"]
    assert main(["train", "--method", "setfit", "--out", str(out), *args]) == 0
    assert not list(cwd.iterdir())  # the setfit library's checkpoints/ never lands in the user's folder
    files = {p.name for p in (out / "model").iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".pkl", ".joblib")) for f in files)
    info = json.loads((out / "model" / "intentlab.json").read_text())
    assert (
        info["pooling"] == "mean" and info["weights"] == "full"
    )  # the tiny test body has no Normalize module
    recorded = json.loads((out / "test_predictions.json").read_text())["y_pred"]
    ds = dataset_for(read_config(out))
    assert open_run(out).logits(ds.test.texts).argmax(1).tolist() == recorded
    result = json.loads((out / "result.json").read_text())
    assert result["run"]["dataset"]["setfit_pairs"] == 32 and result["train"]["train_accuracy"] is not None
