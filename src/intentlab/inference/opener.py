"""The one run opener: `open_run(path)` turns a run folder (or an export folder) into a `Predictor`, an
inference backend with its labels, its record and its out-of-scope decider. `predict`, `evaluate`,
`serve`, `ood` and `export` all open runs here.

    p = open_run("runs/lora")
    p.predict(["I lost my card"], top_k=3)   # [[("lost_or_stolen_card", 0.97), ...]]

What it checks before anything is built: the folder exists, its model description is valid
(`runs/model_info.py`), the files its storage kind needs are there. The backend follows the storage
kind (`models/storage.py`): a torch model for encoder runs, the TF-IDF pipeline for the baseline, and
ONNX Runtime for an export folder when asked (`backend="onnxruntime"`). Precision: bf16 only where
the run was trained in bf16 (or `bf16` asks for it) and this machine runs it fast; otherwise fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentlab.errors import UserError
from intentlab.inference.engine import Placement, TorchBackend
from intentlab.inference.predictor import BaselineBackend, Predictor
from intentlab.runs.files import CONFIG, EXPORT_MARKER, MODEL, ONNX_FP32, ONNX_INT8, RESULT
from intentlab.runs.record import RunResult, load_result, read_config

BACKENDS = ("torch", "onnxruntime")


def placement_for(run: Path, bf16: bool | None = None, device: str | None = None) -> Placement:
    """Where a run's model runs here: `bf16` as given, else as the run was trained (where fast)."""
    if bf16 is None:
        bf16 = bool(read_config(run).bf16) if (run / CONFIG).is_file() else False
    return Placement.for_this_machine(device, bf16=bf16)


def open_run(
    run: str | Path,
    *,
    bf16: bool | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    ood: bool = True,
    backend: str = "torch",
    onnx_file: str | None = None,
    onnx_threads: int | None = None,
) -> Predictor:
    """Open a run folder (or an export folder) for inference, with its out-of-scope scorer and
    temperature unless `ood` is False. `backend="onnxruntime"` opens an export's `model.onnx`
    (int8 when exported, unless `onnx_file` names one)."""
    from intentlab.models.io import load_model, model_folder
    from intentlab.models.loading import quiet_transformers
    from intentlab.models.storage import storage
    from intentlab.runs.model_info import read_model_info

    quiet_transformers()
    run = Path(run)
    if not run.exists():
        raise UserError(f"run folder {run} not found. Pass a folder written by `intentlab train`.")
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}.")
    if backend == "onnxruntime":
        return _open_onnx(run, onnx_file, onnx_threads, ood)
    folder = model_folder(run)
    info, labels = read_model_info(folder)
    result = _record(folder.parent)
    state = run_ood(folder.parent, result, len(labels)) if ood else None
    kind = storage(info.weights)
    if not kind.encoder:
        return Predictor(BaselineBackend(folder, labels), labels, info, state, result, kind)
    loaded = load_model(run)
    backend_ = TorchBackend(
        loaded.model,
        loaded.tokenizer,
        loaded.info.max_length,
        placement_for(folder.parent, bf16, device),
        **({"batch_size": batch_size} if batch_size else {}),
    )
    return Predictor(backend_, loaded.labels, loaded.info, state, result, kind)


ARTIFACT_OF = {ONNX_FP32: "onnx", ONNX_INT8: "onnx int8"}  # export_verification.json's name for each file


def _check_verified(folder: Path, file: str) -> None:
    """Serve an ONNX file only when its export finished and verified it: `export_verification.json`
    names it. (A killed export leaves no such record: an unverified, unquantized model.onnx is refused.)"""
    from intentlab.runs.safe_files import read_json

    try:
        record = read_json(folder / EXPORT_MARKER)
    except FileNotFoundError:
        record = None
    artifacts = record.get("artifacts") if isinstance(record, dict) else None
    if not isinstance(artifacts, dict) or ARTIFACT_OF.get(file) not in artifacts:
        raise UserError(
            f"{folder / file} has no verification record ({EXPORT_MARKER} does not name it): the export did not "
            f"finish. Export the run again: intentlab export RUN --out {folder} --onnx --overwrite."
        )


