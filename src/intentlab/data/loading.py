"""Datasets: find, read and validate them; split, label-map and tokenize; length-bucketed batches.

Banking77 is found in this order: `--data-dir`, `$INTENTLAB_DATA_DIR`, the user cache
(`~/.cache/intentlab/banking77`), then a download of the public CSVs into that cache. A trained run
scored later (`evaluate`, `ood`, `export`) first looks in the folder it was trained from, when its
files still have the checksums the run recorded (`inference/evaluate.py`). Your own data is
one CSV/JSONL file (train, validation and test are carved from it) or a folder with `train.*`, optional
`validation.*`/`val.*`/`dev.*` and optional `test.*` files.

Every problem with the data is a one-line `UserError` that names the file, the row and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from intentlab.errors import UserError

BANKING77_URL = (
    "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data/{split}.csv"
)
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "dev", "valid"), "test": ("test",)}
EXTENSIONS = (".csv", ".jsonl", ".json", ".tsv")
LABEL_CANDIDATES = ("label", "intent", "category", "labels")
MAX_FIELD_CHARS = 1_000_000  # a text or label longer than this is refused (the tokenizer keeps ~128 tokens)
MAX_COLUMNS = 1_000


@dataclass
class Split:
    """Texts and string labels of one split, and each row's group (e.g. in-scope / id-oos / ood-oos)
    when the data has a group column."""

    texts: list[str]
    labels: list[str]
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Dataset:
    """Train/validation/test splits, the label list (ids are positions) and where they came from."""

    name: str
    train: Split
    validation: Split
    test: Split
    labels: list[str]
    source: dict[str, Any] = field(default_factory=dict)
    oos_label: str | None = None  # out-of-scope rows' label (never a class); None: no such rows allowed

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def split(self, name: str) -> Split:
        if name not in ("train", "validation", "test"):
            raise UserError(f"unknown split {name!r}. Use train, validation or test.")
        return getattr(self, name)

    def ids(self, split: Split) -> list[int]:
        """Class ids of a split's rows; -1 for out-of-scope rows."""
        m = self.label2id
        return [-1 if y == self.oos_label else m[y] for y in split.labels]

    def has_oos(self, split: Split) -> bool:
        return self.oos_label is not None and self.oos_label in split.labels


# ----------------------------------------------------------------------------- locating banking77
def cache_dir() -> Path:
    root = os.environ.get("INTENTLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "intentlab"
    )
    return Path(root)


def find_banking77(data_dir: str | None) -> Path:
    """The folder holding banking77's train.csv and test.csv, downloading it if needed and possible."""
    candidates = [("--data-dir", data_dir), ("$INTENTLAB_DATA_DIR", os.environ.get("INTENTLAB_DATA_DIR"))]
    for origin, folder in candidates:
        if folder:
            path = Path(folder).expanduser()
            missing = [f for f in ("train.csv", "test.csv") if not (path / f).is_file()]
            if missing:
                raise UserError(
                    f"{origin} {path} lacks banking77's {' and '.join(missing)}. "
                    "Point it at the folder holding train.csv and test.csv."
                )
            return path
    cached = cache_dir() / "banking77"
    if all((cached / f).is_file() for f in ("train.csv", "test.csv")):
        return cached
    return download_banking77(cached)


def download_banking77(target: Path) -> Path:
    """Download the public Banking77 CSVs (PolyAI, CC BY 4.0) into `target`, atomically per file."""
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        url = BANKING77_URL.format(split=split)
        tmp = target / f".{split}.csv.part"
        try:
            print(f"downloading {url}", file=sys.stderr)
            with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
                f.write(r.read())
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise UserError(
                f"banking77 is not available locally and downloading it failed ({type(e).__name__}). "
                "Pass --data-dir DIR or set INTENTLAB_DATA_DIR to a folder with train.csv and test.csv."
            ) from None
        tmp.replace(target / f"{split}.csv")
    return target


