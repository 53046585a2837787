"""Experiment tracking: `--track mlflow` or `--track tensorboard`; with neither, nothing is imported.

Every tracker has the same small interface (params, one call per epoch, the finished run), so the
training loop never branches on which one is active; `NullTracker` does nothing (nanochat's no-op
logger). MLflow's default store is a local SQLite file, `./mlflow.db`, with artifacts in `mlartifacts/` beside it; TensorBoard writes event files
under `<run>/tensorboard` unless `--tracking-uri` names another folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentlab.errors import UserError
from intentlab.runs import EpochRow, RunResult
from intentlab.runs.files import RESULT
from intentlab.runs.record import EPOCH_KEYS

EPOCH_METRICS = tuple(k for k in EPOCH_KEYS if k != "epoch")


class NullTracker:
    def params(self, params: dict[str, Any]) -> None: ...
    def epoch(self, row: EpochRow) -> None: ...
    def finish(self, result: RunResult, run_dir: Path) -> None: ...


def _flat(params: dict[str, Any]) -> dict[str, str]:
    return {k: ",".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in params.items()}


class MLflowTracker(NullTracker):
    def __init__(self, uri: str | None, experiment: str, run_name: str) -> None:
        try:
            import mlflow
        except ImportError:
            raise UserError("--track mlflow needs mlflow. Run: pip install 'intentlab[track]'.") from None
        self.mlflow = mlflow
        uri = uri or f"sqlite:///{Path('mlflow.db').resolve()}"
        mlflow.set_tracking_uri(uri)
        if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(experiment) is None:
            # artifacts beside the database, not in ./mlruns of whatever folder the run started in
            artifacts = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
            mlflow.create_experiment(experiment, artifact_location=artifacts.as_uri())
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)

    def params(self, params: dict[str, Any]) -> None:
        self.mlflow.log_params(_flat(params))

    def epoch(self, row: EpochRow) -> None:
        metrics = {k: float(getattr(row, k)) for k in EPOCH_METRICS if getattr(row, k) is not None}
        self.mlflow.log_metrics(metrics, step=row.epoch)

    def finish(self, result: RunResult, run_dir: Path) -> None:
        test, tr = result.test, result.train
        self.mlflow.log_metrics(
            {
                "test_accuracy": test.accuracy,
                "test_f1_macro": test.f1_macro,
                "test_f1_weighted": test.f1_weighted,
                "trainable_params": tr.trainable_params,
                "train_seconds": tr.train_seconds,
                "peak_memory_mb": tr.peak_memory_mb,
                "checkpoint_bytes": tr.checkpoint_bytes,
            }
        )
        self.mlflow.log_artifact(str(run_dir / RESULT))
        self.mlflow.log_artifacts(str(run_dir / "plots"), artifact_path="plots")
        self.mlflow.end_run()


class TensorBoardTracker(NullTracker):
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "--track tensorboard needs tensorboard. Run: pip install 'intentlab[track]'."
            ) from None

        self.writer = SummaryWriter(str(log_dir))

    def params(self, params: dict[str, Any]) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in _flat(params).items())
        self.writer.add_text("config", text, 0)

    def epoch(self, row: EpochRow) -> None:
        for k in EPOCH_METRICS:
            if getattr(row, k) is not None:
                self.writer.add_scalar(k, float(getattr(row, k)), row.epoch)
        self.writer.flush()

    def finish(self, result: RunResult, run_dir: Path) -> None:
        for k in ("accuracy", "f1_macro", "f1_weighted"):
            self.writer.add_scalar(f"test_{k}", getattr(result.test, k), result.train.epochs_run)
        self.writer.close()


def make_tracker(
    kind: str | None, uri: str | None, run_dir: Path, experiment: str, run_name: str
) -> NullTracker:
    """The tracker for `--track` (None: the no-op tracker, importing nothing)."""
    if not kind:
        return NullTracker()
    if kind == "mlflow":
        return MLflowTracker(uri, experiment, run_name)
    if kind == "tensorboard":
        return TensorBoardTracker(Path(uri) if uri else run_dir / "tensorboard")
    raise UserError(f"unknown tracker {kind!r}. Use --track mlflow or --track tensorboard.")
