"""Reports from hand-written run folders: files, exact aggregates, findings that follow the numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from intentlab.errors import UserError
from intentlab.folders import write_json_atomic
from intentlab.reporting.report import build_report
from intentlab.runs.record import SCHEMA_VERSION

LABELS = ["a", "b", "c", "d"]


def fake_run(
    root: Path,
    method: str,
    seed: int,
    acc: float,
    epoch_s: float = 10.0,
    trainable: int = 1000,
    ckpt: int = 10_000,
    n_test: int = 200,
    split: str = "fp1",
    data: str = "toy",
) -> Path:
    """A complete run folder whose test predictions have exactly `acc` accuracy."""
    y = np.random.default_rng(n_test).integers(0, 4, n_test)  # the same test set for every run
    rng = np.random.default_rng([seed, sum(map(ord, method))])
    pred = y.copy()
    wrong = rng.choice(n_test, round(n_test * (1 - acc)), replace=False)
    pred[wrong] = (y[wrong] + 1) % 4
    rows = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.1 / e,
            "val_accuracy": acc - 0.1 / e,
            "val_f1_macro": acc - 0.1 / e,
            "val_f1_weighted": acc - 0.1 / e,
            "epoch_seconds": epoch_s,
            "train_examples_per_second": 100 / epoch_s,
            "lr": 1e-3,
            "elapsed_seconds": e * epoch_s,
        }
        for e in (1, 2, 3)
    ]
    per_class = {
        lab: {
            "precision": 1.0,
            "recall": 1.0,
            "f1": float(np.mean(pred[y == i] == i)),
            "support": int((y == i).sum()),
        }
        for i, lab in enumerate(LABELS)
    }
    path = root / method / f"seed-{seed}"
    result = {
        "run": {
            "method": method,
            "model": "tiny",
            "seed": seed,
            "data": data,
            "split_fingerprint": split,
            "config": {"name": None},
            "dataset": {
                "name": data,
                "num_labels": 4,
                "sizes": {"train": 100, "validation": 20, "test": n_test},
                "train_label_counts": {lab: 25 for lab in LABELS},
                "source": {"carved": ["validation"]},
                "train_token_lengths": {"5": 10, "8": 60, "12": 30},
            },
        },
        "train": {
            "epochs": rows,
            "best_epoch": 3,
            "memory_kind": "process_peak_rss",
            "best_val_accuracy": max(r["val_accuracy"] for r in rows),
            "trainable_params": trainable,
            "total_params": 100_000,
            "trainable_percent": trainable / 1000,
            "train_seconds": 3 * epoch_s,
            "mean_epoch_seconds": epoch_s,
            "train_examples_per_second": 100 / epoch_s,
            "peak_memory_mb": 500.0,
            "checkpoint_bytes": ckpt,
        },
        "test": {
            "accuracy": float(np.mean(pred == y)),
            "f1_macro": float(np.mean(pred == y)) - 0.01,
            "f1_weighted": float(np.mean(pred == y)),
            "loss": 0.3,
            "n": n_test,
            "per_class": per_class,
        },
        "meta": {"schema_version": SCHEMA_VERSION, "versions": {"intentlab": "test"}, "cpu": "test cpu"},
    }
    write_json_atomic(path / "result.json", result)
    write_json_atomic(
        path / "test_predictions.json", {"labels": LABELS, "y_true": y.tolist(), "y_pred": pred.tolist()}
    )
    (path / "config.yaml").write_text(f"method: {method}\n")
    return path


def make_study(root: Path, lora_acc: float, full_acc: float, lora_epoch_s: float = 8.0) -> Path:
    for s, jitter in enumerate((-0.005, 0.0, 0.005)):
        fake_run(root, "lora", s, lora_acc + jitter, epoch_s=lora_epoch_s, trainable=1_000, ckpt=20_000)
        fake_run(root, "full", s, full_acc + jitter, epoch_s=10.0, trainable=100_000, ckpt=1_200_000)
    fake_run(root, "baseline", 0, 0.80, epoch_s=1.0, trainable=5_000, ckpt=50_000)
    return root


def test_report_writes_both_files_and_exact_aggregates(tmp_path: Path) -> None:
    runs = make_study(tmp_path / "runs", lora_acc=0.90, full_acc=0.95)
    rep = build_report([runs], tmp_path / "out")
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "report.html").is_file()
    by = {r["name"]: r for r in rep["summary"]}
    assert list(by) == ["baseline", "lora", "full"]
    for method in ("lora", "full"):
        accs = [
            json.loads((runs / method / f"seed-{s}" / "result.json").read_text())["test"]["accuracy"]
            for s in range(3)
        ]
        assert by[method]["n"] == 3
        assert by[method]["test_accuracy"][0] == pytest.approx(np.mean(accs))
        assert by[method]["test_accuracy"][1] == pytest.approx(np.std(accs, ddof=1))
    md = (tmp_path / "out" / "report.md").read_text()
    for needle in (
        "Epoch | Training Loss | Validation Loss | Accuracy | F1",
        "Findings",
        "McNemar",
        "examples per intent",
        "of 3 methods on **",  # methods, not groups, when each method is one group
        f"{100 * by['lora']['test_accuracy'][0]:.2f} ± {100 * by['lora']['test_accuracy'][1]:.2f}",
    ):
        assert needle in md, needle
    from intentlab.methods import colour

    for chart, drawn in (
        ("curves", ("baseline", "lora", "full")),  # every method's line, in its table colour
        ("accuracy_vs_time", ("lora", "full")),
        ("frontier", ("baseline", "lora", "full")),
        ("per_class_difference", ()),
        ("confusions", ()),
        ("examples_per_intent", ()),
        ("token_lengths", ()),
    ):
        pixels = png_colours(tmp_path / "out" / "charts" / f"{chart}.png")
        assert len(pixels) > 20, f"{chart} looks blank"
        for method in drawn:
            rgb = tuple(int(colour(method)[i : i + 2], 16) for i in (1, 3, 5))
            assert rgb in pixels, f"{chart} has no {method} ({colour(method)}) pixels"


def png_colours(path: Path) -> set[tuple[int, ...]]:
    """The distinct RGB colours of a PNG."""
    import matplotlib.image

    img = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(int)
    return {tuple(c) for c in img.reshape(-1, 3)}


def test_html_is_self_contained(tmp_path: Path) -> None:
    build_report([make_study(tmp_path / "runs", 0.9, 0.95)], tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    assert not re.search(r"(?:src|href)=[\"']?(?:https?:)?//", html)
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 7


def findings_text(tmp_path: Path, lora: float, full: float, lora_epoch_s: float) -> str:
    rep = build_report(
        [make_study(tmp_path / f"runs-{lora}-{lora_epoch_s}", lora, full, lora_epoch_s)],
        tmp_path / f"out-{lora}",
    )
    return (tmp_path / f"out-{lora}" / "report.md").read_text().split("## Findings")[1].split("##")[0], rep


def test_findings_flip_when_numbers_flip(tmp_path: Path) -> None:
    worse, _ = findings_text(tmp_path, 0.90, 0.95, lora_epoch_s=8.0)
    assert "LoRA reached 94.7% of full fine-tuning's test accuracy" in worse
    assert "per epoch it was 1.2× faster" in worse
    assert "a real difference" in worse
    assert "its checkpoint is 60.0× smaller" in worse
    better, _ = findings_text(tmp_path, 0.97, 0.95, lora_epoch_s=12.5)
    assert "LoRA beat full fine-tuning's test accuracy by 2.00 points" in better
    assert "per epoch it was 1.2× slower" in better
    same, _ = findings_text(tmp_path, 0.951, 0.95, lora_epoch_s=10)
    lora_line = next(line for line in same.splitlines() if "LoRA matched" in line or "LoRA beat full" in line)
    assert "within noise" in lora_line


def test_baseline_floor_sentence(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    fake_run(root, "head", 0, 0.70)
    fake_run(root, "baseline", 0, 0.80)
    build_report([root], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "did not beat the TF-IDF baseline" in text


def test_incomplete_and_foreign_runs_are_named_not_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_study(tmp_path / "runs", 0.9, 0.95)
    (root / "lora" / "seed-9").mkdir()
    (root / "lora" / "seed-9" / "config.yaml").write_text("method: lora\n")
    newer = fake_run(root, "full", 9, 0.9)
    data = json.loads((newer / "result.json").read_text())
    data["meta"]["schema_version"] = SCHEMA_VERSION + 1
    (newer / "result.json").write_text(json.dumps(data))
    rep = build_report([root, tmp_path / "missing"], tmp_path / "out")
    err = capsys.readouterr().err
    assert "seed-9" in err and "incomplete" in err and "schema version" in err and "missing" in err
    assert len(rep["problems"]) == 3
    assert "Runs left out" in (tmp_path / "out" / "report.md").read_text()
    assert {r["name"]: r["n"] for r in rep["summary"]}["lora"] == 3


def test_mixing_splits_is_refused(tmp_path: Path) -> None:
    fake_run(tmp_path / "runs", "lora", 0, 0.9, split="fp1")
    fake_run(tmp_path / "runs", "full", 0, 0.9, split="fp2")
    with pytest.raises(UserError, match="different datasets or data splits"):
        build_report([tmp_path / "runs"], tmp_path / "out")
    with pytest.raises(UserError, match="no complete runs"):
        build_report([tmp_path / "nothing"], tmp_path / "out2")


def test_runs_on_the_same_test_file_compare_whatever_their_data_is_called(tmp_path: Path) -> None:
    """A cleaned copy (`intentlab audit --write-clean`) or training data with extra rows keeps the
    original's validation and test files: its runs compare with the original's, with paired tests."""

    def with_files(run: Path, test_sha: str) -> None:
        data = json.loads((run / "result.json").read_text())
        data["run"]["dataset"]["source"] = {
            "carved": [],
            "files": {"validation": {"sha256": "v" * 64}, "test": {"sha256": test_sha}},
        }
        (run / "result.json").write_text(json.dumps(data))

    original = fake_run(tmp_path / "runs", "lora", 0, 0.90, data="original", split="fp1")
    cleaned = fake_run(tmp_path / "runs", "full", 0, 0.92, data="cleaned", split="fp2")
    with pytest.raises(UserError, match="different datasets or data splits"):
        build_report([tmp_path / "runs"], tmp_path / "out0")  # nothing says they share a test set
    for run in (original, cleaned):
        with_files(run, "t" * 64)
    rep = build_report([tmp_path / "runs"], tmp_path / "out")
    assert {r["name"] for r in rep["summary"]} == {"lora", "full"} and "McNemar" in (
        tmp_path / "out" / "report.md"
    ).read_text()
    with_files(cleaned, "u" * 64)  # another test file: refused again
    with pytest.raises(UserError, match="different datasets or data splits"):
        build_report([tmp_path / "runs"], tmp_path / "out2")


def test_the_out_of_scope_section_compares_methods(tmp_path: Path, tiny_model: str, oos_data: str) -> None:
    from conftest import tiny_args
    from intentlab.cli import main

    for method in ("lora", "full"):
        for seed in (1, 2):
            out = tmp_path / "runs" / method / f"seed-{seed}"
            args = [*tiny_args(tiny_model, oos_data, 2), "--group-column", "source", "--seed", str(seed)]
            assert main(["train", "--method", method, "--out", str(out), *args]) == 0
    rep = build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Out-of-scope detection" in md and "AUROC vs ood-oos" in md
    assert (
        "The best out-of-scope detector was" in md
        and "On out-of-scope detection LoRA against full fine-tuning" in md
    )
    html = (tmp_path / "out" / "report.html").read_text()
    assert '<table class="sortable">' in html and "most confident mistakes" in md
    assert "Error analysis of the most accurate run" in md
    for chart in ("ood_roc", "ood_tradeoff", "reliability", "confusion_matrix", "confidence"):
        assert len(png_colours(tmp_path / "out" / "charts" / f"{chart}.png")) > 20, chart
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["out_of_scope"]
    assert {r["scorer"] for r in summary["rows"]} == {"msp", "energy", "mahalanobis", "knn"}
    assert "lora vs full" in summary["tests"]
    assert rep["summary"][0]["n"] == 2


def test_variants_are_compared_with_their_own_method() -> None:
    """A plan variant (lora-cls) is tested against its method's own group (lora), not left out."""
    from intentlab.reporting.summary import representatives, variant_pairs

    groups = {"lora-cls": "lora", "lora": "lora", "full": "full", "full-cls": "full", "ia3-x": "ia3"}
    assert representatives(groups) == {"lora": "lora", "full": "full", "ia3": "ia3-x"}
    assert variant_pairs(groups) == [("lora-cls", "lora"), ("full-cls", "full")]
