"""End-to-end training on the tiny model: the run-directory contract, reloads, seeds, overwrite safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_args
from intentlab import methods as M
from intentlab.cli import main
from intentlab.folders import read_jsonl
from intentlab.runs.record import EPOCH_KEYS

RESULT_KEYS = {
    "run": ["method", "model", "seed"],
    "train": [
        "epochs",
        "trainable_params",
        "total_params",
        "train_seconds",
        "peak_memory_mb",
        "checkpoint_bytes",
    ],
    "test": ["accuracy", "f1_macro", "f1_weighted"],
    "meta": ["versions", "cpu", "machine_kind"],
}


def train_run(
    tmp_path: Path, train_args: list[str], method: str, name: str | None = None, *extra: str
) -> Path:
    out = tmp_path / (name or method)
    assert main(["train", "--method", method, "--out", str(out), *train_args, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    args = [
        *tiny_args(tiny_model, toy_data, 3),
    ]
    return train_run(tmp_path_factory.mktemp("runs"), args, "lora")


def test_run_directory_contract(lora_run: Path) -> None:
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "result.json",
        "test_predictions.json",
        "plots/training.png",
        "model/intentlab.json",
        "model/labels.json",
        "model/adapter/adapter_model.safetensors",
    ):
        assert (lora_run / name).is_file(), name
    rows = read_jsonl(lora_run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert set(EPOCH_KEYS) <= set(r)
    result = json.loads((lora_run / "result.json").read_text())
    for section, keys in RESULT_KEYS.items():
        for key in keys:
            assert key in result[section], f"{section}.{key}"
    assert result["train"]["epochs"] == rows
    assert result["run"]["method"] == "lora"
    assert 0 < result["train"]["trainable_params"] < result["train"]["total_params"]
    assert result["train"]["checkpoint_bytes"] > 0
    assert result["test"]["n"] == 32
    # a small training set is scored whole for train accuracy
    assert result["train"]["train_accuracy_examples"] == result["run"]["dataset"]["sizes"]["train"]
    assert 0 <= result["train"]["train_accuracy"] <= 1
    cfg = yaml.safe_load((lora_run / "config.yaml").read_text())
    assert cfg["epochs"] == 3 and cfg["bf16"] is False and cfg["method"] == "lora"
    # the toy task is learnable: three epochs get well above chance (25%)
    assert result["train"]["best_val_accuracy"] > 0.5


def test_reloaded_lora_predicts_exactly_as_in_training(lora_run: Path) -> None:
    from intentlab.inference.evaluate import evaluate_run
    from intentlab.inference.opener import open_run

    result = json.loads((lora_run / "result.json").read_text())
    saved = json.loads((lora_run / "test_predictions.json").read_text())
    m = evaluate_run(lora_run)
    assert m["accuracy"] == result["test"]["accuracy"]
    assert m["f1_macro"] == result["test"]["f1_macro"]
    assert m["loss"] == pytest.approx(result["test"]["loss"], abs=1e-6)
    p = open_run(lora_run)
    from intentlab.data import load_dataset

    ds = load_dataset(result["run"]["config"]["data"])
    preds = [top[0][0] for top in p.predict(ds.test.texts)]
    assert [p.labels.index(x) for x in preds] == saved["y_pred"]


def test_evaluate_cli_json(lora_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(lora_run), "--json"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    got = json.loads(last)
    assert set(got) == {"accuracy", "f1_macro", "f1_weighted", "loss", "n"}
    assert got["accuracy"] == json.loads((lora_run / "result.json").read_text())["test"]["accuracy"]


def test_same_seed_same_metrics(tmp_path: Path, train_args: list[str]) -> None:
    a = read_jsonl(train_run(tmp_path, train_args, "full", "a") / "metrics.jsonl")
    b = read_jsonl(train_run(tmp_path, train_args, "full", "b") / "metrics.jsonl")
    keys = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    c = read_jsonl(train_run(tmp_path, train_args, "full", "c", "--seed", "7") / "metrics.jsonl")
    assert [r["train_loss"] for r in c] != [r["train_loss"] for r in a]


# every method of the loop (QLoRA needs 64-wide layers: tests/test_qlora.py); lora has its own fixture above
@pytest.mark.parametrize("method", [m for m in M.where(regime=M.LOOP, quantized=False) if m != "lora"])
def test_every_method_trains_saves_and_reloads(tmp_path: Path, train_args: list[str], method: str) -> None:
    from intentlab.inference.evaluate import evaluate_run

    out = train_run(tmp_path, train_args, method)
    result = json.loads((out / "result.json").read_text())
    assert evaluate_run(out)["accuracy"] == result["test"]["accuracy"]
    if method == "full":  # every weight but the tiny model's word embeddings (full's shipped config)
        assert result["train"]["total_params"] - result["train"]["trainable_params"] == 30522 * 32
    else:
        assert result["train"]["trainable_params"] < result["train"]["total_params"] / 10


@pytest.mark.parametrize("train_words", [False, True])
def test_full_fixes_the_word_embeddings_unless_told_to_train_them(
    tmp_path: Path, train_args: list[str], tiny_model: str, train_words: bool
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModel

    flag = ["--train-word-embeddings"] if train_words else []  # fixed is full's shipped default
    out = train_run(tmp_path, train_args, "full", None, *flag)
    base = AutoModel.from_pretrained(tiny_model).state_dict()
    trained = load_file(out / "model" / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(trained[f"encoder.{key}"], base[key]) is not train_words
    position = "embeddings.position_embeddings.weight"
    assert not torch.equal(trained[f"encoder.{position}"], base[position])  # everything else trains
    result = json.loads((out / "result.json").read_text())
    fixed = result["train"]["total_params"] - result["train"]["trainable_params"]
    assert fixed == (0 if train_words else base[key].numel())
    assert result["run"]["config"]["train_word_embeddings"] is train_words


def test_existing_run_is_never_overwritten_without_flag(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = train_run(tmp_path, train_args, "head")
    before = (out / "result.json").read_bytes()
    capsys.readouterr()
    assert main(["train", "--method", "head", "--out", str(out), *train_args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert (out / "result.json").read_bytes() == before
    # a failing --overwrite (bad data) keeps the old run intact
    bad = [*train_args, "--data", str(tmp_path / "nope.csv")]  # argparse: the last --data wins
    assert main(["train", "--method", "head", "--out", str(out), "--overwrite", *bad]) == 2
    assert (out / "result.json").read_bytes() == before
    # a working --overwrite replaces it, and leaves no backup behind
    assert (
        main(["train", "--method", "head", "--out", str(out), "--overwrite", *train_args, "--seed", "3"]) == 0
    )
    assert json.loads((out / "result.json").read_text())["run"]["seed"] == 3
    # no backup left; only the (empty, hidden) lock file of the folder stays beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".head.lock", "head"]
    assert (tmp_path / ".head.lock").stat().st_size == 0


def test_early_stopping_restores_best_epoch(tmp_path: Path, train_args: list[str]) -> None:
    # lr so high that accuracy collapses after the first epochs: patience stops it, best weights return
    out = train_run(tmp_path, train_args, "full", "es", "--epochs", "6", "--lr", "0.5", "--patience", "1")
    result = json.loads((out / "result.json").read_text())
    rows = result["train"]["epochs"]
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert result["train"]["best_epoch"] == best["epoch"]
    assert result["train"]["stopped_early"] and len(rows) < 6
    assert len(rows) == best["epoch"] + 1  # patience 1: one epoch without a gain, then stop
    from intentlab.inference.evaluate import evaluate_run

    assert evaluate_run(out, split="validation")["accuracy"] == best["val_accuracy"]


def test_more_threads_than_cores_trains_with_a_warning(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenMP threads beyond the usable cores wait on each other: allowed, but said."""
    from intentlab import hardware

    monkeypatch.setattr(hardware, "usable_cores", lambda: 1)
    before = torch.get_num_threads()
    try:
        out = tmp_path / "run"
        assert main(["train", "--method", "head", "--out", str(out), *train_args, "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert "warning: threads 2 is more than the 1 CPU core(s) this process may use" in err, err
    assert (out / "result.json").is_file()
    capsys.readouterr()
    try:
        assert (
            main(["train", "--method", "head", "--out", str(tmp_path / "one"), *train_args, "--threads", "1"])
            == 0
        )
    finally:
        torch.set_num_threads(before)
    assert "more than the" not in capsys.readouterr().err


def test_an_adapter_run_trains_under_bf16(tmp_path: Path, tiny_model: str, toy_data: str) -> None:
    """Under bf16 autocast an adapter run stores its frozen linear weights in bf16 once (the setup's
    bf16 path, which the fp32 tests above never take)."""
    args = [a for a in tiny_args(tiny_model, toy_data, 1) if a != "--no-bf16"]
    out = tmp_path / "lora-bf16"
    assert main(["train", "--method", "lora", "--out", str(out), *args, "--bf16"]) == 0
    assert json.loads((out / "result.json").read_text())["run"]["config"]["bf16"] is True
