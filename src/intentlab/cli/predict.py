"""`intentlab predict RUN`: top-k intents (and the out-of-scope decision) for texts, or for a CSV/JSONL file. Its parser and its handler."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from intentlab.errors import UserError


def add(sub: Any) -> None:
    p = sub.add_parser("predict", help="top-k intents for texts, or for a CSV/JSONL file")
    p.add_argument("run", help="run folder")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--top-k", type=int, default=3, help="intents to show per text [default: 3]")
    p.add_argument("--input", help="CSV/TSV/JSONL file to classify (streamed)")
    p.add_argument("--output", help="CSV or JSONL file to write")
    p.add_argument("--text-column", default="text", help="text column of --input [default: text]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument(
        "--threshold",
        type=float,
        help="out-of-scope threshold for the run's scorer [default: the fitted one]",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.inference.opener import open_run
    from intentlab.inference.predictor import check_files, predict_file

    if bool(args.input) != bool(args.output):
        raise UserError("--input and --output go together. Give both, or give texts instead.")
    if args.input and args.texts:
        raise UserError("give texts or --input FILE, not both.")
    if not args.input and not args.texts:
        raise UserError("nothing to predict. Give one or more texts, or --input FILE --output FILE.")
    if args.top_k < 1:
        raise UserError(f"--top-k must be at least 1, got {args.top_k}.")
    from intentlab.data.loading import valid_unicode

    bad = next((i for i, t in enumerate(args.texts, 1) if not valid_unicode(t) or not t.strip()), None)
    if bad is not None:
        raise UserError(f"text {bad} is empty or not valid Unicode (undecodable bytes). Pass UTF-8 text.")
    if args.input:
        check_files(Path(args.input), Path(args.output), args.overwrite)  # before the model loads
    predictor = open_run(args.run)
    threshold = predictor.decider.check_threshold(args.threshold)
    if args.input:
        n = predict_file(
            predictor,
            args.input,
            args.output,
            args.text_column,
            args.top_k,
            overwrite=args.overwrite,
            threshold=threshold,
        )
        print(f"{n} predictions -> {args.output}")
        return 0
    for text, pred in zip(args.texts, predictor.classify(args.texts, args.top_k, threshold), strict=True):
        print(text)
        if pred.out_of_scope:
            print(
                f"  none of the {len(predictor.labels)} intents ({pred.scorer} score {pred.score:.4g} < "
                f"threshold {pred.threshold:.4g}); closest:"
            )
        for label, p in pred.intents:
            print(f"  {p:7.2%}  {label}")
    return 0
