"""Learning curves: compare over train sizes, each seed sampling its own data, the report's section."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import tiny_args
from intentlab.cli import main


@pytest.fixture(scope="module")
def curve(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    out = tmp_path_factory.mktemp("curve") / "cmp"
    args = [
        "compare",
        "--out",
        str(out),
        "--methods",
        "baseline,head",
        "--seeds",
        "2",
        "--train-sizes",
        "4,8,all",
        *tiny_args(tiny_model, toy_data, 2),
        "--min-steps",
        "12",
    ]
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_cells_sample_their_own_data_and_share_the_test_set(curve: Path) -> None:
    runs = sorted(curve.glob("head/size-4/seed-*"))
    assert [r.name for r in runs] == ["seed-42", "seed-43"]
    results = [json.loads((r / "result.json").read_text()) for r in runs]
    for res in results:
        sizes = res["run"]["dataset"]["sizes"]
        assert sizes["train"] == 4 * 4 and sizes["validation"] == 4 * 4  # 4 intents x 4, validation alike
        assert set(res["run"]["dataset"]["train_label_counts"].values()) == {4}
        assert res["test"]["n"] == 32  # the whole test split
    texts = [json.loads((r / "test_predictions.json").read_text())["y_true"] for r in runs]
    assert texts[0] == texts[1]
    from intentlab.data import dataset_for
    from intentlab.runs import read_config

    samples = [set(dataset_for(read_config(r)).train.texts) for r in runs]
    assert samples[0] != samples[1]  # the seed varies the sample
    whole = json.loads((curve / "head" / "seed-42" / "result.json").read_text())
    assert whole["run"]["dataset"]["sizes"]["train"] > 16


@pytest.mark.slow
def test_small_runs_take_at_least_min_steps(curve: Path) -> None:
    cfg = yaml.safe_load((curve / "head" / "size-4" / "seed-42" / "config.yaml").read_text())
    # 16 examples in batches of 8: 2 steps an epoch, so 12 steps need 6 epochs instead of the 2 asked
    assert cfg["epochs"] == 6 and cfg["min_steps"] == 12 and cfg["train_size"] == "4"


@pytest.mark.slow
def test_the_report_has_learning_curves(curve: Path) -> None:
    md = (curve / "report" / "report.md").read_text()
    assert "## Learning curves" in md
    compute = re.search(r"Total compute: (\d+) runs, [\d.]+ (s|min|h) of training", md)
    assert compute and int(compute[1]) == len(list(curve.glob("*/**/result.json")))
    assert "the TF-IDF baseline for real" in md and "the cheapest within noise of it was" in md
    for chart in ("learning_curves", "train_time_by_size", "generalisation_gap"):
        assert (curve / "report" / "charts" / f"{chart}.png").stat().st_size > 10_000, chart
    assert Counter(line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| **head"))
    assert "Train accuracy is measured" not in md  # every cell scored its whole (small) training split


@pytest.mark.slow
def test_the_report_says_when_train_accuracy_was_sampled(curve: Path, tmp_path: Path) -> None:
    import shutil

    from intentlab.reporting.report import build_report

    runs = tmp_path / "runs"
    shutil.copytree(curve, runs, ignore=shutil.ignore_patterns("report"))
    record = runs / "head" / "seed-42" / "result.json"
    result = json.loads(record.read_text())
    result["train"]["train_accuracy_examples"] = 7  # as if the whole split were larger than the sample
    record.write_text(json.dumps(result))
    build_report([runs], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Train accuracy is measured after training on at most 7 training rows" in md


@pytest.mark.slow
def test_methods_are_only_compared_at_equal_train_sizes(curve: Path, tmp_path: Path) -> None:
    import shutil

    from intentlab.reporting.report import build_report

    runs = tmp_path / "runs"
    shutil.copytree(curve, runs, ignore=shutil.ignore_patterns("report"))
    for seed in ("seed-42", "seed-43"):
        shutil.rmtree(runs / "head" / seed)  # head stops at 8 per intent; the baseline has all the data
    build_report([runs], tmp_path / "report")
    tests = json.loads((tmp_path / "report" / "summary.json").read_text())["tests"]
    assert not [pair for pair in tests if "head" in pair]  # head@8 is never paired with the baseline on all
    md = (tmp_path / "report" / "report.md").read_text()
    findings = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "At 8 per intent" in findings  # it is compared where both have that size


@pytest.mark.parametrize(
    ("sizes", "needle"),
    [
        ("40", "leaves no validation rows"),
        ("0", "must be positive"),
        ("-3", "must be positive"),
        ("1.5", "at most 1"),
        ("lots", "a count per intent"),
    ],
)
def test_bad_train_sizes(
    sizes: str,
    needle: str,
    tmp_path: Path,
    tiny_model: str,
    toy_data: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "compare",
        "--out",
        str(tmp_path / "c"),
        "--methods",
        "baseline",
        "--train-sizes",
        sizes,
        *tiny_args(tiny_model, toy_data, 1),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
