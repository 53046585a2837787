"""The loop from served traffic back to training: serve --log (redacted, bounded, never failing a
request), review (small-text strategies, merged duplicates, Label Studio tasks), --import, train
--extra-data, drift."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import make_rows, tiny_args, write_csv
from intentlab.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("small_text")

TRAFFIC = [
    "my card 4111 1111 1111 1111 was stolen",
    "where is my new card",
    "where is my new card?",  # a duplicate, up to punctuation
    "what is the weather in paris tomorrow",
    "play some jazz music",
    "how do i top up my account",
    "rate for converting pounds",
    "my top up failed",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, oos_data: str) -> dict:
    """A run trained on data with out-of-scope rows, served with a redacting log, and its traffic."""
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app
    from intentlab.serving.traffic_log import TrafficLog

    root = tmp_path_factory.mktemp("traffic")
    run = root / "run"
    # the packaged MiniLM (seconds with the head method): a random tiny BERT's features are too alike
    # for near-duplicates to mean anything
    args = ["--data", oos_data, "--epochs", "3", "--no-bf16", "--threads", "1"]
    assert main(["train", "--method", "head", "--out", str(run), *args]) == 0
    log = TrafficLog(root / "logs", redact=[r"\b\d(?:[ -]?\d){12,18}\b"])
    with TestClient(create_app([str(run)], traffic_log=log)) as c:
        for i in range(3):
            for text in TRAFFIC[: 4 + i * 2]:
                assert c.post("/v1/predict", json={"texts": [text]}).status_code == 200
        health = c.get("/healthz").json()
    return {"root": root, "run": run, "logs": root / "logs", "health": health}


def test_the_log_holds_every_prediction_redacted(served: dict) -> None:
    from intentlab.serving.traffic_log import read_log

    records, bad = read_log(served["logs"])
    assert bad == 0 and len(records) == 4 + 6 + 8 and served["health"]["traffic_log"]["dropped"] == 0
    assert all(
        set(r) == {"time", "adapter", "text", "top", "out_of_scope", "score", "latency_ms"} for r in records
    )
    assert not any("4111" in r["text"] for r in records) and "my card [REDACTED] was stolen" in {
        r["text"] for r in records
    }
    assert all(isinstance(r["out_of_scope"], bool) for r in records)  # the run has a scorer


def test_review_merges_duplicates_and_writes_label_studio_tasks(served: dict) -> None:
    out = served["root"] / "review"
    assert (
        main(["review", str(served["logs"]), "--run", str(served["run"]), "--out", str(out), "--budget", "3"])
        == 0
    )
    with open(out / "review.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["guess_1"] and r["label"] == "" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["logged"] == 18 and summary["queries"] < len(TRAFFIC)  # merged: "where is my new card(?)"
    tasks = json.loads((out / "labelstudio_tasks.json").read_text())
    assert len(tasks) == 3
    pred = tasks[0]["predictions"][0]["result"][0]
    assert pred["type"] == "choices" and pred["from_name"] == "intent" and pred["to_name"] == "text"
    config = (out / "labelstudio_config.xml").read_text()
    assert '<Choices name="intent" toName="text"' in config and '<Choice value="oos"/>' in config


@pytest.mark.parametrize("strategy", ["margin", "entropy", "coreset", "random"])
def test_every_strategy_picks_the_budget(served: dict, strategy: str) -> None:
    out = served["root"] / f"review-{strategy}"
    argv = [
        "review",
        str(served["logs"]),
        "--run",
        str(served["run"]),
        "--out",
        str(out),
        "--budget",
        "2",
        "--strategy",
        strategy,
    ]
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["picked"] == 2


def test_the_strategies_rank_as_small_text_does() -> None:
    """margin picks the least-margin rows, coreset the farthest from the labelled ones."""
    import numpy as np

    from intentlab.traffic.review import select

    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.5, 0.5], [0.99, 0.01]])
    picks, _ = select("margin", probs, np.eye(4, 3), np.ones(4, dtype=int), 2, None, None)
    assert set(picks.tolist()) == {1, 2}
    feats = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.7, 0.7]])
    picks, why = select("coreset", probs, feats, np.ones(4, dtype=int), 1, np.array([[1.0, 0.0]]), None)
    assert picks.tolist() == [2] and why == ["diverse"]


def test_label_studio_export_and_a_filled_csv_import_back(served: dict, tmp_path: Path) -> None:
    review = served["root"] / "review"
    tasks = json.loads((review / "labelstudio_tasks.json").read_text())
    export = []
    for n, t in enumerate(tasks):  # what Label Studio exports once a person labelled them
        choice = "Out of scope" if n == 0 else "top_up"
        result = [
            {"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}
        ]
        export.append({**t, "id": n, "annotations": [{"result": result, "was_cancelled": False}]})
    export.append({"data": {"text": "never labelled"}, "annotations": []})
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert (
        main(["review", "--import", str(tmp_path / "export.json"), "--out", str(tmp_path / "labelled.csv")])
        == 0
    )
    with open(tmp_path / "labelled.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["oos", "top_up", "top_up"]  # out of scope -> the oos label
    filled = tmp_path / "filled.csv"
    with open(review / "review.csv", encoding="utf-8") as f:
        reviewed = list(csv.DictReader(f))
    reviewed[0]["label"] = "lost_card"
    with open(filled, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(reviewed[0]))
        writer.writeheader()
        writer.writerows(reviewed)
    assert main(["review", "--import", str(filled), "--out", str(tmp_path / "by-hand.csv")]) == 0
    assert (tmp_path / "by-hand.csv").read_text().count("\n") == 2  # header + the one labelled row


def test_train_with_extra_data_records_its_origin(tmp_path: Path, tiny_model: str, toy_data: str) -> None:
    extra = tmp_path / "labelled.csv"
    write_csv(
        extra,
        [
            *make_rows(3, seed=9, intents={"new_intent": ["open a joint account", "joint account please"]}),
            {"text": "weather in paris", "label": "oos"},
        ],
    )
    out = tmp_path / "run"
    argv = ["train", "--method", "head", "--out", str(out), "--extra-data", str(extra)]
    assert main([*argv, *tiny_args(tiny_model, toy_data, 1)]) == 0
    result = json.loads((out / "result.json").read_text())
    files = result["run"]["dataset"]["source"]["files"]
    assert files["extra"]["path"] == str(extra.resolve()) and len(files["extra"]["sha256"]) == 64
    assert result["run"]["dataset"]["source"]["extra_rows"] == 3
    assert "new_intent" in json.loads((out / "model" / "labels.json").read_text())["labels"]
    assert main(["evaluate", str(out), "--json"]) == 0  # the extra file's checksum is checked too
    extra.write_text(extra.read_text() + "one more,top_up\n")
    assert main(["evaluate", str(out)]) == 2


def test_drift_reports_windows_intents_and_words(served: dict) -> None:
    out = served["root"] / "drift"
    assert main(["drift", str(served["logs"]), "--run", str(served["run"]), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 18 and summary["windows"] and 0 <= summary["windows"][0]["js_distance"] <= 1
    assert "Jensen-Shannon" in summary["findings"] and (out / "charts" / "drift.png").is_file()
    assert "## Intents that grew" in (out / "report.md").read_text()


def test_a_full_or_unwritable_log_never_fails_a_request(
    tmp_path: Path, tiny_model: str, toy_data: str
) -> None:
    """The log folder is a file (so nothing can be written there): every request is served, every
    record is dropped and counted, /healthz says so."""
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app
    from intentlab.serving.traffic_log import TrafficLog

    run = tmp_path / "run"
    assert main(["train", "--method", "head", "--out", str(run), *tiny_args(tiny_model, toy_data, 1)]) == 0
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log folder should be")
    log = TrafficLog(blocked / "logs")
    with TestClient(create_app([str(run)], traffic_log=log)) as c:
        codes = [c.post("/v1/predict", json={"texts": [t]}).status_code for t in TRAFFIC]
        log.listener.stop()  # drain the queue (what closing the server does) before reading the counts
        log.listener.start()
        stats = c.get("/healthz").json()["traffic_log"]
    assert codes == [200] * len(TRAFFIC)
    assert stats["dropped"] == len(TRAFFIC) and stats["written"] == 0 and stats["last_error"]


def test_bad_review_input_is_one_line(
    served: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["review", str(tmp_path), "--run", str(served["run"]), "--out", str(tmp_path / "o")]
    assert main(argv) == 2 and "holds no traffic log" in capsys.readouterr().err
    argv = [
        "review",
        str(served["logs"]),
        "--run",
        str(served["run"]),
        "--out",
        str(tmp_path / "o"),
        "--strategy",
        "magic",
    ]
    assert main(argv) == 2 and "is not one of" in capsys.readouterr().err
    assert main(["serve", str(served["run"]), "--log-redact", "x"]) == 2
    assert "--log-redact masks what --log writes" in capsys.readouterr().err