# ----------------------------------------------------------------------------- reading files
def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file's bytes (what runs record of their data files)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV/JSONL/JSON file as dicts; malformed files raise a UserError naming the line."""
    if not path.is_file():
        raise UserError(f"data file {path} not found. Check the path given to --data.")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path} is not UTF-8 (bad byte at offset {e.start}). Re-save it as UTF-8 and retry."
        ) from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json") and raw.lstrip().startswith("["):
        try:
            rows = json.loads(raw)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno} ({e.msg}). Fix the file.") from None
        if not all(isinstance(r, dict) for r in rows):
            raise UserError(f"{path}: a JSON array must hold objects with text and label fields.")
        return rows
    if suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: invalid JSON ({e.msg}). Fix or remove that line.") from None
            except RecursionError:
                raise UserError(
                    f"{path}:{n}: JSON nested too deeply to be a row. Fix or remove that line."
                ) from None
            if not isinstance(row, dict):
                raise UserError(
                    f'{path}:{n}: each JSONL line must be an object, like {{"text": ..., "label": ...}}.'
                )
            if len(row) > MAX_COLUMNS:
                raise UserError(
                    f"{path}:{n}: {len(row):,} fields in one row (at most {MAX_COLUMNS}). Check the file."
                )
            rows.append(row)
        return rows
    if suffix not in (".csv", ".tsv"):
        raise UserError(f"{path}: unsupported file type {suffix!r}. Use .csv, .tsv, .jsonl or .json.")
    # long texts are truncated by the tokenizer, not refused, up to a bound that keeps a stranger's file
    # (one 100 MB field) from exhausting memory
    csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        reader = csv.DictReader(raw.splitlines(), delimiter="\t" if suffix == ".tsv" else ",", strict=True)
        header = reader.fieldnames or []
        if len(header) > MAX_COLUMNS:
            raise UserError(
                f"{path}: the header has {len(header):,} columns; a data file has a text and a label column "
                f"(at most {MAX_COLUMNS} are read). Check the delimiter or the file."
            )
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise UserError(
                f"{path}: the header repeats column(s) {', '.join(map(repr, repeated))}. Give each column its own name."
            )
        rows = []
        for row in reader:
            if None in row:  # more fields than the header
                raise UserError(
                    f"{path}:{reader.line_num}: more fields than the header has. Quote texts that hold commas."
                )
            rows.append(row)
        return rows
    except csv.Error as e:
        if "field larger than field limit" in str(e):
            raise UserError(
                f"{path}:{reader.line_num}: a field of over {MAX_FIELD_CHARS:,} characters. Texts that long are "
                "not queries: shorten or remove that row."
            ) from None
        raise UserError(
            f"{path}:{reader.line_num}: malformed CSV ({e}). Fix the quoting on that line."
        ) from None


def _columns(
    rows: list[dict[str, Any]],
    path: Path,
    text_col: str | None,
    label_col: str | None,
    group_col: str | None = None,
) -> tuple[str, str]:
    if not rows:
        raise UserError(f"{path} holds no rows. Give a file with a header and at least one row.")
    have = list(rows[0].keys())
    text = text_col or "text"
    label = label_col or next((c for c in LABEL_CANDIDATES if c in have), "label")
    wanted = [("text", text, "--text-column"), ("label", label, "--label-column")]
    if group_col:
        wanted.append(("group", group_col, "an existing --group-column"))
    for kind, col, flag in wanted:
        if col not in have:
            raise UserError(
                f"{path} has no {kind} column {col!r} (columns: {', '.join(map(str, have))}). Pass {flag}."
            )
    return text, label


