"""A run folder from a stranger never runs code: a payload planted under every file name that any
loading path reads, for every command that loads runs. Each command works safely or gives a one-line
error; the payload's marker file never appears."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab import methods as M
from intentlab.cli import main

PER_STORAGE = M.one_per_storage()  # one run per storage kind: every loading path
ADAPTER = next(m for m in PER_STORAGE if M.get(m).adapter)
PICKLE_NAMES = [  # every name a loader might unpickle (torch.load, pickle, joblib)
    "model/baseline.pkl",
    "model/pytorch_model.bin",
    "model/adapter/adapter_model.bin",
    "model/encoder/pytorch_model.bin",
    "model/training_args.bin",
    "checkpoint/optimizer.bin",
    "checkpoint/scheduler.bin",
    "checkpoint/random_states_0.pkl",
    "checkpoint/pytorch_model.bin",
]


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def plant(run: Path, marker: Path) -> None:
    """Pickles under every name, and remote code wherever transformers would import it from."""
    for name in PICKLE_NAMES:
        path = run / name
        if path.parent.is_dir() or name.startswith("model/"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps({"state": Payload(marker)}))
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    for folder in (run / "model", run / "model" / "encoder"):
        if not folder.is_dir():
            continue
        (folder / "evil.py").write_text(code)
        for cfg_name, key in (("tokenizer_config.json", "AutoTokenizer"), ("config.json", "AutoModel")):
            cfg = folder / cfg_name
            data = json.loads(cfg.read_text()) if cfg.is_file() else {}
            data["auto_map"] = {
                key: ["evil.Evil", None] if key == "AutoTokenizer" else "evil.Evil",
                "AutoConfig": "evil.EvilConfig",
            }
            cfg.write_text(json.dumps(data))
    info = run / "model" / "intentlab.json"
    if info.is_file():  # a stranger rewrites the recorded checksums too: loading must still run nothing
        import hashlib

        doc = json.loads(info.read_text())
        folder = info.parent
        doc["tokenizer_files"] = {
            n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in doc.get("tokenizer_files", {})
        }
        info.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("poisoned")
    runs = {}
    for method in PER_STORAGE:
        runs[method] = root / "cmp" / method / "seed-42"
        assert (
            main(
                # named as compare names its cells, so that compare reuses them
                [
                    "train",
                    "--method",
                    method,
                    "--name",
                    method,
                    "--out",
                    str(runs[method]),
                    *tiny_args(tiny_model, toy_data, 1),
                ]
            )
            == 0
        )
    # an interrupted run with a checkpoint to resume
    runs["interrupted"] = root / "interrupted"
    args = [*tiny_args(tiny_model, toy_data, 2), "--checkpoint-steps", "3"]
    child = (
        "import os, signal, sys\nimport torch.nn.functional as F\nimport intentlab.training.loop as T\n"
        "n = [0]\nreal = F.cross_entropy\n"
        "def dying(*a, **k):\n    n[0] += 1\n    if n[0] == 5: os.kill(os.getpid(), signal.SIGKILL)\n    return real(*a, **k)\n"
        "T.F = type('F', (), {'cross_entropy': staticmethod(dying)})\n"
        "from intentlab.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, "train", "--method", "lora", "--out", str(runs["interrupted"]), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9 and (runs["interrupted"] / "checkpoint").is_dir(), proc.stderr[-400:]
    marker = root / "PWNED"
    for run in runs.values():
        plant(run, marker)
    runs["marker"] = marker
    return runs


def exits(code: int, err: str, expected: int) -> None:
    """The command ended as `expected` says for this run: 0 (it worked, planted files ignored) or 2 (a
    one-line error, no traceback)."""
    assert code == expected, err[-800:]
    assert "Traceback" not in err
    if code == 2:
        lines = [li for li in err.strip().splitlines() if "error:" in li]
        assert len(lines) == 1, err[-800:]


@pytest.mark.parametrize("method", PER_STORAGE)
def test_predict_evaluate_export_never_run_planted_code(
    poisoned: dict[str, Path], method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = poisoned[method]
    for argv, expected in (
        (["predict", str(run), "i lost my card"], 0),
        (["evaluate", str(run), "--json"], 0),
        # the planted files are never read, so each works; a TF-IDF run has no encoder to export
        (
            ["export", str(run), "--out", str(tmp_path / "export"), "--merge"],
            0 if M.get(method).encoder else 2,
        ),
    ):
        exits(main(argv), capsys.readouterr().err, expected)
        assert not poisoned["marker"].exists(), argv


def test_serve_and_admin_load_never_run_planted_code(poisoned: dict[str, Path]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.errors import UserError
    from intentlab.serving.app import create_app

    for method in (m for m in PER_STORAGE if M.get(m).encoder):
        try:
            with TestClient(create_app([str(poisoned[method])])) as c:
                c.post("/v1/predict", json={"texts": ["hi"]})
        except UserError:
            pass
    root = poisoned[ADAPTER].parents[1]
    with TestClient(create_app([], admin_token="t", runs_root=str(root))) as c:
        for method in PER_STORAGE:
            r = c.post(
                "/v1/adapters",
                json={"name": method, "run": f"{method}/seed-42"},
                headers={"Authorization": "Bearer t"},
            )
            # loaded with the planted files ignored; a TF-IDF run cannot be served
            assert r.status_code == (201 if M.get(method).encoder else 422), r.text
    assert not poisoned["marker"].exists()


def test_report_compare_and_resume_never_run_planted_code(
    poisoned: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_model: str,
    toy_data: str,
) -> None:
    cmp_root = poisoned[ADAPTER].parents[1]
    exits(main(["report", str(cmp_root), "--out", str(tmp_path / "report")]), capsys.readouterr().err, 0)
    # the same settings as the planted cells, so compare reuses them (reads their records) and reports
    argv = ["compare", "--out", str(cmp_root), "--methods", f"{ADAPTER},baseline", "--seeds", "1"]
    exits(main([*argv, *tiny_args(tiny_model, toy_data, 1)]), capsys.readouterr().err, 0)
    assert (cmp_root / "report" / "report.md").is_file()
    resumed = tmp_path / "resume"
    shutil.copytree(poisoned["interrupted"], resumed)
    # its checkpoint holds a pickle under every name: refused, never loaded
    exits(main(["train", "--resume", str(resumed)]), capsys.readouterr().err, 2)
    assert not poisoned["marker"].exists()
