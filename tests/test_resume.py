"""Kill a training run (SIGKILL, SIGTERM) at chosen steps, resume it, and get the uninterrupted run's numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main
from intentlab.folders import read_jsonl

# Runs `intentlab train` in a child process whose loss function sends `signal` to itself on the Nth call:
# test-only fault injection, nothing of it lives in the library.
CHILD = """
import os, signal, sys
import torch.nn.functional as F
import intentlab.training.loop as T
calls = 0
real = F.cross_entropy
def dying(*a, **k):
    global calls
    calls += 1
    if calls == {at}:
        os.kill(os.getpid(), signal.{signal})
    return real(*a, **k)
T.F = type("F", (), {{"cross_entropy": staticmethod(dying)}})
from intentlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def child(args: list[str], at: int, sig: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD.format(at=at, signal=sig), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def numbers(run: Path) -> tuple[list[list[float]], dict[str, float]]:
    keys = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro")
    rows = [[r[k] for k in keys] for r in read_jsonl(run / "metrics.jsonl")]
    test = json.loads((run / "result.json").read_text())["test"]
    return rows, {k: test[k] for k in ("accuracy", "f1_macro", "loss")}


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str
) -> tuple[Path, list[str]]:
    args = [
        "--method",
        "lora",
        *tiny_args(tiny_model, toy_data, 3),
        "--checkpoint-steps",
        "4",
    ]
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", "--out", str(out), *args]) == 0
    return out, args


SLOW = pytest.mark.slow


# mid-epoch before any checkpoint, last step of epoch 1, first of epoch 2, late
@pytest.mark.parametrize(
    "at", [pytest.param(3, marks=SLOW), 14, pytest.param(15, marks=SLOW), pytest.param(31, marks=SLOW)]
)
def test_sigkill_then_resume_matches_uninterrupted(
    reference: tuple[Path, list[str]], tmp_path: Path, at: int
) -> None:
    ref, args = reference
    out = tmp_path / "run"
    proc = child(["train", "--out", str(out), *args], at, "SIGKILL")
    assert proc.returncode == -9, proc.stderr[-500:]
    assert not (out / "result.json").exists()  # incomplete, and it does not look complete
    assert main(["train", "--resume", str(out)]) == 0
    assert numbers(out) == numbers(ref)
    assert not (out / "checkpoint").exists()
    # a checkpoint exists from step 4 on (--checkpoint-steps 4): a kill before it restarts from scratch
    assert json.loads((out / "result.json").read_text())["run"]["resumed"] == (1 if at >= 4 else 0)


def test_sigterm_stops_cleanly_with_a_checkpoint(reference: tuple[Path, list[str]], tmp_path: Path) -> None:
    ref, args = reference
    out = tmp_path / "run"
    proc = child(["train", "--out", str(out), *args], 10, "SIGTERM")
    assert proc.returncode == 130
    last = proc.stderr.strip().splitlines()[-1]
    assert "Resume with: intentlab train --resume" in last and "Traceback" not in proc.stderr
    assert (out / "checkpoint" / "loop.json").is_file() and not (out / "result.json").exists()
    assert json.loads((out / "checkpoint" / "loop.json").read_text())["step"] == 10
    assert main(["train", "--resume", str(out)]) == 0
    assert numbers(out) == numbers(ref)


def test_resume_refusals(
    reference: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, _ = reference
    assert main(["train", "--resume", str(ref)]) == 2
    assert "already complete" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("method: lora\n")
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "name two folders" in capsys.readouterr().err
