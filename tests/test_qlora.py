"""QLoRA: LoRA on a 4-bit NF4 base through peft and bitsandbytes, which runs on the CPU here. The
adapter reloads (and serves) on a 4-bit base; merged exports are refused, not silently wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory: pytest.TempPathFactory, tiny64: str, toy_data: str) -> Path:
    out = tmp_path_factory.mktemp("qlora") / "run"
    assert main(["train", "--method", "qlora", "--out", str(out), *tiny_args(tiny64, toy_data, 2)]) == 0
    return out


def test_the_base_is_4_bit_and_only_lora_trains(tiny64: str) -> None:
    from bitsandbytes.nn import Linear4bit

    from intentlab.config import Config
    from intentlab.models.build import build_model

    model = build_model(Config(method="qlora", model=tiny64, target_modules=["all-linear"]), num_labels=4)
    base = model.get_base_model()
    assert isinstance(base.encoder.encoder.layer[0].attention.self.query.base_layer, Linear4bit)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)


def test_it_reloads_on_a_4_bit_base_and_serves(
    qlora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.inference.evaluate import evaluate_run
    from intentlab.serving.app import create_app

    recorded = json.loads((qlora_run / "result.json").read_text())["test"]["accuracy"]
    assert evaluate_run(qlora_run)["accuracy"] == recorded
    with TestClient(create_app([str(qlora_run)])) as client:
        assert client.post("/v1/predict", json={"texts": ["i lost my card"]}).status_code == 200
    assert main(["export", str(qlora_run), "--out", str(tmp_path / "m"), "--merge"]) == 2
    assert "4-bit base" in capsys.readouterr().err


def test_widths_4_bit_cannot_quantize_are_one_line(
    tmp_path: Path, tiny_model: str, toy_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["train", "--method", "qlora", "--out", str(tmp_path / "r"), *tiny_args(tiny_model, toy_data, 1)]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "multiples of 64" in err and "Traceback" not in err
