"""The TF-IDF + linear SVM baseline model: its definition, and its storage without pickle.

A run folder may come from a stranger, so the baseline is stored as data only, never as a pickle:

    model/intentlab.json          {"method": "baseline", "weights": "tfidf", ...} (as every run's model)
    model/labels.json             {"labels": [...]}
    model/tfidf.json              format tag and the vocabularies ({term: column}) of both vectorizers
    model/tfidf.safetensors       idf.0, idf.1 (per vectorizer), coef, intercept (the SVM)

Loading rebuilds the same scikit-learn objects from code (`make_pipeline`) and fills in the fitted
numbers after checking every shape and type. Runs saved by older intentlab as `baseline.pkl` are
refused, never unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError
from intentlab.runs.model_info import LEGACY_PICKLE, legacy_pickle
from intentlab.runs.safe_files import check_safetensors, read_json

FORMAT = "intentlab.tfidf-linearsvc/1"
NAME = "tfidf-word1-2+char2-5-linearsvc"
VOCAB_FILE = "tfidf.json"
ARRAYS_FILE = "tfidf.safetensors"


def make_pipeline(seed: int = 0, c: float = 0.5) -> Any:
    """Word 1-2-grams and character 2-5-grams (TF-IDF, sublinear), then a linear SVM (regularisation C)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.pipeline import make_union
    from sklearn.svm import LinearSVC

    features = make_union(
        TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True),
    )
    return sk_pipeline(features, LinearSVC(C=c, random_state=seed))


def margins(pipe: Any, texts: list[str]) -> np.ndarray:
    """SVM margins, one column per class (a binary SVM's single margin d becomes [-d, d])."""
    d = np.asarray(pipe.decision_function(list(texts)), dtype=np.float64)
    return np.column_stack([-d, d]) if d.ndim == 1 else d


def parameter_count(pipe: Any) -> int:
    svm = pipe[-1]
    return int(svm.coef_.size + svm.intercept_.size)


def _vectorizers(pipe: Any) -> list[Any]:
    return [t for _, t in pipe[0].transformer_list]


def save(pipe: Any, folder: Path) -> int:
    """Write the fitted pipeline's numbers into `folder`; returns the bytes written."""
    from safetensors.numpy import save_file

    vecs = _vectorizers(pipe)
    vocab = {"format": FORMAT, "vocabularies": [{t: int(i) for t, i in v.vocabulary_.items()} for v in vecs]}
    (folder / VOCAB_FILE).write_text(json.dumps(vocab), encoding="utf-8")
    svm = pipe[-1]
    arrays = {f"idf.{i}": np.ascontiguousarray(v.idf_, dtype=np.float64) for i, v in enumerate(vecs)}
    arrays["coef"] = np.ascontiguousarray(svm.coef_, dtype=np.float64)
    arrays["intercept"] = np.ascontiguousarray(svm.intercept_, dtype=np.float64)
    save_file(arrays, str(folder / ARRAYS_FILE))
    return sum((folder / f).stat().st_size for f in (VOCAB_FILE, ARRAYS_FILE))


def _corrupt(folder: Path, what: str) -> UserError:
    return UserError(
        f"{folder}: the TF-IDF baseline files are corrupt ({what}). Train the baseline run again."
    )


def _check_vocab(folder: Path, vocab: Any) -> list[dict[str, int]]:
    if not isinstance(vocab, dict) or vocab.get("format") != FORMAT:
        raise _corrupt(folder, f"{VOCAB_FILE} is not format {FORMAT}")
    vocabs = vocab.get("vocabularies")
    if not isinstance(vocabs, list) or len(vocabs) != 2:
        raise _corrupt(folder, "expected two vocabularies")
    for v in vocabs:
        if not isinstance(v, dict) or not all(isinstance(t, str) and type(i) is int for t, i in v.items()):
            raise _corrupt(folder, "a vocabulary must map terms to column numbers")
        if sorted(v.values()) != list(range(len(v))):
            raise _corrupt(folder, "a vocabulary's columns must be 0..n-1, each once")
    return vocabs


def load(folder: Path, labels: list[str]) -> Any:
    """Rebuild the fitted pipeline from `folder` (checked); never unpickles anything."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if (folder / LEGACY_PICKLE).is_file() and not (folder / VOCAB_FILE).is_file():
        raise legacy_pickle(folder)
    try:
        vocabs = _check_vocab(folder, read_json(folder / VOCAB_FILE, max_bytes=256 * 2**20))
        check_safetensors(folder / ARRAYS_FILE)
        arrays = load_file(str(folder / ARRAYS_FILE))
    except FileNotFoundError as e:
        raise _corrupt(folder, f"{Path(e.filename or '?').name} missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError) as e:
        raise _corrupt(folder, type(e).__name__) from None
    n_out = 1 if len(labels) == 2 else len(labels)
    sizes = [len(v) for v in vocabs]
    want = {"idf.0": (sizes[0],), "idf.1": (sizes[1],), "coef": (n_out, sum(sizes)), "intercept": (n_out,)}
    if set(arrays) != set(want) or any(arrays[k].shape != shape for k, shape in want.items()):
        raise _corrupt(folder, "array names or shapes do not match the vocabularies and labels")
    if not all(np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() for a in arrays.values()):
        raise _corrupt(folder, "arrays must hold finite floating-point numbers")
    pipe = make_pipeline()
    for i, vec in enumerate(_vectorizers(pipe)):
        vec.set_params(vocabulary=vocabs[i])
        vec._validate_vocabulary()  # what fit() does with a given vocabulary
        vec.idf_ = arrays[f"idf.{i}"]
    svm = pipe[-1]
    svm.coef_, svm.intercept_ = arrays["coef"], arrays["intercept"]
    svm.classes_ = np.arange(len(labels))
    return pipe
