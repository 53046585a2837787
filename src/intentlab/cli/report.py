"""`intentlab report RUN_OR_DIR... --out DIR`: report.md and report.html from run folders. Its parser and its handler."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add(sub: Any) -> None:
    p = sub.add_parser("report", help="build report.md + report.html from run folders")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding runs (searched recursively)")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and charts/")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.reporting.report import build_report

    rep = build_report(args.runs, args.out)
    n = sum(r["n"] for r in rep["summary"])
    out = Path(args.out)
    print(f"report of {n} run{'s' if n != 1 else ''} -> {out / 'report.md'} and {out / 'report.html'}")
    return 0
