"""`intentlab review LOG --run RUN --out DIR`: the logged queries most worth labelling (small-text's query
strategies), as a CSV and a Label Studio task file; `intentlab review --import EXPORT --out FILE` reads
the labels back. Its parser and its handler."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from intentlab.errors import UserError


def add(sub: Any) -> None:
    p = sub.add_parser("review", help="pick logged queries to label (Label Studio), or import their labels")
    p.add_argument("log", nargs="?", help="the --log folder of intentlab serve (or one traffic-*.jsonl file)")
    p.add_argument("--run", help="the run that served the traffic")
    p.add_argument(
        "--out",
        required=True,
        help="folder for review.csv and labelstudio_tasks.json; with --import: the CSV to write",
    )
    p.add_argument("--budget", type=int, default=200, help="queries to pick [default: 200]")
    p.add_argument(
        "--strategy", default="hybrid", help="hybrid, margin, entropy, coreset or random [default: hybrid]"
    )
    p.add_argument("--adapter", help="only the traffic of this adapter name [default: all]")
    p.add_argument("--seed", type=int, default=42, help="seed of the random strategy [default: 42]")
    p.add_argument(
        "--import",
        dest="import_file",
        metavar="EXPORT",
        help="a Label Studio JSON export or the filled review.csv: write its labels to --out as text,label",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.import_file:
        return _import(args)
    if not args.log or not args.run:
        raise UserError("review needs the log and --run RUN (or --import EXPORT to read labels back).")
    from intentlab.traffic.review import review

    r = review(
        args.log, args.run, args.out, args.budget, args.strategy, args.adapter, args.seed, args.overwrite
    )
    s = r.summary
    print(
        f"{s['picked']} of {s['queries']:,} queries ({s['logged']:,} logged, {s['already_trained_on']} already trained on) "
        f"picked by {s['strategy']} in {s['seconds']:.0f} s -> {Path(args.out) / 'review.csv'} and "
        f"{Path(args.out) / 'labelstudio_tasks.json'}"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    import csv
    import io

    from intentlab.folders import write_text_atomic
    from intentlab.traffic.labelstudio import read_labelled

    if args.log or args.run:
        raise UserError("--import reads labels back; drop the log and --run.")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} exists. Choose another --out or pass --overwrite.")
    if out.suffix.lower() != ".csv":
        raise UserError(f"--out {out}: --import writes a .csv file (text,label), for train --extra-data.")
    rows, skipped = read_labelled(Path(args.import_file))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["text", "label"])
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out, buffer.getvalue())
    print(
        f"{len(rows)} labelled texts ({skipped} without a label skipped) -> {out} (train with --extra-data {out})"
    )
    return 0
