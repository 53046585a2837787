"""`intentlab compare`: a methods x seeds matrix on one data split (local processes or Ray), then its report. Its parser and its handler."""

from __future__ import annotations

import argparse
from typing import Any

from intentlab.cli.parsing import add_config_flags, config_flags
from intentlab.errors import UserError
from intentlab.methods import COMPARE_DEFAULTS


def add(sub: Any) -> None:
    p = sub.add_parser("compare", help="train a methods x seeds matrix on one data split, then report")
    p.add_argument(
        "--out", required=True, help="folder for the matrix (OUT/<method>/seed-<n>) and its report"
    )
    p.add_argument(
        "--methods",
        help=f"comma-separated methods or plan variants [default: {','.join(COMPARE_DEFAULTS)}]",
    )
    p.add_argument("--seeds", type=int, help="seeds per method (overrides the plan) [default: 1]")
    p.add_argument("--plan", help="YAML plan: methods, seeds, common settings and per-method overrides")
    p.add_argument("--no-report", action="store_true", help="skip writing OUT/report at the end")
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: cells one after another in local processes; ray: one Ray task per cell [default: local]",
    )
    p.add_argument(
        "--address", help="with --executor ray: the cluster to join [default: a local Ray instance]"
    )
    p.add_argument(
        "--cell-cpus", type=int, default=1, help="CPUs (and torch threads) per Ray task [default: 1]"
    )
    p.add_argument("--cell-gpus", type=float, default=0, help="GPUs per Ray task [default: 0]")
    p.add_argument(
        "--train-sizes",
        help="learning curve: train sizes per intent (5,10,30,all) or fractions (0.1,0.5,1.0); each seed samples anew",
    )
    add_config_flags(p, skip=("method", "name"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.training.compare import plan_cells, run_compare

    flags = config_flags(args, skip=("method", "name"))
    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if methods is not None and not methods:
        raise UserError(
            "--methods names no method. Name one or more (lora,full), or leave it out for the defaults."
        )
    cells = plan_cells(methods, args.seeds, flags, args.plan, args.train_sizes)
    run_compare(
        args.out,
        cells,
        report=not args.no_report,
        executor=args.executor,
        address=args.address,
        cell_cpus=args.cell_cpus,
        cell_gpus=args.cell_gpus,
    )
    return 0
