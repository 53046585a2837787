"""The rows an audit looks at: every labelled row of the training data (train, and validation when the
user gives a validation file), each with its file and row number, and the test texts, which are only
checked for leaks: the test set is never cleaned."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from intentlab.data.loading import find_banking77, read_split
from intentlab.errors import UserError

MAX_ROWS = 1_000_000  # beyond this, features alone (1 M x 768 floats) outgrow a laptop's memory


@dataclass
class AuditData:
    """Texts and labels in file order, where each came from, and the test texts."""

    name: str
    texts: list[str]
    labels: list[str]
    files: list[str]  # per row: the file's name
    rows: list[int]  # per row: its data row in that file (1 = the first row after any header)
    test_texts: list[str]
    sources: dict[str, Path]  # split -> file
    text_column: str
    label_column: str

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def ids(self) -> list[int]:
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[y] for y in self.labels]


def _files(data: str, data_dir: str | None) -> tuple[str, dict[str, Path]]:
    from intentlab.data.loading import _find_split_files

    if data == "banking77":
        folder = find_banking77(data_dir)
        return "banking77", {"train": folder / "train.csv", "test": folder / "test.csv"}
    path = Path(data).expanduser()
    if path.is_dir():
        return path.name, _find_split_files(path)
    if path.is_file():
        return path.stem, {"train": path}
    raise UserError(f"--data {data!r} is neither banking77 nor an existing file or folder. Check the path.")


def load_audit_data(
    data: str,
    data_dir: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    oos_label: str = "oos",
) -> AuditData:
    """The training rows of `data` (Banking77, a file, or a folder of split files) with their origins.
    Out-of-scope rows (`oos_label`) have no intent to check and are left out."""
    from intentlab.data.loading import _columns, read_records

    name, sources = _files(data, data_dir)
    if data == "banking77":
        text_column, label_column = text_column or "text", label_column or "category"
    text_column, label_column = _columns(
        read_records(sources["train"]), sources["train"], text_column, label_column, None
    )
    texts: list[str] = []
    labels: list[str] = []
    files: list[str] = []
    rows: list[int] = []
    for split in ("train", "validation"):
        if split not in sources:
            continue
        part = read_split(sources[split], text_column, label_column)
        for n, (text, label) in enumerate(zip(part.texts, part.labels, strict=True), 1):
            if label != oos_label:
                texts.append(text)
                labels.append(label)
                files.append(sources[split].name)
                rows.append(n)
    test = read_split(sources["test"], text_column, label_column).texts if "test" in sources else []
    if len(texts) > MAX_ROWS:
        raise UserError(
            f"{data} has {len(texts):,} rows; an audit takes at most {MAX_ROWS:,}. Audit a sample."
        )
    counts: dict[str, int] = {}
    for y in labels:
        counts[y] = counts.get(y, 0) + 1
    if len(counts) < 2:
        raise UserError(f"{data} has {len(counts)} label(s); an audit needs at least two classes.")
    return AuditData(name, texts, labels, files, rows, test, sources, text_column, label_column)


def write_clean(data: AuditData, changes: dict[tuple[str, int], str | None], out: Path) -> list[Path]:
    """A copy of every data file into `out` with `changes` applied: (file, row) -> a new label, or None
    to drop the row. Other columns and rows are copied as they are; the inputs are never touched."""
    from intentlab.data.loading import read_records
    from intentlab.folders import write_text_atomic

    written = []
    out.mkdir(parents=True, exist_ok=True)
    for path in data.sources.values():
        target = out / path.name
        if not any(file == path.name for file, _ in changes):  # untouched: copied byte for byte
            shutil.copyfile(path, target)
            written.append(target)
            continue
        records = read_records(path)
        kept = []
        for n, record in enumerate(records, 1):
            key = (path.name, n)
            if key in changes and changes[key] is None:
                continue
            if key in changes:
                record = {**record, data.label_column: changes[key]}
            kept.append(record)
        if path.suffix.lower() in (".csv", ".tsv"):
            buffer = io.StringIO()
            columns = list(records[0]) if records else [data.label_column]
            writer = csv.DictWriter(buffer, columns, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(kept)
            write_text_atomic(target, buffer.getvalue())
        else:
            write_text_atomic(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        written.append(target)
    return written
