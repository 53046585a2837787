"""A run's data: the fingerprints of a data split (what makes two runs comparable), and the dataset a
trained run was trained and tested on, rebuilt from its record with its checksums checked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from intentlab.data.loading import dataset_for, sha256_of
from intentlab.errors import UserError
from intentlab.runs.record import load_result, read_config


def test_fingerprint(ds: Any) -> str:
    """Hash of labels + test: runs scored on the same test set (e.g. a learning curve's cells) share it."""
    h = hashlib.sha256()
    for part in (ds.labels, ds.test.texts, ds.test.labels):
        h.update("\x1f".join(part).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def split_fingerprint(ds: Any) -> str:
    """Hash of labels + validation + test: runs that may be compared share it."""
    h = hashlib.sha256()
    for part in (ds.labels, ds.validation.texts, ds.validation.labels, ds.test.texts, ds.test.labels):
        h.update("\x1f".join(part).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def run_dataset(run: Path, data_dir: str | None = None, other_data: bool = False) -> tuple[Any, Any]:
    """The dataset (same split) and config a run was trained with.

    The data files' checksums and the split's fingerprint must match what the run recorded; data
    that changed since is refused (a UserError) unless `other_data` says to score it anyway."""

    result = load_result(run)  # refuses incomplete or foreign runs with a clear message
    cfg = read_config(run)
    recorded = result.run.dataset.get("source", {}).get("files", {})
    ds = dataset_for(cfg, data_dir or _recorded_banking77(cfg, recorded))
    if not other_data:
        changed = [
            split
            for split, f in ds.source["files"].items()
            if split in recorded and recorded[split].get("sha256") != f["sha256"]
        ]
        if changed or split_fingerprint(ds) != result.run.split_fingerprint:
            what = f"the {' and '.join(changed)} file(s) changed" if changed else "the split differs"
            raise UserError(
                f"the data is not what {run} was trained and tested on ({what} since). Point --data-dir at "
                "the original data, or pass --other-data to score this data anyway."
            )
    return ds, cfg


def _recorded_banking77(cfg: Any, recorded: dict[str, Any]) -> str | None:
    """The folder a Banking77 run read its train.csv and test.csv from, when nothing else says where to
    look now and both files are still there with the checksums the run recorded: a run scored in a new
    shell does not go looking for a download. (A stranger's run can name any path; only files whose
    contents match its checksums are ever read through it.)"""
    if cfg.data != "banking77" or cfg.data_dir or os.environ.get("INTENTLAB_DATA_DIR"):
        return None
    try:
        files = {
            split: (Path(recorded[split]["path"]), str(recorded[split]["sha256"]))
            for split in ("train", "test")
        }
    except (KeyError, TypeError):
        return None
    folders = {path.parent for path, _ in files.values()}
    if len(folders) != 1 or any(path.name != f"{split}.csv" for split, (path, _) in files.items()):
        return None
    if not all(path.is_file() and sha256_of(path) == sha for path, sha in files.values()):
        return None
    return str(folders.pop())
