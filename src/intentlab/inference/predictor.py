"""Prediction from an opened run: `Predictor` (what `inference/opener.open_run` returns) and its
`Decider`, the one place that applies the fitted temperature, top-k and the out-of-scope decision.

`predict_file()` streams a CSV/JSONL file through it. Inference goes through the one path of
`inference/engine.py`; a TF-IDF baseline run is a second backend behind the same interface.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from intentlab.errors import UserError
from intentlab.inference.engine import Backend, Outputs, softmax
from intentlab.inference.engine import top_k as top_pairs
from intentlab.inference.ood import FEATURE_SCORERS, OodState

if TYPE_CHECKING:
    from intentlab.models.storage import Storage
    from intentlab.runs.model_info import ModelInfo
    from intentlab.runs.record import RunResult


@dataclass
class Prediction:
    """One text's answer: the top intents (calibrated probabilities) and, when the run has fitted
    out-of-scope scorers, whether it is out of scope, its in-scope score and the threshold used."""

    intents: list[tuple[str, float]]
    out_of_scope: bool | None = None
    score: float | None = None
    threshold: float | None = None
    scorer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intents": [{"intent": label, "probability": p} for label, p in self.intents],
            "out_of_scope": self.out_of_scope,
            "score": self.score,
            "threshold": self.threshold,
            "scorer": self.scorer,
        }


SCORE_RANGES = {"msp": (0.0, 1.0), "knn": (-1.0, 1.0)}  # energy and mahalanobis: any finite number


class Decider:
    """Turns a run's logits (and features) into predictions: the one place that applies the fitted
    temperature, top-k and the out-of-scope decision, for `predict`, `evaluate` and `serve` alike."""

    def __init__(self, labels: list[str], ood: OodState | None) -> None:
        self.labels = labels
        self.ood = ood

    @property
    def needs_features(self) -> bool:
        return self.ood is not None and self.ood.chosen in FEATURE_SCORERS

    def check_threshold(self, threshold: float | None) -> float | None:
        """A threshold override, checked against the chosen scorer's range (a UserError if outside)."""
        if threshold is None:
            return None
        try:
            value = float(threshold)  # an integer beyond float's range: OverflowError
        except (OverflowError, TypeError, ValueError):
            raise UserError(
                f"threshold {str(threshold)[:40]} is not a usable number. Pick a finite number."
            ) from None
        if not math.isfinite(value):
            raise UserError(f"threshold {value} is not a finite number. Pick a finite number.")
        if self.ood is None:
            raise UserError("this run has no out-of-scope scorer to threshold. Fit one: intentlab ood RUN.")
        low, high = SCORE_RANGES.get(self.ood.chosen, (-math.inf, math.inf))
        if not low <= value <= high:
            raise UserError(
                f"threshold {threshold} is outside the range of the {self.ood.chosen} scorer "
                f"([{low:g}, {high:g}]). Pick a value inside it."
            )
        return value

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits, self.ood.temperature if self.ood else 1.0)

    def decide(self, out: Outputs, k: int, threshold: float | None = None) -> list[Prediction]:
        pairs = top_pairs(self.probabilities(out.logits), self.labels, k)
        if self.ood is None:
            return [Prediction(p) for p in pairs]
        used = self.ood.thresholds[self.ood.chosen] if threshold is None else threshold
        scores, flags = self.ood.decide(out.logits, out.features, used)
        return [
            Prediction(p, bool(f), float(s), float(used), self.ood.chosen)
            for p, s, f in zip(pairs, scores, flags, strict=True)
        ]


