"""Prediction from run folders (texts and files) and verified exports (merged, adapter, full)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_args
from intentlab.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    args = [
        *tiny_args(tiny_model, toy_data, 2),
    ]
    out = {}
    for method in ("lora", "dora", "full"):  # mean pooling (dora's default): the remote-code export path
        out[method] = root / method
        assert main(["train", "--method", method, "--out", str(out[method]), *args, "--pooling", "mean"]) == 0
    return out


def test_predict_texts(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from intentlab.inference.opener import open_run

    p = open_run(runs["lora"])
    top = p.predict(["i lost my card", "what exchange rate do you use"], top_k=3)
    assert len(top) == 2 and all(len(t) == 3 for t in top)
    for t in top:
        probs = [x[1] for x in t]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
        assert {x[0] for x in t} <= set(p.labels)
    full = p.logits(["i lost my card", "what exchange rate do you use"])
    z = np.exp(full - full.max(1, keepdims=True))
    assert top[0][0][1] == pytest.approx((z / z.sum(1, keepdims=True))[0].max())
    capsys.readouterr()
    assert main(["predict", str(runs["lora"]), "i lost my card", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "i lost my card" and len(lines) == 3 and lines[1].strip().endswith(top[0][0][0])
    # texts after the options are texts too; after `--` even one that starts with "-"
    argv = [
        "predict",
        str(runs["lora"]),
        "i lost my card",
        "--top-k",
        "1",
        "what exchange rate",
        "--",
        "-5 fee",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[::2] == ["i lost my card", "what exchange rate", "-5 fee"] and len(lines) == 6
    assert main(["predict", str(runs["lora"]), "a text", "--top-k", "1", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_predict_file_csv_and_jsonl(runs: dict[str, Path], toy_data: str, tmp_path: Path) -> None:
    src = Path(toy_data) / "test.csv"
    out_csv, out_jsonl = tmp_path / "pred.csv", tmp_path / "pred.jsonl"
    assert (
        main(["predict", str(runs["full"]), "--input", str(src), "--output", str(out_csv), "--top-k", "2"])
        == 0
    )
    rows = list(csv.DictReader(out_csv.open()))
    texts = [r["text"] for r in csv.DictReader(src.open())]
    assert [r["text"] for r in rows] == texts and all(r["intent"] for r in rows)
    jsonl_in = tmp_path / "in.jsonl"
    jsonl_in.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert main(["predict", str(runs["full"]), "--input", str(jsonl_in), "--output", str(out_jsonl)]) == 0
    got = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert [g["intent"] for g in got] == [r["intent"] for r in rows]
    # an existing output is not overwritten
    before = out_csv.read_bytes()
    assert main(["predict", str(runs["full"]), "--input", str(src), "--output", str(out_csv)]) == 2
    assert out_csv.read_bytes() == before


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_mean_pooled_merged_export_is_labelled_remote_code(
    runs: dict[str, Path], tmp_path: Path, method: str
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from intentlab.deploy.export import export_run
    from intentlab.inference.opener import open_run

    out = tmp_path / "export"
    report = export_run(runs[method], out, merge=True)
    art = report["artifacts"]["transformers"]
    assert art["top1_agreement"] == 1.0 and art["max_prob_diff"] <= art["tolerance"]
    assert not report["standard"] and (out / "modeling_intentlab.py").is_file()
    config = json.loads((out / "config.json").read_text())
    assert (
        "mean pooling" in config["intentlab_remote_code"] and "remote code" in (out / "README.md").read_text()
    )
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    texts = ["i lost my card", "how do i top up my account", "when will the card be delivered"]
    with torch.inference_mode():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits.numpy()
    ref = open_run(runs[method], bf16=False).logits(texts)
    np.testing.assert_allclose(logits, ref, atol=1e-4)


def test_unmerged_adapter_export_and_refusals(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "adapter"
    assert main(["export", str(runs["lora"]), "--out", str(out)]) == 0
    assert "top-1 agreement 100.00%" in capsys.readouterr().out
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["export", str(runs["lora"]), "--out", str(out)]) == 2  # exists
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" not in err


def test_onnx_fp32_and_int8_exports(
    runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    out = tmp_path / "onnx"
    # a 2-epoch tiny model has near-ties between intents, so int8 may flip a few: a lower floor here
    argv = ["export", str(runs["lora"]), "--out", str(out), "--merge", "--onnx", "--quantize", "int8"]
    assert main([*argv, "--min-agreement", "0.8"]) == 0
    printed = capsys.readouterr().out
    assert "onnx int8" in printed and "MB" in printed
    assert "pre-processing" not in caplog.text  # ONNX Runtime's advice for CNNs is not shown
    report = json.loads((out / "export_verification.json").read_text())["artifacts"]
    assert report["onnx"]["max_prob_diff"] <= report["onnx"]["tolerance"]
    assert report["onnx int8"]["bytes"] < report["onnx int8"]["fp32_bytes"]
    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "features"]
    card = (
        out / "README.md"
    ).read_text()  # the card documents the ONNX files it ships, and how they were made
    assert "## ONNX Runtime" in card and "model.int8.onnx" in card and "token_type_ids" in card
    assert f"intentlab export {runs['lora'].name} --out onnx --merge --onnx --quantize int8" in card
    assert main(["export", str(runs["lora"]), "--out", str(tmp_path / "x"), "--quantize", "int8"]) == 2
    assert "Add --onnx" in capsys.readouterr().err


def test_int8_below_the_agreement_floor_is_refused(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    from intentlab.deploy import export, onnx
    from intentlab.errors import UserError

    real = onnx.quantize_int8

    def broken(fp32: Path) -> Path:  # a "quantized" model that is another run's network
        other = tmp_path / "other"
        export.export_run(runs["dora"], other, merge=True, onnx=True)
        out = real(fp32)
        out.write_bytes((other / "model.onnx").read_bytes())
        return out

    monkeypatch.setattr(onnx, "quantize_int8", broken)
    with pytest.raises(UserError, match="onnx int8"):
        export.export_run(
            runs["lora"], tmp_path / "q", merge=True, onnx=True, quantize="int8", min_agreement=1.0
        )
    assert not (tmp_path / "q").exists()


def test_baseline_run_predicts_and_evaluates_but_is_not_served(
    tmp_path: Path, tiny_model: str, toy_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from intentlab.inference.opener import open_run

    run = tmp_path / "baseline"
    assert (
        main(["train", "--method", "baseline", "--out", str(run), *tiny_args(tiny_model, toy_data, 1)]) == 0
    )
    recorded = json.loads((run / "result.json").read_text())["test"]["accuracy"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == recorded and again["loss"] is None
    assert main(["evaluate", str(run)]) == 0  # the plain print copes with no loss
    assert f"accuracy {recorded:.4f}" in capsys.readouterr().out
    p = open_run(run)
    preds = json.loads((run / "test_predictions.json").read_text())
    top = p.predict(["a text", "another one"], top_k=2)
    assert all(len(row) == 2 and row[0][1] >= row[1][1] for row in top)
    assert top[0][0][0] in preds["labels"]
    assert main(["export", str(run), "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert "is a TF-IDF baseline run" in err and "Traceback" not in err
    assert not (tmp_path / "exp").exists()


def test_serving_an_onnx_export(runs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.deploy.export import export_run
    from intentlab.errors import UserError
    from intentlab.inference.opener import open_run
    from intentlab.serving.app import Limits, create_app

    out = tmp_path / "onnx-export"
    export_run(runs["full"], out, merge=True, onnx=True, quantize="int8", min_agreement=0.8)
    texts = ["i lost my card", "how do i top up my account", "what exchange rate do you use"]
    want = open_run(runs["full"], bf16=False).predict(texts, top_k=2)
    for onnx_file, tol, parallel in (("model.onnx", 1e-4, 1), ("model.int8.onnx", 0.05, 2)):
        limits = Limits(parallel_batches=parallel)
        app = create_app([str(out)], backend="onnxruntime", onnx_file=onnx_file, limits=limits)
        with TestClient(app) as client:
            listed = client.get("/v1/adapters").json()["adapters"][0]
            assert listed["backend"] == "OnnxBackend" and listed["metrics"] is None
            session = app.state.registry.entries[listed["name"]].backend.session
            spin = session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
            assert spin == "0"  # serving: idle ORT threads sleep (measured: more requests/s, benchmarks/)
            threads = session.get_session_options().intra_op_num_threads
            assert threads == (0 if parallel == 1 else max(1, len(os.sched_getaffinity(0)) // parallel))
            got = client.post("/v1/predict", json={"texts": texts, "top_k": 2}).json()["predictions"]
        for g, w in zip(got, want, strict=True):
            assert [p["probability"] for p in g["intents"]] == pytest.approx([p for _, p in w], abs=tol)
    with pytest.raises(UserError, match=r"is a run folder; --backend onnxruntime serves an export of it"):
        create_app([str(runs["full"])], backend="onnxruntime", onnx_file="model.onnx")
    (tmp_path / "not-exported").mkdir()
    with pytest.raises(UserError, match=r"has no model\.onnx"):
        create_app([str(tmp_path / "not-exported")], backend="onnxruntime", onnx_file="model.onnx")


def test_runs_and_exports_are_readable_by_others(runs: dict[str, Path], tmp_path: Path) -> None:
    """Weights get the umask's permissions like every other file (safetensors writes them 0600), so
    another user or a container with another uid can load the model."""
    from intentlab.deploy.export import export_run

    old = os.umask(0o022)
    try:
        export_run(runs["full"], tmp_path / "export", merge=True)
        for folder in (runs["lora"], runs["full"], tmp_path / "export"):
            files = [p for p in folder.rglob("*") if p.is_file()]
            assert any(p.suffix == ".safetensors" for p in files)
            wrong = {str(p.relative_to(folder)): oct(p.stat().st_mode & 0o777) for p in files}
            assert {k: v for k, v in wrong.items() if v != "0o644"} == {}
    finally:
        os.umask(old)
