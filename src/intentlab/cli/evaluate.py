"""`intentlab evaluate RUN`: reload a run and score it on a split of the data it was trained on. Its parser and its handler."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="reload a run and evaluate it on a split")
    p.add_argument("run", help="run folder")
    p.add_argument("--split", default="test", choices=("test", "validation"))
    p.add_argument("--data-dir", help="folder with banking77's CSVs (if it moved since training)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument(
        "--other-data",
        action="store_true",
        help="score the data even if its files changed since the run was trained (checksums differ)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.inference.evaluate import evaluate_run

    m = evaluate_run(args.run, split=args.split, data_dir=args.data_dir, other_data=args.other_data)
    ood = m.get("ood")
    if args.json:
        keys = ("accuracy", "f1_macro", "f1_weighted", "loss", "n")
        print(json.dumps({**{k: m[k] for k in keys}, **({"ood": ood} if ood else {})}))
        return 0
    print(
        f"{args.split}: accuracy {m['accuracy']:.4f}, macro-F1 {m['f1_macro']:.4f}, "
        f"weighted F1 {m['f1_weighted']:.4f}"
        + ("" if m["loss"] is None else f", loss {m['loss']:.4f}")
        + f" (n={m['n']} in scope)"
    )
    if ood:
        line = (
            f"out of scope ({ood['scorer']} < {ood['threshold']:.4g}): in-scope accuracy with rejection "
            f"{ood['inscope_accuracy_with_rejection']:.4f}"
        )
        if "oos_recall" in ood:
            line += f", OOS recall {ood['oos_recall']:.4f}, precision {ood['oos_precision']:.4f}, AUROC {ood['auroc']:.4f}"
        print(line)
    return 0