def _label(value: Any) -> str | None:
    """A label as text: strings stripped, integral numbers as integers (1 and 1.0 are one class);
    None for a missing label. Booleans, lists and objects are not labels (ValueError)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(type(value).__name__)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(repr(value))
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip() or None


def valid_unicode(text: str) -> bool:
    """False for text that cannot be encoded as UTF-8 (lone surrogates, e.g. from a JSON \\ud800)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_split(
    path: Path, text_col: str | None, label_col: str | None, group_col: str | None = None
) -> Split:
    """Read and validate one split file: every row needs a non-empty text and a label."""
    rows = read_records(path)
    tc, lc = _columns(rows, path, text_col, label_col, group_col)
    texts, labels, problems = [], [], {}
    for n, row in enumerate(rows, 1):
        text = row.get(tc)
        try:
            label = _label(row.get(lc))
        except ValueError as e:
            problems.setdefault(f"a label that is not text or a number ({e})", n)
            label = ""
        if not isinstance(text, str) or not text.strip():
            problems.setdefault(f"an empty or non-text {tc!r}", n)
        elif len(text) > MAX_FIELD_CHARS:
            problems.setdefault(f"a text of over {MAX_FIELD_CHARS:,} characters", n)
        elif not valid_unicode(text) or not valid_unicode(label or ""):
            problems.setdefault("text that is not valid Unicode (a lone surrogate)", n)
        elif label is None:
            problems.setdefault("no label", n)
        texts.append(text.strip() if isinstance(text, str) else "")
        labels.append(label or "")
    if problems:
        what, first = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} other kind(s) of problem)" if len(problems) > 1 else ""
        raise UserError(f"{path}: row {first} has {what}{more}. Fix or remove such rows.")
    groups = [str(row.get(group_col) or "").strip() or "(none)" for row in rows] if group_col else None
    return Split(texts, labels, groups)


def _find_split_files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, names in SPLIT_ALIASES.items():
        for name in names:
            hits = [folder / f"{name}{ext}" for ext in EXTENSIONS if (folder / f"{name}{ext}").is_file()]
            if hits:
                found[split] = hits[0]
                break
    if "train" not in found:
        raise UserError(
            f"folder {folder} has no train file. Add train.csv or train.jsonl (and optionally validation/test files)."
        )
    return found


