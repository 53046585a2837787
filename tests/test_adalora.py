"""AdaLoRA, the method added as one table entry: it trains, its rank budget is re-allocated from the
training loop, and its runs reload, serve and export like every other adapter's."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main
from intentlab.config import Config


def test_the_budget_schedule_follows_the_run_length(tiny_model: str) -> None:
    from intentlab.models.build import build_model

    cfg = Config(
        method="adalora",
        model=tiny_model,
        lora_r=4,
        target_modules=["query", "value"],
        peft_options={"init_r": 6, "tinit_fraction": 0.1, "tfinal_fraction": 0.2},
    )
    model = build_model(cfg, num_labels=3, total_steps=200)
    peft_cfg = model.peft_config["default"]
    assert (peft_cfg.total_step, peft_cfg.tinit, peft_cfg.tfinal) == (200, 20, 40)
    assert (peft_cfg.init_r, peft_cfg.target_r) == (6, 4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_E" in n for n in trainable) and any("classifier.modules_to_save" in n for n in trainable)
    short = build_model(cfg, num_labels=3, total_steps=3).peft_config["default"]
    assert short.tinit + short.tfinal < short.total_step  # no schedule that ends before it starts


@pytest.fixture(scope="module")
def adalora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    out = tmp_path_factory.mktemp("adalora") / "run"
    args = [
        *tiny_args(tiny_model, toy_data, 3),
        "--lora-r",
        "2",
        "--target-modules",
        "query,value",
        "--peft-options",
        "init_r=4,tinit_fraction=0.1,tfinal_fraction=0.3,deltaT=2",
    ]
    assert main(["train", "--method", "adalora", "--out", str(out), *args]) == 0
    return out


def test_training_prunes_the_rank_budget(adalora_run: Path) -> None:
    from safetensors.torch import load_file

    config = json.loads((adalora_run / "model" / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "ADALORA" and config["rank_pattern"], "update_and_allocate never ran"
    kept = sum(sum(mask) for mask in config["rank_pattern"].values())
    assert kept < 4 * len(config["rank_pattern"])  # some of the initial rank 4 per matrix was pruned
    state = load_file(adalora_run / "model" / "adapter" / "adapter_model.safetensors")
    assert any("classifier" in k for k in state)  # the head travels with the adapter
    rows = [json.loads(line) for line in (adalora_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_reload_serve_and_merge_reproduce_the_run(adalora_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.deploy.export import export_run
    from intentlab.inference.evaluate import evaluate_run
    from intentlab.inference.opener import open_run
    from intentlab.serving.app import create_app

    recorded = json.loads((adalora_run / "result.json").read_text())["test"]
    assert evaluate_run(adalora_run)["accuracy"] == recorded["accuracy"]
    texts = ["i lost my card", "how do i top up my account"]
    want = open_run(adalora_run).predict(texts, top_k=2)
    # served as "q": peft once misread AdaLoRA rank-pattern keys holding the adapter's name ("Query")
    with TestClient(create_app([str(adalora_run)], names=["q"])) as client:
        got = client.post("/v1/predict", json={"texts": texts, "top_k": 2}).json()["predictions"]
    assert [[(p["intent"], p["probability"]) for p in g["intents"]] for g in got] == want
    report = export_run(adalora_run, tmp_path / "merged", merge=True)
    art = report["artifacts"]["transformers"]
    assert art["top1_agreement"] == 1.0 and art["max_prob_diff"] <= art["tolerance"]


def test_reloading_does_not_warn_about_its_own_rank_pattern(adalora_run: Path) -> None:
    from intentlab.inference.opener import open_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        open_run(adalora_run)
    assert not [w for w in caught if "rank_pattern" in str(w.message)]


@pytest.mark.parametrize(
    "message, ignored",
    [
        # peft before 0.22, and 0.22's rewording: both about AdaLoRA's own keys
        (
            "The following rank_pattern keys did not match any targeted module and were ignored: "
            "['base_model.model.encoder.layer.0.attention.self.query.lora_E'].",
            True,
        ),
        (
            "The following rank_pattern keys did not match any targeted module or parameter and were ignored: "
            "['a.query.lora_E', 'a.value.lora_E'].",
            True,
        ),
        # a key that is not AdaLoRA's own still warns, whatever the wording
        (
            "The following rank_pattern keys did not match any targeted module or parameter and were ignored: "
            "['a.query.lora_E', 'a.dense'].",
            False,
        ),
        ("The following alpha_pattern keys did not match any targeted module: ['a.query'].", False),
    ],
)
def test_the_rank_pattern_filter_matches_on_keys_not_wording(message: str, ignored: bool) -> None:
    from intentlab.models.loading import quiet_transformers

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_transformers()  # installs the filter in front of "always"
        warnings.warn(message, RuntimeWarning, stacklevel=1)
    assert (not caught) == ignored
