"""Prediction from a run folder: `Predictor.from_run(path)` loads tokenizer, labels and weights once.

    p = Predictor.from_run("runs/lora")
    p.predict(["I lost my card"], top_k=3)   # [[("lost_or_stolen_card", 0.97), ...]]

`evaluate_run()` re-evaluates a run on its recorded data split, exactly as training did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError


class Predictor:
    """A loaded run: batch prediction sorted by length, in inference mode."""

    def __init__(self, loaded: Any, bf16: bool = False, batch_size: int = 256) -> None:
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.labels: list[str] = loaded.labels
        self.info: dict[str, Any] = loaded.info
        self.bf16 = bf16
        self.batch_size = batch_size
        self.max_length = int(self.info.get("max_length", 128))

    @classmethod
    def from_run(cls, run: str | Path, bf16: bool | None = None, batch_size: int = 256) -> Predictor:
        """Load a run folder. bf16 defaults to what the run was trained with."""
        from intentlab.models.classifier import quiet_transformers
        from intentlab.models.io import load_model

        quiet_transformers()
        run = Path(run)
        if not run.exists():
            raise UserError(f"run folder {run} not found. Pass a folder written by `intentlab train`.")
        from intentlab.training.baseline import is_baseline_run

        if is_baseline_run(run):
            return BaselinePredictor(run)
        if bf16 is None:
            bf16 = _run_config(run).get("bf16", False)
        return cls(load_model(run), bool(bf16), batch_size)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        from intentlab.data.batching import tokenize
        from intentlab.inference.metrics import predict_logits

        ids = tokenize(self.tokenizer, texts, self.max_length)
        return predict_logits(self.model, ids, self.batch_size, self.tokenizer.pad_token_id or 0, self.bf16)

    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
        """For each text, the top_k (label, probability) pairs, most likely first."""
        if not texts:
            return []
        z = self.logits(texts).astype(np.float64)
        probs = np.exp(z - z.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        k = max(1, min(top_k, len(self.labels)))
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.labels[j], float(probs[i, j])) for j in row] for i, row in enumerate(top)]


class BaselinePredictor(Predictor):
    """A TF-IDF + linear SVM run behind the same interface. Its "logits" are SVM margins, so the
    probabilities `predict` gives are a softmax of margins: they rank intents but are not calibrated."""

    def __init__(self, run: Path) -> None:
        from intentlab.training.baseline import load_baseline

        self.pipeline, self.labels = load_baseline(run)
        self.info = {"method": "baseline"}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.pipeline.decision_function(list(texts)), dtype=np.float64)


def _run_config(run: Path) -> dict[str, Any]:
    from intentlab.config import read_yaml

    path = run / "config.yaml"
    return read_yaml(path) if path.is_file() else {}


def run_dataset(run: Path, data_dir: str | None = None) -> tuple[Any, Any]:
    """The dataset (same split) and config a run was trained with."""
    from intentlab.config import Config, merge
    from intentlab.data import dataset_for
    from intentlab.runs import load_result

    load_result(run)  # refuses incomplete or foreign runs with a clear message
    cfg = merge(Config(), _run_config(run), f"{run}/config.yaml")
    ds = dataset_for(cfg, data_dir)
    return ds, cfg


def evaluate_run(run: str | Path, split: str = "test", data_dir: str | None = None) -> dict[str, Any]:
    """Reload a run and evaluate it on `split` of the data it was trained on (same carve-out)."""
    from intentlab.inference.metrics import metrics

    run = Path(run)
    ds, cfg = run_dataset(run, data_dir)
    predictor = Predictor.from_run(run, bf16=cfg.bf16, batch_size=cfg.eval_batch_size)
    if predictor.labels != ds.labels:
        raise UserError(
            f"the labels of {run} differ from those of its data now. Evaluate on the data it was trained on."
        )
    part = ds.split(split)
    scores = metrics(ds.ids(part), predictor.logits(part.texts), ds.labels)
    if isinstance(predictor, BaselinePredictor):
        scores["loss"] = None  # SVM margins are not probabilities: no cross-entropy (as in training)
    return scores


def iter_texts(path: Path, text_column: str, chunk: int) -> Iterator[list[str]]:
    """Stream texts from a CSV/TSV/JSONL file in chunks, so large files never sit in memory whole."""
    import csv
    import json

    if not path.is_file():
        raise UserError(f"input file {path} not found. Pass an existing CSV or JSONL file to --input.")
    suffix = path.suffix.lower()
    with open(path, encoding="utf-8-sig", newline="") as f:
        if suffix in (".jsonl", ".json"):
            rows: Iterator[Any] = (json.loads(line) for line in f if line.strip())
        elif suffix in (".csv", ".tsv"):
            rows = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            raise UserError(f"{path}: unsupported file type {suffix!r}. Use .csv, .tsv or .jsonl.")
        batch: list[str] = []
        try:
            for n, row in enumerate(rows, 1):
                text = row.get(text_column) if isinstance(row, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise UserError(
                        f"{path}: row {n} has no text in column {text_column!r}. Fix it or pass --text-column."
                    )
                batch.append(text)
                if len(batch) == chunk:
                    yield batch
                    batch = []
        except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
            raise UserError(
                f"{path}: unreadable ({type(e).__name__}). Save it as UTF-8 CSV or JSONL."
            ) from None
        if batch:
            yield batch


def predict_file(
    predictor: Predictor,
    inp: str | Path,
    out: str | Path,
    text_column: str = "text",
    top_k: int = 1,
    chunk: int = 1024,
    overwrite: bool = False,
) -> int:
    """Predict every row of `inp` into `out` (CSV or JSONL by suffix), atomically; returns the row count."""
    import csv
    import json
    import os
    import tempfile

    from tqdm.auto import tqdm

    inp, out = Path(inp), Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"output file {out} exists. Choose another --output or pass --overwrite.")
    if out.suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(f"--output {out}: use a .csv or .jsonl file name.")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    n = 0
    try:
        with (
            os.fdopen(fd, "w", encoding="utf-8", newline="") as f,
            tqdm(desc="predict", unit=" texts") as bar,
        ):
            writer = None
            if out.suffix.lower() == ".csv":
                writer = csv.writer(f)
                writer.writerow(["text", "intent", "probability", *(f"top{i}" for i in range(2, top_k + 1))])
            for texts in iter_texts(inp, text_column, chunk):
                for text, top in zip(texts, predictor.predict(texts, top_k), strict=True):
                    if writer:
                        writer.writerow(
                            [text, top[0][0], f"{top[0][1]:.6f}", *(f"{lab}:{p:.6f}" for lab, p in top[1:])]
                        )
                    else:
                        f.write(
                            json.dumps(
                                {
                                    "text": text,
                                    "intent": top[0][0],
                                    "probability": top[0][1],
                                    "top_k": [{"intent": lab, "probability": p} for lab, p in top],
                                }
                            )
                            + "\n"
                        )
                n += len(texts)
                bar.update(len(texts))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
