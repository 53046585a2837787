"""What a committed study keeps of its runs: each run's record (config.yaml, metrics.jsonl, result.json,
test_predictions.json without the test texts), never its weights. `intentlab report` reads these."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def keep_records(runs: Path, dest: Path) -> int:
    """Copy the record of every finished run under `runs` to the same place under `dest`."""
    kept = 0
    for result in runs.glob("**/result.json"):
        run = result.parent
        target = dest / run.relative_to(runs)
        target.mkdir(parents=True, exist_ok=True)
        for f in ("config.yaml", "metrics.jsonl", "result.json"):
            shutil.copyfile(run / f, target / f)
        predictions = json.loads((run / "test_predictions.json").read_text())
        predictions.pop("texts", None)
        (target / "test_predictions.json").write_text(json.dumps(predictions) + "\n")
        kept += 1
    return kept
