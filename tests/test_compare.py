"""compare: a methods x seeds matrix of tiny runs, skipped on rerun, with a report at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intentlab.cli import main


@pytest.mark.slow
def test_compare_writes_every_cell_then_skips_them(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--out",
        str(out),
        "--methods",
        "baseline,head,lora",
        "--seeds",
        "2",
        *train_args,
        "--epochs",
        "1",
    ]
    assert main(args) == 0
    cells = sorted(p.relative_to(out).as_posix() for p in out.glob("*/seed-*"))
    assert cells == [
        "baseline/seed-42",
        "baseline/seed-43",
        "head/seed-42",
        "head/seed-43",
        "lora/seed-42",
        "lora/seed-43",
    ]
    for c in cells:
        assert (out / c / "result.json").is_file()
    splits = {json.loads((out / c / "result.json").read_text())["run"]["split_fingerprint"] for c in cells}
    assert len(splits) == 1  # one shared data split across methods and seeds
    seeds = {json.loads((out / c / "result.json").read_text())["run"]["seed"] for c in cells}
    assert seeds == {42, 43}
    assert (out / "report" / "report.md").is_file() and (out / "report" / "report.html").is_file()
    mtimes = {c: (out / c / "result.json").stat().st_mtime_ns for c in cells}
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("complete, skipped") == 6
    assert {c: (out / c / "result.json").stat().st_mtime_ns for c in cells} == mtimes


def test_compare_redoes_an_interrupted_cell_and_honours_a_plan(tmp_path: Path, train_args: list[str]) -> None:
    out = tmp_path / "cmp"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "methods: [head, study]\nseeds: 1\ncommon: {epochs: 1}\nstudy: {config: lora-study, lora_r: 2}\n"
    )
    (out / "head" / "seed-42").mkdir(parents=True)
    (out / "head" / "seed-42" / "config.yaml").write_text("method: head\n")  # a cell killed mid-run
    assert (
        main(["compare", "--out", str(out), "--plan", str(plan), "--no-report", *train_args, "--epochs", "1"])
        == 0
    )
    assert (out / "head" / "seed-42" / "result.json").is_file()
    study = json.loads((out / "study" / "seed-42" / "result.json").read_text())
    cfg = study["run"]["config"]
    assert (cfg["method"], cfg["name"], cfg["lora_r"], cfg["pooling"], cfg["target_modules"]) == (
        "lora",
        "study",
        2,
        "cls",
        ["query", "value"],
    )
    assert not (out / "report").exists()


def test_compare_bad_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("methods: [lora, mystery]\n")
    assert main(["compare", "--out", str(tmp_path / "x"), "--plan", str(plan)]) == 2
    assert "'mystery' is not a method" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("seeds: x\n", "seeds: must be a whole number of at least 1, got 'x'"),
        ("methods: 5\n", "methods: must be a list of names"),
        ("methods: {a: 1}\n", "methods: must be a list of names"),
        ("lora: 5\n", "lora: must hold settings"),
        ("lora: {seeds: 0}\n", "lora: seeds must be a whole number of at least 1, got 0"),
        ("common: 5\n", "common: must hold settings"),
        ("methods: [v]\nv: {config: 5}\n", "v: config must be a name or a path"),
        ("train_sizes: abc\n", "train_sizes: 'abc' must be a count per intent"),
    ],
)
def test_a_malformed_plan_is_one_line(
    text: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    assert main(["compare", "--out", str(tmp_path / "x"), "--plan", str(plan)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "x").exists()


def test_a_finished_cell_trained_differently_is_not_reused(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """After a shipped default or the plan changes, a finished cell is not reported under the new
    settings: compare stops before training, naming the setting, and leaves the cell as it was."""
    out = tmp_path / "cmp"
    args = ["compare", "--out", str(out), "--methods", "baseline", "--no-report", *train_args]
    assert main([*args, "--epochs", "1"]) == 0
    result = out / "baseline" / "seed-42" / "result.json"
    before = result.read_bytes()
    capsys.readouterr()
    assert main([*args, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "was trained with epochs=1, but the plan now gives epochs=2" in err and "Traceback" not in err
    assert result.read_bytes() == before
    assert main([*args, "--epochs", "1", "--threads", "2"]) == 0  # execution-only settings do not count


def test_values_training_resolves_do_not_block_reuse() -> None:
    """What training itself changes (epochs raised to min_steps, max_length clipped, bf16 left unset by
    the TF-IDF baseline) does not count as a different configuration; anything else does."""
    from intentlab.training.compare import _resolved_in_training as resolved

    assert resolved("epochs", 5, {"epochs": 24, "min_steps": 300})
    assert not resolved("epochs", 5, {"epochs": 3, "min_steps": 300})
    assert not resolved("epochs", 5, {"epochs": 24, "min_steps": 0})
    assert resolved("max_length", 512, {"max_length": 128}) and not resolved(
        "max_length", 64, {"max_length": 128}
    )
    assert resolved("bf16", False, {"bf16": None}) and not resolved("bf16", False, {"bf16": True})
    assert resolved("min_steps", 300, {"min_steps": 0, "train_size": None})
    assert not resolved("min_steps", 300, {"min_steps": 0, "train_size": "5"})
    assert not resolved("pooling", "cls", {"pooling": "mean"})
    here = Path.cwd()  # a model folder recorded relative (older runs) is the same as its absolute path
    assert resolved("model", str(here), {"model": "."}) and not resolved(
        "model", "/elsewhere", {"model": "."}
    )
