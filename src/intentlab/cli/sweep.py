"""`intentlab sweep`: an Optuna search over a method's space; every trial is an ordinary run folder. Its parser and its handler."""

from __future__ import annotations

import argparse
from typing import Any

from intentlab.cli.parsing import add_config_flags, config_flags


def add(sub: Any) -> None:
    p = sub.add_parser("sweep", help="Optuna hyper-parameter search; every trial is a run folder")
    p.add_argument("--method", required=True, help="method to tune: full, lora, dora, ia3 or head")
    p.add_argument(
        "--trials", type=int, required=True, help="finished trials the study should hold (all workers)"
    )
    p.add_argument("--out", required=True, help="folder for trials/, study.db (SQLite default) and best.yaml")
    p.add_argument(
        "--storage", help="Optuna storage URL, e.g. postgresql://user:pass@host/db [default: sqlite in --out]"
    )
    p.add_argument(
        "--study", help="study name (workers sharing a storage must use the same) [default: METHOD-DATA]"
    )
    p.add_argument("--space", help="search-space YAML [default: the method's shipped space]")
    p.add_argument(
        "--pruner", choices=("median", "none"), default="median", help="prune trials below the median"
    )
    add_config_flags(p, skip=("method", "name"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.training.sweep import run_sweep

    flags = config_flags(args, skip=("method", "name"))
    r = run_sweep(
        args.method,
        args.trials,
        args.out,
        flags,
        storage=args.storage,
        study_name=args.study,
        space_file=args.space,
        pruner=args.pruner,
    )
    print(
        f"study {r['study']}: {r['finished']} trials finished ({r['pruned']} pruned); best validation accuracy "
        f"{r['best_value']:.4f} (trial {r['best_trial']}): {r['best_params']}"
    )
    print(
        f"best config -> {r['best_config']} (train it: intentlab train --config {r['best_config']} --out RUN)"
    )
    return 0
