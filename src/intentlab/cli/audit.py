"""`intentlab audit --data ... --out DIR`: find the training data's label errors, duplicates, leaks and
confusable intents (cleanlab on out-of-fold probabilities). Its parser and its handler."""

from __future__ import annotations

import argparse
from typing import Any


def add(sub: Any) -> None:
    p = sub.add_parser("audit", help="find label errors, duplicates, leaks and confusable intents in data")
    p.add_argument(
        "--data", default="banking77", help="banking77, a CSV/JSONL file or a folder of split files"
    )
    p.add_argument("--data-dir", help="folder with banking77's CSVs")
    p.add_argument("--text-column", help="text column of your data [default: text]")
    p.add_argument("--label-column", help="label column of your data [default: label, intent or category]")
    p.add_argument("--out", required=True, help="folder for issues.csv, report.md, report.html, summary.json")
    p.add_argument(
        "--method",
        default="head",
        help="the model cross-validated: head (a linear head on features computed once; seconds) or any "
        "method (one training per fold) [default: head]",
    )
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds [default: 5]")
    p.add_argument(
        "--run", help="a trained run whose encoder gives the features [default: the frozen encoder]"
    )
    p.add_argument("--model", help="encoder for the features [default: the head method's, all-MiniLM-L6-v2]")
    p.add_argument("--seed", type=int, default=42, help="seed of the folds [default: 42]")
    p.add_argument("--write-clean", metavar="DIR", help="write a copy of the data without the flagged rows")
    p.add_argument("--relabel", action="store_true", help="with --write-clean: relabel label issues instead")
    p.add_argument("--overwrite", action="store_true", help="replace an existing audit folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.audit.run import AuditOptions, run_audit

    opts = AuditOptions(
        **{k: getattr(args, k) for k in AuditOptions.__dataclass_fields__ if k != "write_clean"},
        write_clean=args.write_clean,
    )
    r = run_audit(opts, args.out)
    c = r.findings.counts
    print(
        f"audit of {len(r.data.texts):,} rows ({sum(r.seconds.values()):.0f} s): {c['label']:,} label issues, "
        f"{c['conflicting_duplicate']:,} duplicates with another label, {c['test_leak']:,} rows also in test, "
        f"{c['near_duplicate']:,} near-duplicates, {c['outlier']:,} outliers -> {r.out / 'report.md'}, "
        f"{r.out / 'report.html'} and {r.out / 'issues.csv'}"
    )
    if args.write_clean:
        print(f"cleaned copy -> {args.write_clean}")
    return 0
