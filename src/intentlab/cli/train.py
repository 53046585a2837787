"""`intentlab train`: train one run of any method into a run folder (or resume one). Its parser and its handler."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from intentlab.cli.parsing import add_config_flags, config_flags, config_from_args
from intentlab.errors import UserError
from intentlab.methods import NAMES
from intentlab.runs.record import RunResult


def add(sub: Any) -> None:
    p = sub.add_parser("train", help=f"train one run ({', '.join(NAMES)})")
    p.add_argument("--out", help="run folder to create")
    p.add_argument(
        "--config", help="YAML config; flags override it, it overrides the method's shipped config"
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="RUN",
        help="continue an interrupted run from its last checkpoint (RUN, or the --out folder)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder (kept until the new run completes)",
    )
    add_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.training.trainers import trainer_for as trainer

    if args.resume:
        from intentlab.training.loop import resume_config

        folder = args.resume if isinstance(args.resume, str) else args.out
        if not folder:
            raise UserError("--resume needs the run folder: intentlab train --resume RUN.")
        if args.out and Path(args.out).absolute() != Path(folder).absolute():
            raise UserError(
                f"--resume {folder} and --out {args.out} name two folders. A run resumes in its own: drop --out."
            )
        if args.method or args.config or args.overwrite:
            raise UserError(
                "--resume continues a run with its recorded config; drop --method/--config/--overwrite."
            )
        cfg = resume_config(folder, config_flags(args))
        return _print_result(trainer(cfg.method)(cfg, folder, resume=True), folder)
    if not args.out:
        raise UserError("--out is required: the run folder to create.")
    cfg = config_from_args(args)
    return _print_result(trainer(cfg.method)(cfg, args.out, overwrite=args.overwrite), args.out)


def _print_result(result: RunResult, out: str) -> int:
    if int(os.environ.get("RANK", "0")) != 0:  # under accelerate launch / torchrun: one summary, from rank 0
        return 0
    t, tr = result.test, result.train
    print(
        f"{result.run.method}: test accuracy {t.accuracy:.4f}, macro-F1 {t.f1_macro:.4f}, "
        f"weighted F1 {t.f1_weighted:.4f} | {tr.train_seconds / 60:.1f} min, "
        f"{tr.trainable_params:,} trainable params ({tr.trainable_percent:.2f}%) -> {out}"
    )
    return 0
