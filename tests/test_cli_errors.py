"""Bad input through the command line: one line on stderr, exit code 2, no traceback, no run folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_rows, tiny_args, write_csv
from intentlab.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err.strip()


def assert_clean_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert needle in err, err


def write(tmp_path: Path, name: str, content: bytes) -> str:
    (tmp_path / name).write_bytes(content)
    return str(tmp_path / name)


@pytest.fixture
def bad_data(tmp_path: Path) -> dict[str, str]:
    one_class = tmp_path / "one"
    one_class.mkdir()
    write_csv(one_class / "train.csv", [{"text": f"hello {i}", "label": "greet"} for i in range(10)])
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    write_csv(unseen / "train.csv", make_rows(10, seed=1))
    write_csv(unseen / "test.csv", [{"text": "open an account", "label": "new_account"}])
    return {
        "missing file": str(tmp_path / "missing.csv"),
        "missing text column": write(tmp_path, "a.csv", b"utterance,label\nhi,a\nho,b\n"),
        "empty text": write(tmp_path, "b.csv", b"text,label\nhi,a\n,b\n"),
        "whitespace text": write(tmp_path, "c.csv", b"text,label\nhi,a\n  \t ,b\n"),
        "non-UTF-8": write(tmp_path, "d.csv", "text,label\ncafé,a\nhi,b\n".encode("latin-1")),
        "malformed JSONL": write(tmp_path, "e.jsonl", b'{"text": "hi", "label": "a"}\n{oops}\n'),
        "single class": str(one_class),
        "unseen test labels": str(unseen),
    }


NEEDLES = {
    "missing file": "neither banking77 nor an existing file",
    "missing text column": "no text column 'text'",
    "empty text": "empty or non-text",
    "whitespace text": "empty or non-text",
    "non-UTF-8": "not UTF-8",
    "malformed JSONL": "invalid JSON",
    "single class": "single label",
    "unseen test labels": "never seen in train",
}


@pytest.mark.parametrize("case", list(NEEDLES))
def test_bad_data(
    case: str,
    bad_data: dict[str, str],
    train_args: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    code, err = run_cli(
        ["train", "--method", "head", "--out", str(out), *train_args, "--data", bad_data[case]], capsys
    )
    assert_clean_error(code, err, NEEDLES[case])
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--lr", "nan"], "lr must be a finite number"),
        (["--epochs", "-1"], "epochs must be at least 1"),
        (["--lora-rank", "4"], "unrecognized arguments"),
        (["--model", "no-such-org/no-such-model-xyz"], "cannot load model"),
        (["--method", "xlora"], "unknown method 'xlora'"),
        (["--target-modules", "not_a_layer"], "match no linear layer"),
        (["--peft-options", "init_r=[1"], "peft_options: '[1' is not a YAML value"),
        (["--peft-options", "a=\x1b"], "is not a YAML value (unacceptable character"),
    ],
)
def test_bad_options(
    extra: list[str], needle: str, train_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, err = run_cli(["train", "--method", "lora", "--out", str(out), *train_args, *extra], capsys)
    assert_clean_error(code, err, needle)
    assert not out.exists()


def test_contradictory_options(
    train_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, "c.yaml", b"method: lora\nlora_r: 4\nbogus_key: 1\n")
    code, err = run_cli(
        ["train", "--method", "full", "--config", cfg, "--out", str(tmp_path / "r"), *train_args], capsys
    )
    assert_clean_error(code, err, "contradicts")
    code, err = run_cli(["train", "--config", cfg, "--out", str(tmp_path / "r"), *train_args], capsys)
    assert_clean_error(code, err, "unknown key 'bogus_key'")


def test_evaluate_bad_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["evaluate", str(tmp_path / "nope")], capsys)
    assert_clean_error(code, err, "not found")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("method: lora\n")
    code, err = run_cli(["evaluate", str(tmp_path / "half")], capsys)
    assert_clean_error(code, err, "incomplete")
    (tmp_path / "half" / "result.json").write_text('{"meta": {"schema_version": 99}}')
    code, err = run_cli(["evaluate", str(tmp_path / "half")], capsys)
    assert_clean_error(code, err, "schema version 99")


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    """The installed entry point itself, in a fresh process."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "intentlab",
            "train",
            "--method",
            "lora",
            "--out",
            str(tmp_path / "r"),
            "--data",
            str(tmp_path / "missing.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "missing.csv" in proc.stderr


def test_huge_text_and_duplicates_are_accepted_with_warnings(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = make_rows(10, seed=1)
    rows += [{"text": "card " * 200_000, "label": "lost_card"}] * 2  # 1 MB texts (one may go to validation)
    rows += rows[:3]  # duplicate rows
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "test.csv", make_rows(2, seed=2) + rows[:1])
    out = tmp_path / "run"
    code, err = run_cli(
        [
            "train",
            "--method",
            "head",
            "--out",
            str(out),
            *train_args,
            "--data",
            str(tmp_path),
            "--epochs",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    assert "duplicate text" in err and "also appear in train" in err
    assert "list them with: intentlab audit --data " in err  # one line, naming the command
    import json

    result = json.loads((out / "result.json").read_text())
    assert (
        max(int(k) for k in result["run"]["dataset"]["train_token_lengths"]) == 128
    )  # truncated to max_length
    assert result["run"]["dataset"]["source"]["warnings"]


def test_corrupted_weights_fail_cleanly(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--method", "lora", "--out", str(out), *train_args, "--epochs", "1"]) == 0
    (out / "model" / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    for cmd in (["evaluate", str(out)], ["predict", str(out), "hello"]):
        code, err = run_cli(cmd, capsys)
        assert_clean_error(code, err, "corrupt")
    (out / "model" / "intentlab.json").write_text("{not json")
    code, err = run_cli(["predict", str(out), "hello"], capsys)
    assert_clean_error(code, err, "corrupt")


@pytest.mark.parametrize("method", ["lora", "baseline"])
def test_a_run_record_without_its_model_says_so(
    method: str, tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/results keeps run folders minus weights and tokenizer: loading one names that, not a hub id."""
    out = tmp_path / "run"
    assert main(["train", "--method", method, "--out", str(out), *train_args, "--epochs", "1"]) == 0
    if method == "baseline":
        shutil.rmtree(out / "model")
    else:
        for f in (out / "model").rglob("*"):
            if f.is_file() and (f.suffix == ".safetensors" or f.name.startswith("tokenizer")):
                f.unlink()
    commands = [["evaluate", str(out)], ["predict", str(out), "hello"]]
    if method == "lora":
        commands += [["ood", str(out)], ["export", str(out), "--out", str(tmp_path / "x")]]
    for cmd in commands:
        code, err = run_cli(cmd, capsys)
        assert_clean_error(code, err, "a run's record without its model")
        assert f"intentlab train --config {out}/config.yaml" in err
    assert not (tmp_path / "x").exists()


def test_serve_refuses_a_taken_port_or_a_bad_address_in_one_line_before_loading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvicorn")
    import socket

    missing = str(tmp_path / "no-run")  # never reached: the address is checked first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, err = run_cli(["serve", missing, "--port", port], capsys)
        assert_clean_error(code, err, f"cannot listen on 127.0.0.1:{port}")
    code, err = run_cli(["serve", missing, "--port", "99999"], capsys)
    assert_clean_error(code, err, "--port 99999 is not a port number")
    code, err = run_cli(["serve", missing, "--host", "no-such-host.invalid"], capsys)
    assert_clean_error(code, err, "--host no-such-host.invalid: no such address")
    code, err = run_cli(["serve", missing, "--port", "0"], capsys)  # a free port: now the run is checked
    assert_clean_error(code, err, "not found")


def test_report_and_predict_check_their_paths_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    code, err = run_cli(["report", str(tmp_path), "--out", str(a_file / "sub")], capsys)
    assert_clean_error(code, err, "is a file, not a folder")
    # the run does not exist, but the input file's type is refused before any run is read
    code, err = run_cli(
        ["predict", str(tmp_path / "no-run"), "--input", str(a_file), "--output", "o.csv"], capsys
    )
    assert_clean_error(code, err, "unsupported file type ''")


def test_a_sweep_whose_storage_cannot_open_leaves_no_folder(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("optuna")
    out = tmp_path / "sweep"
    argv = ["sweep", "--method", "lora", "--trials", "1", "--out", str(out), "--storage", "bogus://x"]
    code, err = run_cli([*argv, *train_args], capsys)
    assert_clean_error(code, err, "cannot open the Optuna study")
    assert not out.exists()
    out.mkdir()  # a folder the user made stays, even empty
    code, err = run_cli([*argv, *train_args], capsys)
    assert_clean_error(code, err, "cannot open the Optuna study")
    assert out.is_dir()


def test_serving_a_run_folder_on_onnxruntime_says_how_to_export_it(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("uvicorn")
    run = tmp_path / "run"
    assert main(["train", "--method", "lora", "--out", str(run), *train_args, "--epochs", "1"]) == 0
    code, err = run_cli(["serve", str(run), "--backend", "onnxruntime", "--port", "0"], capsys)
    assert_clean_error(code, err, "is a run folder; --backend onnxruntime serves an export of it")
    assert f"intentlab export {run} --out EXPORT --merge --onnx" in err


def test_a_folder_of_runs_is_not_called_an_interrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("seed-1", "seed-2"):
        (tmp_path / "lora" / name).mkdir(parents=True)
        (tmp_path / "lora" / name / "result.json").write_text("{}")
    code, err = run_cli(["evaluate", str(tmp_path / "lora")], capsys)
    assert_clean_error(code, err, "is not a run folder (no config.yaml). It holds runs (seed-1, seed-2)")
    code, err = run_cli(["export", str(tmp_path), "--out", str(tmp_path / "x")], capsys)  # a compare folder
    assert_clean_error(code, err, "It holds runs (lora/seed-1, lora/seed-2)")
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["evaluate", str(tmp_path / "empty")], capsys)
    assert_clean_error(code, err, "is not a run folder (no config.yaml). Pass a folder written by")


def test_version_and_help_show_what_a_run_uses(capsys: pytest.CaptureFixture[str]) -> None:
    from intentlab import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"intentlab {__version__}"
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "LoRA/DoRA rank [default: 8; configs/<method>.yaml: lora 16" in text


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        ("fastapi", ["serve", "somewhere"], "intentlab[serve]"),
        ("onnxruntime", ["export", "RUN", "--out", "X", "--merge", "--onnx"], "intentlab[onnx]"),
        ("optuna", ["sweep", "--method", "lora", "--trials", "1", "--out", "X"], "intentlab[sweep]"),
    ],
)
def test_a_missing_extra_is_one_line_with_its_pip_command(
    blocked: str, argv: list[str], extra: str, tmp_path: Path, tiny_model: str, toy_data: str
) -> None:
    if argv[0] == "export":
        run = tmp_path / "run"
        assert (
            main(["train", "--method", "full", "--out", str(run), *tiny_args(tiny_model, toy_data, 1)]) == 0
        )
        argv = ["export", str(run), "--out", str(tmp_path / "x"), "--merge", "--onnx"]
    code = f"import sys\nsys.modules[{blocked!r}] = None\nfrom intentlab.cli import main\nsys.exit(main({argv!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-600:]
    assert extra in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--parallel-batches", "0"], "--parallel-batches must be 1 or more"),
        (["--parallel-batches", "2"], "--parallel-batches needs --backend onnxruntime"),
        (["--batch-wait-ms", "-1"], "--batch-wait-ms must be 0 or more"),
        (["--threads", "0"], "--threads 0: give 1 or more"),
        (["--threads", "2", "--backend", "onnxruntime"], "with --backend torch"),
        (["--max-texts", "0"], "--max-texts must be at least 1"),
        (["--max-chars", "0"], "--max-chars must be at least 1"),
        (["--max-body-bytes", "10"], "--max-body-bytes must be at least 1024"),
        (["--runs-root", "/no/such/folder"], "--runs-root /no/such/folder is not a folder"),
    ],
)
def test_bad_serve_options(
    extra: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(["serve", str(tmp_path / "run"), *extra], capsys)
    assert_clean_error(code, err, needle)
