"""`intentlab train` unchanged under `accelerate launch` with 2 CPU processes (gloo): same numbers as 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main

# dropout off: then 2 processes x 4 examples compute exactly the gradients of 1 process x 8
DETERMINISTIC = ["--dropout", "0", "--encoder-dropout", "0", "--lora-dropout", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "full"])
def test_two_cpu_processes_match_one(tmp_path: Path, tiny_model: str, toy_data: str, method: str) -> None:
    args = [
        "train",
        "--method",
        method,
        *tiny_args(tiny_model, toy_data, 2),
        *DETERMINISTIC,
    ]
    single, double = tmp_path / "single", tmp_path / "double"
    assert main([*args, "--out", str(single)]) == 0
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "intentlab",
            *args,
            "--out",
            str(double),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("test accuracy") == 1  # one summary line, from rank 0
    a = json.loads((single / "result.json").read_text())
    b = json.loads((double / "result.json").read_text())
    assert b["run"]["num_processes"] == 2 and a["run"]["num_processes"] == 1
    for ra, rb in zip(a["train"]["epochs"], b["train"]["epochs"], strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy", "val_f1_macro"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-3, abs=1e-4), key
    assert b["test"]["accuracy"] == pytest.approx(a["test"]["accuracy"], abs=1e-9)
    assert b["test"]["loss"] == pytest.approx(a["test"]["loss"], rel=1e-3)
    assert len(json.loads((double / "test_predictions.json").read_text())["y_pred"]) == a["test"]["n"]
