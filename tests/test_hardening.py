"""Bad and hostile input from the command line and the file system: each case is a one-line error
(exit 2) or is handled safely, and nothing that existed before is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_rows, one_line, tiny_args, write_csv
from intentlab.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    out = tmp_path_factory.mktemp("hard") / "run"
    assert main(["train", "--method", "lora", "--out", str(out), *tiny_args(tiny_model, toy_data, 1)]) == 0
    return out


def test_evaluate_refuses_data_that_changed_since_training(
    run: Path, tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "train.csv", make_rows(20, seed=1))
    write_csv(data / "test.csv", make_rows(5, seed=2))
    out = tmp_path / "r"
    assert main(["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, str(data), 1)]) == 0
    capsys.readouterr()
    rows = make_rows(5, seed=2)
    rows[0]["label"] = "top_up" if rows[0]["label"] != "top_up" else "lost_card"  # a test label edited later
    write_csv(data / "test.csv", rows)
    assert main(["evaluate", str(out)]) == 2
    line = one_line(capsys)
    assert "not what" in line and "test file(s) changed" in line and "--other-data" in line
    assert main(["evaluate", str(out), "--other-data", "--json"]) == 0


def test_a_banking77_run_is_scored_from_the_folder_it_read_only_while_its_files_are_unchanged(
    tmp_path: Path, tiny_model: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import urllib.request

    folder = tmp_path / "banking77"
    folder.mkdir()
    write_csv(folder / "train.csv", make_rows(20, seed=1), ("text", "category"))
    write_csv(folder / "test.csv", make_rows(5, seed=2), ("text", "category"))
    monkeypatch.setenv("INTENTLAB_DATA_DIR", str(folder))
    monkeypatch.setenv("INTENTLAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, "banking77", 1)]) == 0
    monkeypatch.delenv("INTENTLAB_DATA_DIR")  # a new shell: nothing says where Banking77 is

    def offline(*a: object, **k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0  # the recorded folder, its checksums matching
    assert "downloading" not in capsys.readouterr().err
    write_csv(folder / "test.csv", make_rows(5, seed=3), ("text", "category"))  # edited since
    assert main(["evaluate", str(out)]) == 2
    assert "not available locally" in one_line(capsys)  # the run's record no longer points anywhere


def test_data_paths_are_recorded_absolute(
    tmp_path: Path,
    tiny_model: str,
    toy_data: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(Path(toy_data).parent)
    out = tmp_path / "rel"
    assert (
        main(["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, Path(toy_data).name, 1)])
        == 0
    )
    recorded = yaml.safe_load((out / "config.yaml").read_text())["data"]
    assert Path(recorded).is_absolute() and Path(recorded) == Path(toy_data).resolve()
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(out), "--json"]) == 0  # from another folder
    monkeypatch.chdir(Path(tiny_model).parent)  # a model given as a relative folder is recorded absolute
    lora = tmp_path / "rel-model"
    args = [*tiny_args(Path(tiny_model).name, toy_data, 1)]
    assert main(["train", "--method", "lora", "--out", str(lora), *args]) == 0
    assert yaml.safe_load((lora / "config.yaml").read_text())["model"] == str(Path(tiny_model).resolve())
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(lora), "where is my card"]) == 0
    info = json.loads((lora / "model" / "intentlab.json").read_text())  # a base model that moved away
    (lora / "model" / "intentlab.json").write_text(json.dumps({**info, "base_model": "moved-away"}))
    assert main(["predict", str(lora), "where is my card"]) == 2
    assert "was trained on the base model 'moved-away', which cannot be loaded here" in one_line(capsys)
    (lora / "model" / "tokenizer_config.json").write_text("{")  # the run's own files: not a base model
    assert main(["predict", str(lora), "where is my card"]) == 2
    assert "The run's files are corrupt" in one_line(capsys)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--seed", "4294967296"], "seed must be within 0..4294967295"),
        (["--seed", "-1"], "seed must be within"),
    ],
)
def test_out_of_range_options(
    tmp_path: Path,
    tiny_model: str,
    toy_data: str,
    extra: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(
            [
                "train",
                "--method",
                "head",
                "--out",
                str(tmp_path / "x"),
                *tiny_args(tiny_model, toy_data, 1),
                *extra,
            ]
        )
        == 2
    )
    assert needle in one_line(capsys)
    assert not (tmp_path / "x").exists()


def test_max_length_is_capped_at_what_the_model_supports(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "long"
    data.mkdir()
    rows = make_rows(10, seed=1)
    rows[0]["text"] = "my card " * 400  # ~800 tokens; the tiny model has 128 positions
    write_csv(data / "train.csv", rows)
    write_csv(data / "test.csv", make_rows(3, seed=2))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--method",
                "head",
                "--out",
                str(out),
                *tiny_args(tiny_model, str(data), 1),
                "--max-length",
                "1000",
            ]
        )
        == 0
    )
    assert "using 128" in capsys.readouterr().err
    assert yaml.safe_load((out / "config.yaml").read_text())["max_length"] == 128
    assert json.loads((out / "model" / "intentlab.json").read_text())["max_length"] == 128


def test_out_under_a_file(
    tmp_path: Path, tiny_model: str, toy_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    assert (
        main(
            [
                "train",
                "--method",
                "head",
                "--out",
                str(tmp_path / "afile" / "run"),
                *tiny_args(tiny_model, toy_data, 1),
            ]
        )
        == 2
    )
    assert "is a file" in one_line(capsys)


def test_overwrite_only_replaces_intentlab_folders(
    run: Path, tmp_path: Path, tiny_model: str, toy_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("years of work")
    args = ["train", "--method", "head", "--overwrite", *tiny_args(tiny_model, toy_data, 1), "--out"]
    assert main([*args, str(thesis)]) == 2
    assert "did not write (thesis.txt)" in one_line(capsys)
    assert (thesis / "thesis.txt").read_text() == "years of work"
    mixed = tmp_path / "mixed"
    shutil.copytree(run, mixed)
    (mixed / "notes.md").write_text("mine")
    assert main([*args, str(mixed)]) == 2
    assert "notes.md" in one_line(capsys) and (mixed / "notes.md").is_file()


def test_a_second_writer_is_told_who_holds_the_folder(
    tmp_path: Path, tiny_model: str, toy_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from intentlab.folders import FolderLock

    out = tmp_path / "busy"
    with FolderLock(out.absolute()).acquire():
        assert (
            main(["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, toy_data, 1)]) == 2
        )
        assert f"in use by another intentlab process (pid {os.getpid()})" in one_line(capsys)
    assert main(["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, toy_data, 1)]) == 0


def test_run_files_follow_the_umask(run: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "result.json",
        "test_predictions.json",
        "model/intentlab.json",
    ):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


@pytest.mark.parametrize(
    ("content", "suffix", "needle"),
    [
        (b"text,label,text\nhi,a,b\nho,b,c\n", ".csv", "repeats column(s) 'text'"),
        (
            b'{"text": "card \\ud800", "label": "a"}\n{"text": "hi", "label": "b"}\n',
            ".jsonl",
            "not valid Unicode",
        ),
        (
            b'{"text": "hi", "label": ["a"]}\n{"text": "ho", "label": "b"}\n',
            ".jsonl",
            "not text or a number (list)",
        ),
        (
            b'{"text": "hi", "label": true}\n{"text": "ho", "label": "b"}\n',
            ".jsonl",
            "not text or a number (bool)",
        ),
    ],
)
def test_bad_data_files(
    tmp_path: Path,
    tiny_model: str,
    content: bytes,
    suffix: str,
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    assert (
        main(
            ["train", "--method", "head", "--out", str(tmp_path / "x"), *tiny_args(tiny_model, str(path), 1)]
        )
        == 2
    )
    assert needle in one_line(capsys)


def test_integer_labels_written_as_floats_are_one_class() -> None:
    from intentlab.data.loading import _label

    assert _label(1) == _label(1.0) == _label("1") == "1"
    assert _label(1.5) == "1.5" and _label(float("nan")) is None


def test_predict_input_is_as_strict_as_training(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = tmp_path / "in.csv"
    inp.write_text("text\nfirst\n" + '"unclosed quote, then\n' + "".join(f"row {i}\n" for i in range(1000)))
    out = tmp_path / "out.csv"
    assert main(["predict", str(run), "--input", str(inp), "--output", str(out)]) == 2
    assert "unreadable after row 1" in one_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".out.csv.*"))
    inp.write_text("text\nfine,extra field\n")
    assert main(["predict", str(run), "--input", str(inp), "--output", str(out)]) == 2
    assert "more fields than the header" in one_line(capsys)
    inp.write_text("text\nmy data\n")
    assert main(["predict", str(run), "--input", str(inp), "--output", str(inp), "--overwrite"]) == 2
    assert "is the --input file" in one_line(capsys)
    assert inp.read_text() == "text\nmy data\n"


def test_undecodable_bytes_in_predict_arguments(run: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "intentlab",
            "predict",
            str(run),
            b"card \xff\xfe".decode("utf-8", "surrogateescape"),
        ],
        capture_output=True,
        text=True,
        errors="replace",
    )
    assert proc.returncode == 2 and "not valid Unicode" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda info: [1, 2], "must hold an object"),
        (lambda info: {k: v for k, v in info.items() if k != "weights"}, "weights must be one of"),
        (lambda info: {**info, "pooling": "max"}, "pooling must be one of"),
        (lambda info: {**info, "dropout": "lots"}, "dropout must be a number"),
        (lambda info: {**info, "num_labels": 3}, "num_labels must equal"),
    ],
)
def test_a_bad_intentlab_json_is_one_line(
    run: Path, tmp_path: Path, edit: object, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    info = json.loads((bad / "model" / "intentlab.json").read_text())
    (bad / "model" / "intentlab.json").write_text(json.dumps(edit(info)))  # type: ignore[operator]
    assert main(["predict", str(bad), "hello"]) == 2
    assert needle in one_line(capsys)


def test_report_md_shows_html_from_records_as_text(run: Path, tmp_path: Path) -> None:
    from intentlab.reporting.report import build_report

    evil = tmp_path / "runs" / "evil"
    shutil.copytree(run, evil)
    result = json.loads((evil / "result.json").read_text())
    result["run"]["config"]["name"] = "<img src=x onerror=alert(1)>"
    (evil / "result.json").write_text(json.dumps(result))
    build_report([tmp_path / "runs"], tmp_path / "out")
    for name in ("report.md", "report.html"):
        text = (tmp_path / "out" / name).read_text()
        assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text, name


def test_folder_commands_never_write_into_a_run_or_over_a_users_files(
    run: Path, tmp_path: Path, tiny_model: str, toy_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in run.iterdir())
    pytest.importorskip("optuna")
    sweep = ["sweep", "--method", "lora", "--trials", "1", *tiny_args(tiny_model, toy_data, 1)]
    assert main([*sweep, "--out", str(run)]) == 2
    assert "which a sweep did not write" in one_line(capsys)
    assert main(["compare", "--methods", "head", *tiny_args(tiny_model, toy_data, 1), "--out", str(run)]) == 2
    assert "is a run folder" in one_line(capsys)
    assert main(["report", str(run), "--out", str(run)]) == 2
    assert "is a run folder" in one_line(capsys)
    assert sorted(p.name for p in run.iterdir()) == before  # no study.db, trials/, head/ or report files

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("my own report")
    assert main(["report", str(run), "--out", str(mine)]) == 2
    assert "report.md, not written by `intentlab report`" in one_line(capsys)
    assert (mine / "report.md").read_text() == "my own report"
    ours = tmp_path / "ours"
    for _ in range(2):  # a report regenerates its own folder
        assert main(["report", str(run), "--out", str(ours)]) == 0
    assert (ours / "report.md").read_text().startswith("# intentlab report")


def test_option_errors_name_the_commands_own_options(
    run: Path, tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--method", "lora", "--lora-rank", "4"]) == 2
    assert (
        "intentlab train: error: unrecognized arguments: --lora-rank 4 (did you mean --lora-r?)"
        in one_line(capsys)
    )
    assert main(["evaluate", str(run), "--lora-r", "4"]) == 2  # a training flag: no suggestion from train
    line = one_line(capsys)
    assert (
        line.startswith("intentlab evaluate: error: unrecognized arguments: --lora-r 4.")
        and "mean" not in line
    )
    compare = ["compare", "--out", str(tmp_path / "c"), *train_args]
    assert main([*compare, "--methods", " , "]) == 2
    assert "--methods names no method" in one_line(capsys)
    assert main([*compare, "--methods", "head,lora,head"]) == 2
    assert "head listed twice" in one_line(capsys)
    assert main([*compare, "--plan", str(tmp_path / "nope.yaml")]) == 2
    assert "Pass an existing YAML file to --plan." in one_line(capsys)
    assert not (tmp_path / "c").exists()
