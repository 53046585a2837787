"""The run folder's and export folder's file names: defined here once, for every writer and reader.

<run>/config.yaml            the resolved config (every default written out)
<run>/metrics.jsonl          one JSON object per epoch
<run>/result.json            {"run", "train", "test", "meta", "ood"}; written last: it marks completion
<run>/test_predictions.json  gold and predicted label ids on the test split (for paired statistics)
<run>/model/                 tokenizer + label map + weights; loadable on its own
<run>/ood/                   the fitted out-of-scope scorers, thresholds and temperature
<run>/plots/                 per-run charts
<run>/checkpoint/            while training: what `--resume` continues from
<run>/teacher/               a distilled run's teacher logits for its training texts (training/distill.py)
"""

from __future__ import annotations

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
RESULT = "result.json"
PREDICTIONS = "test_predictions.json"
MODEL = "model"
OOD = "ood"
PLOTS = "plots"
CHECKPOINT = "checkpoint"
TEACHER = "teacher"
TENSORBOARD = "tensorboard"
CARD = "README.md"  # the model card, in model/ and in every export

# in ood/: each scorer's decision on every test row (the report's paired tests read it)
OOD_DECISIONS = "test_decisions.json"

# in model/: how to rebuild the model and its label map (models/io.py, runs/model_info.py)
MODEL_INFO = "intentlab.json"
LABELS = "labels.json"

# everything intentlab writes into a run folder; anything else means the folder is not (only) a run
RUN_ENTRIES = frozenset(
    {CONFIG, METRICS, RESULT, PREDICTIONS, MODEL, PLOTS, CHECKPOINT, TENSORBOARD, OOD, TEACHER}
)
RUN_MARKER = CONFIG  # a folder holding it is a run folder

# an export folder (`intentlab export`)
EXPORT_MARKER = "export_verification.json"
ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
