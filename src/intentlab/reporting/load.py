"""Finding and reading run folders for reports: typed run records (`runs.load_result`), their test
predictions, and the grouping of seeds into methods. Never imports training code or torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from intentlab import methods as M
from intentlab.errors import UserError
from intentlab.runs import CONFIG, PREDICTIONS, RESULT, RunResult, load_result


@dataclass
class RunRecord:
    path: Path
    result: RunResult
    preds: dict[str, Any] | None  # test_predictions.json: labels, y_true, y_pred

    @property
    def name(self) -> str:
        return self.result.run.name

    @property
    def method(self) -> str:
        return self.result.run.method

    @property
    def seed(self) -> int:
        return self.result.run.seed

    @property
    def size(self) -> str | None:
        """The run's train size (per intent or a fraction), None for all the data."""
        size = self.result.run.config.get("train_size")
        return None if size in (None, "all") else str(size)

    @property
    def base_name(self) -> str:
        return self.result.run.config.get("name") or self.method

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Per-epoch rows as plain dicts (what the charts take)."""
        return [asdict(r) for r in self.result.train.epochs]


def _candidates(path: Path) -> list[Path]:
    if (path / RESULT).is_file() or (path / CONFIG).is_file():
        return [path]
    found = {p.parent for pattern in (RESULT, CONFIG) for p in path.rglob(pattern)}
    return sorted(
        p
        for p in found
        if not any(part.startswith(".") or part == "model" for part in p.relative_to(path).parts)
    )


def _predictions(path: Path, result: RunResult) -> dict[str, Any] | None:
    """test_predictions.json, checked against the record (a stranger's file may be anything)."""
    file = path / PREDICTIONS
    if not file.is_file():
        return None
    try:
        preds = json.loads(file.read_text(encoding="utf-8"))
        labels, y_true, y_pred = preds["labels"], preds["y_true"], preds["y_pred"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise UserError(f"{file} is corrupt. Train the run again.") from None
    ok = (
        isinstance(labels, list)
        and all(isinstance(x, str) for x in labels)
        and isinstance(y_true, list)
        and isinstance(y_pred, list)
        and len(y_true) == len(y_pred) == result.test.n
        and all(type(v) is int and 0 <= v < len(labels) for v in y_true + y_pred)
        and all(len(preds.get(k, y_true)) == len(y_true) for k in ("confidence", "texts"))
    )
    if not ok:
        raise UserError(f"{file} does not match its run's record. Train the run again.")
    return preds


def discover(paths: list[str | Path]) -> tuple[list[RunRecord], list[str]]:
    """Complete runs under `paths`, and one line per run that was left out (and why)."""
    runs, problems = [], []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(f"{path}: not found")
            continue
        for cand in _candidates(path):
            try:
                result = load_result(cand)
                runs.append(RunRecord(cand, result, _predictions(cand, result)))
            except UserError as e:
                problems.append(str(e))
    return runs, problems


def size_key(size: str | None) -> float:
    """Sort key of a train size: counts and fractions by value, all the data last."""
    return float("inf") if size is None else float(size)


def _test_key(r: RunRecord) -> str:
    """What runs that may be compared share: the test set (labels and gold ids of the test rows)."""
    if r.preds:
        import hashlib

        h = hashlib.sha256(json.dumps([r.preds["labels"], r.preds["y_true"]]).encode()).hexdigest()[:16]
        return f"test:{h}"
    return f"split:{r.result.run.split_fingerprint}"


def _file_key(r: RunRecord, split: str) -> str | None:
    """The checksum of the file a split was read from, when the record has it and the split was not
    carved from another file: runs that read the same file share that split, whatever their data set's
    name (a cleaned copy, or training data with extra rows, keeps the original's test file)."""
    source = r.result.run.dataset.get("source", {})
    entry = source.get("files", {}).get(split) if isinstance(source, dict) else None
    carved = source.get("carved", []) if isinstance(source, dict) else []
    if isinstance(entry, dict) and entry.get("sha256") and split not in carved:
        return f"{split}-file:{entry['sha256']}"
    return None


def check_same_split(runs: list[RunRecord]) -> None:
    """Refuse to mix datasets or data splits in one comparison. Every run must be scored on the same
    test set (the same test file, or the same data set's split); runs on the whole training data must
    also share the validation split (a learning curve's sampled cells have their own, by design)."""
    for runs_, key, what in (
        (runs, lambda r: _file_key(r, "test") or f"{r.result.run.data}:{_test_key(r)}", "test sets"),
        (
            [r for r in runs if r.size is None],
            lambda r: _file_key(r, "validation") or f"{r.result.run.data}:{r.result.run.split_fingerprint}",
            "data splits",
        ),
    ):
        by_split: dict[str, list[str]] = {}
        for r in runs_:
            by_split.setdefault(key(r), []).append(str(r.path))
        if len(by_split) > 1:
            parts = "; ".join(f"{k} ({len(v)} runs, e.g. {v[0]})" for k, v in by_split.items())
            raise UserError(
                f"these runs use different datasets or data splits ({what} differ), so their scores are not "
                f"comparable: {parts}. Report each group separately."
            )


def group(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs grouped by name (seeds of one method or variant), in the method table's order."""
    groups: dict[str, list[RunRecord]] = {}
    for r in sorted(runs, key=lambda r: (r.seed, str(r.path))):
        groups.setdefault(r.name, []).append(r)

    def order(name: str) -> tuple[int, str, float]:
        first = groups[name][0]
        return (M.order(first.method), first.base_name, size_key(first.size))

    return {k: groups[k] for k in sorted(groups, key=order)}
