"""Tracking against the real libraries: MLflow read back through its client, TensorBoard event files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from intentlab.cli import main
from intentlab.folders import read_jsonl


def test_mlflow_logs_the_same_numbers_as_metrics_jsonl(
    tmp_path: Path, train_args: list[str], toy_data: str
) -> None:
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--method",
                "lora",
                "--out",
                str(out),
                *train_args,
                "--track",
                "mlflow",
                "--tracking-uri",
                uri,
            ]
        )
        == 0
    )
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name(Path(toy_data).name)  # the experiment is named after the data
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    rows = read_jsonl(out / "metrics.jsonl")
    for key in ("train_loss", "val_loss", "val_accuracy", "val_f1_macro"):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [r["epoch"] for r in rows]
        assert [m.value for m in history] == pytest.approx([r[key] for r in rows], rel=1e-12)
    assert run.data.params["method"] == "lora" and run.data.params["epochs"] == "2"
    assert run.data.metrics["test_accuracy"] == pytest.approx(
        __import__("json").loads((out / "result.json").read_text())["test"]["accuracy"]
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "plots"} <= artifacts


def test_tensorboard_writes_event_files(tmp_path: Path, train_args: list[str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["train", "--method", "head", "--out", str(out), *train_args, "--track", "tensorboard"]) == 0
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    rows = read_jsonl(out / "metrics.jsonl")
    got = [e.value for e in acc.Scalars("val_accuracy")]
    assert got == pytest.approx([r["val_accuracy"] for r in rows], rel=1e-6)


def test_no_tracker_imports_nothing(tmp_path: Path, train_args: list[str]) -> None:
    for mod in ("mlflow", "torch.utils.tensorboard"):
        sys.modules.pop(mod, None)
    assert main(["train", "--method", "head", "--out", str(tmp_path / "r"), *train_args]) == 0
    assert "mlflow" not in sys.modules and "torch.utils.tensorboard" not in sys.modules
