"""`intentlab ood RUN`: fit (or refit) a run's out-of-scope scorers, thresholds and calibration. Its parser and its handler."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add(sub: Any) -> None:
    p = sub.add_parser("ood", help="fit (or refit) a run's out-of-scope scorers, thresholds and calibration")
    p.add_argument("run", help="run folder")
    p.add_argument("--data-dir", help="folder with banking77's CSVs (if it moved since training)")
    p.add_argument("--k", type=int, help="neighbours of the k-NN scorer [default: the run's ood_k, 10]")
    p.add_argument(
        "--target-recall",
        type=float,
        help="without OOS rows in validation: in-scope share to keep [default: 0.95]",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.training.writer import RunWriter

    s = RunWriter.refit_ood(args.run, data_dir=args.data_dir, k=args.k, target_recall=args.target_recall).ood
    assert s is not None
    print(
        f"temperature {s.temperature:.3f}: test ECE {s.calibration['before']['ece']:.4f} -> "
        f"{s.calibration['after']['ece']:.4f}"
    )
    for name, m in s.scorers.items():
        mark = "*" if name == s.chosen else " "
        extra = (
            f", OOS recall {m['oos_recall']:.3f}, AUROC {m['auroc']:.3f}, FPR@95 {m['fpr_at_95_recall']:.3f}"
            if "auroc" in m
            else ""
        )
        print(
            f"{mark} {name:<12} threshold {m['threshold']:.4g}: in-scope accuracy with rejection "
            f"{m['inscope_accuracy_with_rejection']:.4f}{extra}"
        )
    print(f"{s.rule} -> {Path(args.run) / 'ood'}")
    return 0