def check_run_files(run: str | Path, root: Path | None = None, backend: str = "torch") -> None:
    """Every file check a load needs, and nothing that builds a model: quick, and safe to run off the
    model thread with a deadline (`serve`'s admin loads do). Regular files only (no FIFO, device or
    symlink), JSON parsed within size and depth, safetensors headers bounded, the tokenizer's files
    what the run saved, and with `root`, every entry inside it."""
    from intentlab.models.io import check_tokenizer_files, model_folder
    from intentlab.models.storage import storage
    from intentlab.runs.model_info import read_model_info
    from intentlab.runs.safe_files import check_inside, check_safetensors, read_json

    run = Path(run)
    if root is not None:
        check_inside(root, run)
    onnx = backend == "onnxruntime"
    folder = run if onnx else model_folder(run)
    info, _ = read_model_info(folder)
    if onnx:
        read_json(folder / EXPORT_MARKER)
    else:
        load_result(run)
        for name in storage(info.weights).files:
            path = folder / name
            (check_safetensors if name.endswith(".safetensors") else read_json)(path)
    if storage(info.weights).encoder:
        check_tokenizer_files(folder, info)
    state = (folder if onnx else run) / "ood"
    if (state / "ood.json").exists():
        read_json(state / "ood.json")
        check_safetensors(state / "state.safetensors")


def run_ood(run: Path, result: RunResult | None, num_labels: int) -> Any:
    """A run's fitted out-of-scope state, if any, and only the one its record measured: an ood/ that
    the record never measured, or measured differently (a killed `intentlab ood`), is refused."""
    from intentlab.inference.ood import load as load_ood

    if result is not None and result.ood is None and (run / "ood" / "ood.json").exists():
        raise UserError(
            f"{run}/ood was never measured by its result.json (an interrupted `intentlab ood`?). "
            f"Refit it: intentlab ood {run}."
        )
    expected = result.ood.state_sha256 if result is not None and result.ood is not None else None
    return load_ood(run, num_labels, expected)


def _record(folder: Path) -> RunResult | None:
    """The run's record; None for an export folder without one."""
    return load_result(folder) if (folder / RESULT).is_file() or (folder / CONFIG).is_file() else None


def _open_onnx(folder: Path, onnx_file: str | None, threads: int | None, ood: bool) -> Predictor:
    """An `intentlab export --onnx` folder on ONNX Runtime: int8 when it has one, else fp32."""
    from intentlab.inference.onnx import OnnxBackend
    from intentlab.inference.ood import load as load_ood
    from intentlab.models.io import run_tokenizer
    from intentlab.models.storage import storage
    from intentlab.runs.model_info import read_model_info

    candidates = [onnx_file] if onnx_file else [ONNX_INT8, ONNX_FP32]
    path = next((folder / c for c in candidates if (folder / c).is_file()), None)
    if path is None and (folder / MODEL).is_dir():  # a run folder, not an export of one
        raise UserError(
            f"{folder} is a run folder; --backend onnxruntime serves an export of it. Make one: "
            f"intentlab export {folder} --out EXPORT --merge --onnx [--quantize int8], then serve EXPORT."
        )
    if path is None:
        raise UserError(
            f"{folder} has no {' or '.join(candidates)}. Export the run first: "
            f"intentlab export RUN --out {folder} --merge --onnx [--quantize int8]."
        )
    _check_verified(folder, path.name)
    info, labels = read_model_info(folder)
    backend = OnnxBackend(  # no spinning: idle ORT threads would take the CPU from the HTTP side
        path, run_tokenizer(folder, info), info.max_length, threads=threads, spinning=False
    )
    state = load_ood(folder, len(labels)) if ood else None
    result = load_result(folder) if (folder / RESULT).is_file() else None
    return Predictor(backend, labels, info, state, result, storage(info.weights))
