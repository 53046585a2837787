"""Kills at random moments, full disks and concurrent writers: every finished run stays intact, no
run is lost, duplicated or mixed, and a rerun ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main

pytestmark = pytest.mark.slow

# `intentlab train` in a child whose Nth loss computation SIGKILLs it (test-only fault injection)
DYING = """
import os, signal, sys
import torch.nn.functional as F
import intentlab.training.loop as T
n = [0]
real = F.cross_entropy
def dying(*a, **k):
    n[0] += 1
    if n[0] == {at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
T.F = type("F", (), {{"cross_entropy": staticmethod(dying)}})
from intentlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(args: list[str], at: int | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    code = (
        DYING.format(at=at)
        if at
        else "import sys\nfrom intentlab.cli import main\nsys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, **kw
    )


def numbers(run: Path) -> tuple[list[list[float]], dict[str, float]]:
    rows = [json.loads(li) for li in (run / "metrics.jsonl").read_text().splitlines()]
    test = json.loads((run / "result.json").read_text())["test"]
    return [[r[k] for k in ("train_loss", "val_loss", "val_accuracy")] for r in rows], {
        k: test[k] for k in ("accuracy", "f1_macro", "loss")
    }


def intact(run: Path) -> None:
    """A complete run whose files agree with each other (nothing mixed from another run)."""
    import yaml

    result = json.loads((run / "result.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert result["run"]["seed"] == cfg["seed"] and result["run"]["method"] == cfg["method"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == len(result["train"]["epochs"])
    preds = json.loads((run / "test_predictions.json").read_text())
    assert len(preds["y_pred"]) == result["test"]["n"]


def test_random_sigkills_during_training_then_the_users_rerun(
    tmp_path: Path, tiny_model: str, toy_data: str
) -> None:
    args = ["--method", "lora", *tiny_args(tiny_model, toy_data, 3), "--checkpoint-steps", "3"]
    ref = tmp_path / "ref"
    assert main(["train", "--out", str(ref), *args]) == 0
    out = tmp_path / "run"
    rng = random.Random(7)
    first = ["train", "--out", str(out), *args]
    proc = run_cli(first, at=rng.randint(1, 12))
    for _ in range(3):  # at most three more kills, each at a random step of what is left
        assert proc.returncode == -9, proc.stderr[-500:]
        rerun = ["train", "--resume", str(out)] if (out / "config.yaml").is_file() else first
        proc = run_cli(rerun, at=rng.randint(2, 10))
    if proc.returncode == -9:
        proc = run_cli(["train", "--resume", str(out)] if (out / "config.yaml").is_file() else first)
    assert proc.returncode == 0, proc.stderr[-800:]
    intact(out)
    assert numbers(out) == numbers(ref)


def _train_processes(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and " train " in cmd:
                pids.append(int(proc.name))
    return pids


def test_sigkill_of_compare_kills_its_cell_and_the_rerun_finishes(
    tmp_path: Path, tiny_model: str, toy_data: str
) -> None:
    flags = ["--methods", "lora,head", "--seeds", "1", *tiny_args(tiny_model, toy_data, 3), "--no-report"]
    ref, out = tmp_path / "ref", tmp_path / "cmp"
    assert main(["compare", "--out", str(ref), *flags]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "intentlab", "compare", "--out", str(out), *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (out / "lora" / "seed-42" / "config.yaml").is_file() and time.time() < deadline:
        time.sleep(0.05)
    started = (out / "lora" / "seed-42" / "config.yaml").is_file()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert started, "compare never started its first cell: the kill below would test nothing"
    deadline = time.time() + 60
    while _train_processes(str(out)) and time.time() < deadline:
        time.sleep(0.2)
    assert not _train_processes(str(out)), "a cell kept training after compare was killed"
    assert main(["compare", "--out", str(out), *flags]) == 0
    for cell in ("lora", "head"):
        intact(out / cell / "seed-42")
        assert numbers(out / cell / "seed-42") == numbers(ref / cell / "seed-42")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["head", "lora"]


def test_sigkill_during_overwrite_loses_nothing(tmp_path: Path, tiny_model: str, toy_data: str) -> None:
    args = ["--method", "lora", *tiny_args(tiny_model, toy_data, 2)]
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *args]) == 0
    before = numbers(run)
    proc = run_cli(["train", "--out", str(run), "--overwrite", *args, "--seed", "5"], at=6)
    assert proc.returncode == -9
    assert list(tmp_path.glob(".run.replaced-*")), "the old run should wait aside"
    # the next command that reads the run puts the old one back
    assert main(["evaluate", str(run), "--json"]) == 0
    assert numbers(run) == before and not list(tmp_path.glob(".run.replaced-*"))
    # and the user's rerun of the overwrite completes, replacing it
    assert main(["train", "--out", str(run), "--overwrite", *args, "--seed", "5"]) == 0
    intact(run)
    assert json.loads((run / "result.json").read_text())["run"]["seed"] == 5


def _limited(limit_bytes: int) -> object:
    def preexec() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, writes fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


def test_a_full_disk_is_a_one_line_error_and_the_previous_run_is_untouched(
    tmp_path: Path, tiny_model: str, toy_data: str
) -> None:
    args = ["--method", "full", *tiny_args(tiny_model, toy_data, 1)]
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *args]) == 0
    snapshot = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = run_cli(
        ["train", "--out", str(run), "--overwrite", *args, "--seed", "9"], preexec_fn=_limited(1 << 20)
    )
    assert proc.returncode == 2, proc.stderr[-800:]
    assert "Traceback" not in proc.stderr and "cannot write" in proc.stderr.strip().splitlines()[-1]
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == snapshot
    assert not list(tmp_path.glob(".run.replaced-*")) and not list(tmp_path.glob(".run.owner"))
    out = tmp_path / "preds.jsonl"
    inp = tmp_path / "in.csv"
    inp.write_text("text\n" + "".join(f"i lost my card number {i} {'x' * 200}\n" for i in range(3000)))
    proc = run_cli(
        ["predict", str(run), "--input", str(inp), "--output", str(out)], preexec_fn=_limited(1 << 20)
    )
    assert proc.returncode == 2 and "cannot write" in proc.stderr, proc.stderr[-500:]
    assert not out.exists() and not list(tmp_path.glob(".preds.jsonl.*"))


def test_concurrent_writers_to_one_out(tmp_path: Path, tiny_model: str, toy_data: str) -> None:
    out = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "intentlab",
                "train",
                "--method",
                "lora",
                "--out",
                str(out),
                *tiny_args(tiny_model, toy_data, 2),
                "--seed",
                str(seed),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another intentlab process (pid" in loser or "already exists" in loser
    intact(out)
    assert os.listdir(tmp_path) == ["run"] or all(
        n.startswith(".run.") or n == "run" for n in os.listdir(tmp_path)
    )
