"""`intentlab drift LOG --run RUN --out DIR`: how served traffic moves away from the training data. Its
parser and its handler."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add(sub: Any) -> None:
    p = sub.add_parser(
        "drift", help="compare logged traffic with the training data: intents, out of scope, words"
    )
    p.add_argument("log", help="the --log folder of intentlab serve (or one traffic-*.jsonl file)")
    p.add_argument("--run", required=True, help="the run that served the traffic")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and summary.json")
    p.add_argument("--adapter", help="only the traffic of this adapter name [default: all]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.traffic.drift import drift

    s = drift(args.log, args.run, args.out, args.adapter, args.overwrite)
    print(s["findings"])
    print(f"-> {Path(args.out) / 'report.md'} and {Path(args.out) / 'report.html'}")
    return 0