# ----------------------------------------------------------------------------- splitting
def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out `fraction` of each class (seeded); classes with a single example stay in the first part."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, y in enumerate(split.labels):
        by_label[y].append(i)
    keep, held = [], []
    for y in sorted(by_label):
        idx = by_label[y]
        order = [idx[j] for j in rng.permutation(len(idx))]
        n_held = min(len(idx) - 1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        held += order[:n_held]
        keep += order[n_held:]
    keep.sort()
    held.sort()

    def take(ix: list[int]) -> Split:
        groups = [split.groups[i] for i in ix] if split.groups is not None else None
        return Split([split.texts[i] for i in ix], [split.labels[i] for i in ix], groups)

    return take(keep), take(held)


def load_dataset(
    data: str = "banking77",
    data_dir: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    oos_label: str = "oos",
    oos_as_class: bool = False,
    group_column: str | None = None,
) -> Dataset:
    """Load, validate and split a dataset. The validation carve-out is seeded so runs can share it.

    Rows labelled `oos_label` are out-of-scope: allowed in validation and test (class id -1), never in
    train, unless `oos_as_class` makes them an ordinary class."""
    if data == "banking77":
        folder = find_banking77(data_dir)
        files = {"train": folder / "train.csv", "test": folder / "test.csv"}
        name = "banking77"
        text_column, label_column = text_column or "text", label_column or "category"
    else:
        path = Path(data).expanduser()
        if path.is_dir():
            files = _find_split_files(path)
        elif path.is_file():
            files = {"train": path}
        else:
            raise UserError(
                f"--data {data!r} is neither banking77 nor an existing file or folder. Check the path."
            )
        name = path.stem if path.is_file() else path.name
    splits = {k: read_split(p, text_column, label_column, group_column) for k, p in files.items()}
    train = splits["train"]
    n_oos = train.labels.count(oos_label)
    if n_oos and not oos_as_class:
        raise UserError(
            f"train has {n_oos} out-of-scope row(s) (label {oos_label!r}); they belong in validation and test. "
            "Remove them, or pass --oos-as-class to train them as a class."
        )
    if "test" not in splits:
        train, splits["test"] = stratified_split(train, test_fraction, seed + 1)
    if "validation" not in splits:
        train, splits["validation"] = stratified_split(train, val_fraction, seed)
    labels = sorted(set(train.labels))
    if len(labels) < 2:
        raise UserError(
            f"training data has a single label ({labels[0]!r}). A classifier needs at least two classes."
        )
    known = set(labels) | ({oos_label} if not oos_as_class else set())
    for split_name in ("validation", "test"):
        unseen = sorted(set(splits[split_name].labels) - known)
        if unseen:
            shown = ", ".join(repr(u) for u in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
            raise UserError(
                f"{split_name} has {len(unseen)} label(s) never seen in train: {shown}. "
                "Add training examples for them or drop those rows."
            )
    for split_name in ("validation", "test"):
        if len(splits[split_name]) == 0:
            raise UserError(f"the {split_name} split is empty. Give more data or a {split_name} file.")
        if all(y == oos_label for y in splits[split_name].labels) and not oos_as_class:
            raise UserError(
                f"the {split_name} split has no in-scope rows (only {oos_label!r}), so nothing can be scored "
                "or thresholded on it. Add in-scope texts to it."
            )
    source = {
        "name": name,
        "files": {k: {"path": str(p.resolve()), "sha256": sha256_of(p)} for k, p in files.items()},
        "text_column": text_column or "text",
        "label_column": label_column,
        "carved": sorted({"validation", "test"} - set(files)),
        "split_seed": seed,
        "warnings": data_warnings(train, splits["validation"], splits["test"], data),
    }
    source["oos_label"] = None if oos_as_class else oos_label
    source["group_column"] = group_column
    return Dataset(
        name, train, splits["validation"], splits["test"], labels, source, None if oos_as_class else oos_label
    )


def sample_train(ds: Dataset, size: int | float, seed: int) -> Dataset:
    """A learning-curve cell's data: `size` training rows per intent (or that fraction of each),
    sampled with `seed`, and a validation split of as many rows per intent taken from the unused
    training rows (what a user with that little labelled data could hold out). Test stays whole.

    The pool is the original training data (with a carved validation split put back)."""
    pool = (
        ds.train
        if "validation" not in ds.source.get("carved", [])
        else Split(ds.train.texts + ds.validation.texts, ds.train.labels + ds.validation.labels)
    )
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, y in enumerate(pool.labels):
        by_label[y].append(i)
    smallest = min(by_label, key=lambda y: len(by_label[y]))
    rng = np.random.default_rng([seed, 7919])
    train_ix, val_ix = [], []
    for y in sorted(by_label):
        idx = [by_label[y][j] for j in rng.permutation(len(by_label[y]))]
        k = size if isinstance(size, int) else max(1, round(size * len(idx)))
        if k >= len(idx):
            raise UserError(
                f"train size {size} per intent leaves no validation rows for intent {y!r}, which has "
                f"{len(idx)} training rows (the smallest intent, {smallest!r}, has {len(by_label[smallest])}). "
                "Pick a smaller train size."
            )
        train_ix += idx[:k]
        val_ix += idx[k : 2 * k]

    def take(ix: list[int]) -> Split:
        ix = sorted(ix)
        return Split([pool.texts[i] for i in ix], [pool.labels[i] for i in ix])

    source = {
        **ds.source,
        "train_size": size,
        "sample_seed": seed,
        "validation_rule": "as many unused training rows per intent as train has",
    }
    return Dataset(ds.name, take(train_ix), take(val_ix), ds.test, ds.labels, source, ds.oos_label)


def dataset_for(cfg: Any, data_dir: str | None = None) -> Dataset:
    """The dataset and split a run config names (`data_dir` overrides the recorded folder); with a
    `train_size`, the cell's sample of it (seeded by the run's seed)."""
    from intentlab.config import parse_train_size

    ds = load_dataset(
        cfg.data,
        data_dir or cfg.data_dir,
        cfg.text_column,
        cfg.label_column,
        cfg.val_fraction,
        cfg.test_fraction,
        cfg.split_seed,
        cfg.oos_label,
        cfg.oos_as_class,
        cfg.group_column,
    )
    if getattr(cfg, "extra_data", None):
        ds = with_extra(ds, Path(cfg.extra_data), cfg.text_column, cfg.label_column)
    size = parse_train_size(cfg.train_size)
    return ds if size is None else sample_train(ds, size, cfg.seed)


def extra_files(path: Path) -> list[Path]:
    """The files of `--extra-data`: the file, or a folder's extra*.csv/tsv/jsonl/json files."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(
            p for p in path.iterdir() if p.name.startswith("extra") and p.suffix.lower() in EXTENSIONS
        )
        if found:
            return found
        raise UserError(
            f"--extra-data {path} holds no extra*.csv or extra*.jsonl file. Pass the labelled file itself."
        )
    raise UserError(
        f"--extra-data {path} not found. Pass a labelled CSV/JSONL file (e.g. from intentlab review --import)."
    )


def with_extra(ds: Dataset, path: Path, text_column: str | None, label_column: str | None) -> Dataset:
    """`ds` with the labelled rows of `--extra-data` added to train (new intents included), their files'
    checksums recorded; rows labelled out of scope are left out of training and counted."""
    texts, labels, oos = list(ds.train.texts), list(ds.train.labels), 0
    files = dict(ds.source.get("files", {}))
    for n, f in enumerate(extra_files(path)):
        part = read_split(f, text_column, label_column)
        for t, y in zip(part.texts, part.labels, strict=True):
            if y == ds.oos_label:
                oos += 1
            else:
                texts.append(t)
                labels.append(y)
        files[f"extra{n or ''}"] = {"path": str(f.resolve()), "sha256": sha256_of(f)}
    added = len(texts) - len(ds.train)
    warnings = list(ds.source.get("warnings", []))
    if oos:
        warnings.append(f"{oos} --extra-data row(s) labelled {ds.oos_label!r} left out of training")
    source = {**ds.source, "files": files, "extra_rows": added, "warnings": warnings}
    train = Split(texts, labels)
    return Dataset(ds.name, train, ds.validation, ds.test, sorted(set(labels)), source, ds.oos_label)


def print_warnings(ds: Dataset) -> None:
    for w in ds.source.get("warnings", []):
        print(f"intentlab: warning: {w}", file=sys.stderr)


def data_warnings(train: Split, validation: Split, test: Split, data: str = "DATA") -> list[str]:
    """Problems worth knowing that do not stop a run: duplicates, and test texts seen in training (with
    the audit command that lists them, `data` being what --data was given)."""
    out = []
    seen = set(train.texts)
    dup = len(train.texts) - len(seen)
    if dup:
        out.append(f"train has {dup} duplicate text(s); kept (they weigh more in training)")
    conflicting = {}
    for t, y in zip(train.texts, train.labels, strict=True):
        conflicting.setdefault(t, set()).add(y)
    clash = sum(len(v) > 1 for v in conflicting.values())
    if clash:
        out.append(
            f"train has {clash} text(s) with more than one label; kept, but no model can get them all right"
        )
    for name, split in (("validation", validation), ("test", test)):
        leak = sum(t in seen for t in split.texts)
        if leak:
            out.append(
                f"{leak} {name} text(s) also appear in train: {name} scores are optimistic; "
                f"list them with: intentlab audit --data {data} --out AUDIT"
            )
    return out


def describe(ds: Dataset) -> dict[str, Any]:
    """Split sizes and per-label counts, recorded with each run for reports."""
    oos = {s: ds.split(s).labels.count(ds.oos_label) for s in ("validation", "test") if ds.oos_label}
    groups = {
        s: dict(sorted(Counter(ds.split(s).groups or []).items()))
        for s in ("validation", "test")
        if ds.split(s).groups is not None
    }
    return {
        "name": ds.name,
        "num_labels": len(ds.labels),
        "sizes": {s: len(ds.split(s)) for s in ("train", "validation", "test")},
        "out_of_scope_rows": oos,
        "groups": groups,
        "train_label_counts": dict(sorted(Counter(ds.train.labels).items())),
        "duplicates_in_train": len(ds.train.texts) - len(set(ds.train.texts)),
    }
