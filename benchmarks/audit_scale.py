"""How an audit scales: wall time per step and peak memory of `intentlab audit` on N texts.

    python benchmarks/audit_scale.py --texts 100000      # Banking77's texts, varied, to N rows

The rows are Banking77's training texts with their labels, each repeated with a different prefix and
suffix until there are N ("hi, ...", "... thanks"), so the features and the classes are realistic. The
audit runs in this process with its defaults (the frozen MiniLM, a linear head, 5 folds); peak memory is
the process's high-water mark (VmHWM), measured against a baseline taken after the model loads.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

from common import banking77_dir, machine, table

PREFIXES = ["", "hi, ", "hello ", "please help: ", "quick question, ", "urgent: ", "hey ", "excuse me, "]
SUFFIXES = ["", "?", " thanks", " please", " asap", "!!", " thank you", " now"]


def rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    with open(banking77_dir() / "train.csv", encoding="utf-8") as f:
        base = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    rng = random.Random(seed)
    out = list(base)
    while len(out) < n:
        text, label = rng.choice(base)
        out.append((rng.choice(PREFIXES) + text + rng.choice(SUFFIXES), label))
    return out[:n]


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=100_000)
    args = ap.parse_args()
    from intentlab.audit.run import AuditOptions, run_audit
    from intentlab.models.loading import load_encoder

    print(machine())
    load_encoder("sentence-transformers/all-MiniLM-L6-v2", "mean")  # the model's own memory, before the audit
    before = vm_hwm_mb()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.csv"
        with open(data, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows(args.texts))
        t0 = time.perf_counter()
        r = run_audit(AuditOptions(data=str(data)), Path(tmp) / "audit")
        wall = time.perf_counter() - t0
    peak = vm_hwm_mb()
    print(
        table(
            [
                "texts",
                "features (s)",
                "cross-validation (s)",
                "issues (s)",
                "whole audit (s)",
                "peak RSS (MB)",
                "peak above model (MB)",
            ],
            [
                [
                    f"{args.texts:,}",
                    f"{r.seconds['features']:.0f}",
                    f"{r.seconds['cross_validation']:.0f}",
                    f"{r.seconds['issues']:.0f}",
                    f"{wall:.0f}",
                    f"{peak:.0f}",
                    f"{peak - before:.0f}",
                ]
            ],
        )
    )
    print(f"flagged: {r.findings.counts}")


if __name__ == "__main__":
    main()