class Predictor:
    """An opened run (`inference/opener.py`): labels, its model description and record, an inference
    backend and its decider."""

    def __init__(
        self,
        backend: Backend,
        labels: list[str],
        info: ModelInfo,
        ood: OodState | None = None,
        result: RunResult | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.backend = backend
        self.labels = labels
        self.info = info
        self.result = result  # None for an export folder without the run's record
        self.storage = storage
        self.decider = Decider(labels, ood)
        # False for SVM margins: a softmax of them ranks intents but is no probability (no loss either)
        self.probabilistic = not getattr(backend, "margins", False)

    @property
    def ood(self) -> OodState | None:
        return self.decider.ood

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.backend.run(texts).logits

    def outputs(self, texts: Sequence[str], features: bool = False, progress: str | None = None) -> Outputs:
        """Logits (and features) of `texts`; `progress` names a progress bar for long calls."""
        return self.backend.run(texts, features, progress)

    def classify(
        self, texts: Sequence[str], top_k: int = 1, threshold: float | None = None
    ) -> list[Prediction]:
        """Each text's top_k intents and, with a fitted scorer, its out-of-scope decision."""
        if not texts:
            return []
        threshold = self.decider.check_threshold(threshold)
        return self.decider.decide(self.outputs(texts, self.decider.needs_features), top_k, threshold)

    def predict(self, texts: Sequence[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
        """For each text, the top_k (label, probability) pairs, most likely first."""
        return [p.intents for p in self.classify(texts, top_k)]


class BaselineBackend:
    """A TF-IDF + linear SVM run behind the backend interface. Its "logits" are SVM margins, so the
    probabilities `predict` gives are a softmax of margins: they rank intents but are not calibrated."""

    margins = True

    def __init__(self, folder: Path, labels: list[str]) -> None:
        from intentlab.models import tfidf

        self.pipeline = tfidf.load(folder, labels)

    def run_ids(self, ids: list[list[int]], features: bool = False, progress: str | None = None) -> Outputs:
        raise UserError("a TF-IDF baseline run reads texts, not token ids.")

    def run(self, texts: Sequence[str], features: bool = False, progress: str | None = None) -> Outputs:
        from intentlab.models import tfidf

        return Outputs(tfidf.margins(self.pipeline, list(texts)))


def check_files(inp: Path, out: Path | None = None, overwrite: bool = False) -> None:
    """The problems with `predict --input/--output` that need no model: checked before one loads."""
    if not inp.is_file():
        raise UserError(f"input file {inp} not found. Pass an existing CSV or JSONL file to --input.")
    if inp.suffix.lower() not in (".jsonl", ".json", ".csv", ".tsv"):
        raise UserError(f"{inp}: unsupported file type {inp.suffix.lower()!r}. Use .csv, .tsv or .jsonl.")
    if out is not None and out.exists() and out.samefile(inp):  # even with --overwrite: it is the data
        raise UserError(
            f"--output {out} is the --input file: predictions would replace it. Choose another --output."
        )
    if out is not None and out.exists() and not overwrite:
        raise UserError(f"output file {out} exists. Choose another --output or pass --overwrite.")
    if out is not None and out.suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(f"--output {out}: use a .csv or .jsonl file name.")


def iter_texts(path: Path, text_column: str, chunk: int) -> Iterator[list[str]]:
    """Stream texts from a CSV/TSV/JSONL file in chunks, so large files never sit in memory whole.

    As strict as training's reader: a malformed row (unclosed quote, extra fields, bad JSON, no text,
    invalid Unicode) is a one-line error naming it, never a silently shorter output."""
    import csv
    import json

    from intentlab.data.loading import valid_unicode

    suffix = path.suffix.lower()  # a supported one: `check_files` ran first (`predict_file`)
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
    threshold: float | None = None,
) -> int:
    """Predict every row of `inp` into `out` (CSV or JSONL by suffix), atomically; returns the row count.

    With a fitted out-of-scope scorer every row also says whether it is out of scope, with its score."""
    import csv
    import json
    import os
    import tempfile

    from tqdm.auto import tqdm

    from intentlab.folders import umask

    inp, out = Path(inp), Path(out)
    check_files(inp, out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~umask())  # as any file the user writes, not mkstemp's 0600
    ood = predictor.ood is not None
    n = 0
    try:
        with (
            os.fdopen(fd, "w", encoding="utf-8", newline="") as f,
            tqdm(desc="predict", unit=" texts") as bar,
        ):
            writer = csv.writer(f) if out.suffix.lower() == ".csv" else None
            if writer:
                extra = ["out_of_scope", "score"] if ood else []
                writer.writerow(
                    ["text", "intent", "probability", *extra, *(f"top{i}" for i in range(2, top_k + 1))]
                )
            for texts in iter_texts(inp, text_column, chunk):
                for text, pred in zip(texts, predictor.classify(texts, top_k, threshold), strict=True):
                    (label, p), rest = pred.intents[0], pred.intents[1:]
                    if writer:
                        extra = [str(pred.out_of_scope).lower(), f"{pred.score:.6g}"] if ood else []
                        writer.writerow(
                            [text, label, f"{p:.6f}", *extra, *(f"{lab}:{q:.6f}" for lab, q in rest)]
                        )
                    else:
                        f.write(
                            json.dumps({"text": text, "intent": label, "probability": p, **pred.to_dict()})
                            + "\n"
                        )
                n += len(texts)
                bar.update(len(texts))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
