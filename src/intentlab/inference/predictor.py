"""Prediction from a run folder: `Predictor.from_run(path)` loads tokenizer, labels and weights once.

    p = Predictor.from_run("runs/lora")
    p.predict(["I lost my card"], top_k=3)   # [[("lost_or_stolen_card", 0.97), ...]]

`predict_file()` streams a CSV/JSONL file through it. Inference goes through the one path of
`inference/engine.py`; a TF-IDF baseline run is a second backend behind the same interface.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.inference.engine import Backend, Outputs, Placement, TorchBackend, softmax
from intentlab.inference.engine import top_k as top_pairs
from intentlab.models.methods import TFIDF
from intentlab.runs import read_config


class Predictor:
    """A loaded run: labels, run info and an inference backend."""

    def __init__(self, backend: Backend, labels: list[str], info: dict[str, Any]) -> None:
        self.backend = backend
        self.labels = labels
        self.info = info
        # False for SVM margins: a softmax of them ranks intents but is no probability (no loss either)
        self.probabilistic = not getattr(backend, "margins", False)

    @classmethod
    def from_run(
        cls,
        run: str | Path,
        bf16: bool | None = None,
        device: str | None = None,
        batch_size: int | None = None,
    ) -> Predictor:
        """Load a run folder. Precision: bf16 only where the run was trained in bf16 (or `bf16` asks for
        it) and this machine runs it fast; otherwise fp32."""
        from intentlab.models.classifier import quiet_transformers

        quiet_transformers()
        run = Path(run)
        if not run.exists():
            raise UserError(f"run folder {run} not found. Pass a folder written by `intentlab train`.")
        from intentlab.models.io import load_model, model_folder, read_model_info

        folder = model_folder(run)
        info, labels = read_model_info(folder)
        if info["weights"] == TFIDF:
            return cls(BaselineBackend(folder, labels), labels, info)
        loaded = load_model(run)
        if bf16 is None:
            bf16 = bool(read_config(run).bf16)
        placement = Placement.for_this_machine(device, bf16=bf16)
        backend = TorchBackend(
            loaded.model,
            loaded.tokenizer,
            int(loaded.info.get("max_length", 128)),
            placement,
            **({"batch_size": batch_size} if batch_size else {}),
        )
        return cls(backend, loaded.labels, loaded.info)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.backend.run(texts).logits

    def outputs(self, texts: Sequence[str], features: bool = False) -> Outputs:
        return self.backend.run(texts, features)

    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
        """For each text, the top_k (label, probability) pairs, most likely first."""
        if not texts:
            return []
        return top_pairs(softmax(self.logits(texts)), self.labels, top_k)


class BaselineBackend:
    """A TF-IDF + linear SVM run behind the backend interface. Its "logits" are SVM margins, so the
    probabilities `predict` gives are a softmax of margins: they rank intents but are not calibrated."""

    margins = True

    def __init__(self, folder: Path, labels: list[str]) -> None:
        from intentlab.models import tfidf

        self.pipeline = tfidf.load(folder, labels)

    def run_ids(self, ids: list[list[int]], features: bool = False) -> Outputs:
        raise UserError("a TF-IDF baseline run reads texts, not token ids.")

    def run(self, texts: Sequence[str], features: bool = False) -> Outputs:
        from intentlab.models import tfidf

        return Outputs(tfidf.margins(self.pipeline, list(texts)))


def iter_texts(path: Path, text_column: str, chunk: int) -> Iterator[list[str]]:
    """Stream texts from a CSV/TSV/JSONL file in chunks, so large files never sit in memory whole.

    As strict as training's reader: a malformed row (unclosed quote, extra fields, bad JSON, no text,
    invalid Unicode) is a one-line error naming it, never a silently shorter output."""
    import csv
    import json

    from intentlab.data.loading import valid_unicode

    if not path.is_file():
        raise UserError(f"input file {path} not found. Pass an existing CSV or JSONL file to --input.")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        raise UserError(f"{path}: unsupported file type {suffix!r}. Use .csv, .tsv or .jsonl.")
    with open(path, encoding="utf-8-sig", newline="") as f:
        if suffix in (".jsonl", ".json"):
            rows: Iterator[Any] = (json.loads(line) for line in f if line.strip())
            where = lambda n: f"line {n}"  # noqa: E731
        else:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", strict=True)
            rows = iter(reader)
            where = lambda n: f"line {reader.line_num}"  # noqa: E731
        batch: list[str] = []
        n = 0
        try:
            for n, row in enumerate(rows, 1):
                text = row.get(text_column) if isinstance(row, dict) else None
                if isinstance(row, dict) and None in row:
                    raise UserError(
                        f"{path}: {where(n)} has more fields than the header. Quote texts with commas."
                    )
                if not isinstance(text, str) or not text.strip():
                    raise UserError(
                        f"{path}: {where(n)} has no text in column {text_column!r}. Fix it or pass --text-column."
                    )
                if not valid_unicode(text):
                    raise UserError(
                        f"{path}: {where(n)} holds invalid Unicode (a lone surrogate). Fix that row."
                    )
                batch.append(text)
                if len(batch) == chunk:
                    yield batch
                    batch = []
        except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
            raise UserError(
                f"{path}: unreadable after row {n} ({type(e).__name__}: {e}). Fix the file (UTF-8 CSV or JSONL)."
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

    from intentlab.folders import umask

    inp, out = Path(inp), Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"output file {out} exists. Choose another --output or pass --overwrite.")
    if out.suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(f"--output {out}: use a .csv or .jsonl file name.")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~umask())  # as any file the user writes, not mkstemp's 0600
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
