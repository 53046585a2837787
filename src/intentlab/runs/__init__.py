"""The run-folder contract, torch-free: file names (`files`), the typed record (`record`), the model
folder's description (`model_info`), provenance and model cards. Writing a run is
`training/writer.py`; opening one for inference is `inference/opener.py`."""

from intentlab.runs.files import CONFIG, METRICS, PREDICTIONS, RESULT
from intentlab.runs.record import (
    EpochRow,
    OodSummary,
    RunInfo,
    RunResult,
    Scores,
    TrainInfo,
    load_result,
    read_config,
    read_epochs,
)

__all__ = [
    "CONFIG",
    "METRICS",
    "PREDICTIONS",
    "RESULT",
    "EpochRow",
    "OodSummary",
    "RunInfo",
    "RunResult",
    "Scores",
    "TrainInfo",
    "load_result",
    "read_config",
    "read_epochs",
]
