"""Command-line interface: `intentlab train|evaluate|...`.

Every `Config` field is a `train` flag (`--lora-r 16`, `--no-bf16`), its help taken from the field.
Bad input ends in one line on stderr and exit code 2, never a traceback. Heavy imports (torch,
transformers) happen inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from intentlab import config as C
from intentlab.errors import UserError
from intentlab.runs import RunResult
from intentlab.training.checkpoint import Interrupted

WRITE_ERRORS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENOTDIR,
}


# commands that run the model over many texts: they run on tcmalloc where it is installed
# (intentlab.allocator; measured with benchmarks/allocator.py and, for `serve`, whose memory kept
# growing on glibc's malloc under sustained load, benchmarks/serve_memory.py).
MODEL_COMMANDS = ("train", "compare", "sweep", "evaluate", "predict", "ood", "export", "serve")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage dumps."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help`.\n")

    def unrecognized(self, extras: Sequence[str]) -> NoReturn:
        """One-line error for words this (sub)command does not take, with the closest of its own flags."""
        message = f"unrecognized arguments: {' '.join(extras)}"
        flags = [o for a in self._actions for o in a.option_strings]
        for word in (w for w in extras if w.startswith("--")):
            close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.7)
            if close:
                message += f" (did you mean {close[0]}?)"
                break
        self.error(message)

    def parse_args_anywhere(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """parse_args, except that words after the options still join the command's list positional:
        `intentlab predict RUN --top-k 5 "a text"` classifies "a text" (plain argparse stops filling
        `texts` at the first option and calls the rest unrecognized)."""
        args, extras = self.parse_known_args(argv)
        if not extras:
            return args
        command = next(
            (
                a.choices[args.command]
                for a in self._actions
                if isinstance(a, argparse._SubParsersAction) and getattr(args, "command", None) in a.choices
            ),
            self,
        )
        listed = next(
            (b.dest for b in command._actions if not b.option_strings and b.nargs in ("*", "+")), None
        )
        cut = extras.index("--") if "--" in extras else len(extras)
        words, literal = extras[:cut], extras[cut + 1 :]  # after `--`, texts may start with "-"
        if listed is None or any(w.startswith("-") for w in words):
            command.unrecognized(extras)
        getattr(args, listed).extend(words + literal)
        return args


def shipped_values() -> dict[str, dict[str, object]]:
    """{field: {method: value}} for every field a method's shipped config sets differently from the
    dataclass default, so --help can say what a run of each method really uses."""
    out: dict[str, dict[str, object]] = {}
    for method in C.METHODS:
        for key, value in C.read_yaml(C.shipped_config_path(method)).items():
            name = str(key).replace("-", "_")
            if name in C.FIELDS and name != "method":
                default = (
                    C.FIELDS[name].default if C.FIELDS[name].default is not C.dataclasses.MISSING else None
                )
                if C.coerce(name, value) != default:
                    out.setdefault(name, {})[method] = value
    return out


def add_config_flags(p: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    """One flag per Config field; values stay strings here and are typed/validated by config.merge.
    The help shows the dataclass default and, where they differ, the methods' shipped values."""
    shipped = shipped_values()
    for name, f in C.FIELDS.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = C.field_kind(name)
        default = f.default if f.default is not C.dataclasses.MISSING else f.default_factory()
        per = shipped.get(name)
        note = f"; configs/<method>.yaml: {', '.join(f'{m} {v}' for m, v in per.items())}" if per else ""
        help_ = f"{f.metadata['help']} [default: {default}{note}]".replace("%", "%%")
        if kind is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_)


def config_from_args(args: argparse.Namespace) -> C.Config:
    flags = {name: getattr(args, name, None) for name in C.FIELDS if name != "method"}
    return C.resolve(args.method, args.config, flags)


def cmd_train(args: argparse.Namespace) -> int:
    from intentlab.models.methods import trainer

    if args.resume:
        from intentlab.training.loop import resume_config

        run = args.resume if isinstance(args.resume, str) else args.out
        if not run:
            raise UserError("--resume needs the run folder: intentlab train --resume RUN.")
        if args.out and Path(args.out).absolute() != Path(run).absolute():
            raise UserError(
                f"--resume {run} and --out {args.out} name two folders. A run resumes in its own: drop --out."
            )
        if args.method or args.config or args.overwrite:
            raise UserError(
                "--resume continues a run with its recorded config; drop --method/--config/--overwrite."
            )
        flags = {name: getattr(args, name, None) for name in C.FIELDS if name != "method"}
        cfg = resume_config(run, flags)
        return _print_result(trainer(cfg.method)(cfg, run, resume=True), run)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
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


def cmd_ood(args: argparse.Namespace) -> int:
    from intentlab.inference.ood_run import fit_run_ood

    s = fit_run_ood(args.run, data_dir=args.data_dir, k=args.k, target_recall=args.target_recall)
    print(
        f"temperature {s['temperature']:.3f}: test ECE {s['calibration']['before']['ece']:.4f} -> "
        f"{s['calibration']['after']['ece']:.4f}"
    )
    for name, m in s["scorers"].items():
        mark = "*" if name == s["chosen"] else " "
        extra = (
            f", OOS recall {m['oos_recall']:.3f}, AUROC {m['auroc']:.3f}, FPR@95 {m['fpr_at_95_recall']:.3f}"
            if "auroc" in m
            else ""
        )
        print(
            f"{mark} {name:<12} threshold {m['threshold']:.4g}: in-scope accuracy with rejection "
            f"{m['inscope_accuracy_with_rejection']:.4f}{extra}"
        )
    print(f"{s['rule']} -> {Path(args.run) / 'ood'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from intentlab.training.compare import plan_cells, run_compare

    flags = {name: getattr(args, name, None) for name in C.FIELDS if name not in ("method", "name")}
    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    if methods is not None and not methods:
        raise UserError(
            "--methods names no method. Name one or more (lora,full), or leave it out for the defaults."
        )
    if args.executor != "ray" and (args.address or args.cell_gpus):
        raise UserError("--address and --cell-gpus go with --executor ray.")
    if args.cell_cpus < 1 or args.cell_gpus < 0:
        raise UserError("--cell-cpus must be at least 1 and --cell-gpus at least 0.")
    cells = plan_cells(methods, args.seeds, flags, args.plan, args.train_sizes)
    if args.executor == "ray":
        from intentlab.training.executors import import_ray

        import_ray()  # a missing Ray is a one-line error before anything starts
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


def cmd_report(args: argparse.Namespace) -> int:
    from intentlab.reporting.report import build_report

    rep = build_report(args.runs, args.out)
    print(f"report of {sum(r['n'] for r in rep['summary'])} runs -> {args.out}/report.md and report.html")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from intentlab.inference.predictor import Predictor, check_files, predict_file

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
    predictor = Predictor.from_run(args.run)
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


def cmd_export(args: argparse.Namespace) -> int:
    from intentlab.deploy.export import export_run

    r = export_run(
        args.run,
        args.out,
        merge=args.merge,
        onnx=args.onnx,
        overwrite=args.overwrite,
        data_dir=args.data_dir,
        quantize=args.quantize,
        min_agreement=args.min_agreement,
    )
    print(f"exported {r['kind']} -> {args.out}; verified on {r['n']} test texts against the run:")
    for name, a in r["artifacts"].items():
        size = f", {a['fp32_bytes'] / 2**20:.1f} -> {a['bytes'] / 2**20:.1f} MB" if "bytes" in a else ""
        print(
            f"  {name:<18} top-1 agreement {100 * a['top1_agreement']:.2f}%, max |Δprobability| "
            f"{a['max_prob_diff']:.2e}, in-scope accuracy {100 * a['accuracy']:.2f}%{size}"
        )
    if not r["standard"]:
        print("  note: mean pooling is not a built-in transformers head; see README.md in the export")
    return 0


def sleeping_openmp_threads() -> None:
    """Make torch's OpenMP threads sleep between ops instead of busy-waiting (OMP_WAIT_POLICY=PASSIVE).

    Spinning threads take the CPU from the HTTP side and from other processes: with another job on
    the machine, one-text requests took 60-105 ms instead of 22-25 ms. OpenMP reads the policy when
    torch loads, so this only acts before torch is imported; a user's own OMP_WAIT_POLICY wins."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_serve(args: argparse.Namespace) -> int:
    sleeping_openmp_threads()
    try:
        from intentlab.serving.app import Limits, serve
    except ImportError as e:
        raise UserError(
            f"serve needs FastAPI and uvicorn ({e.name} is missing). Run: pip install 'intentlab[serve]'."
        ) from None

    if args.name and len(args.name) != len(args.runs):
        raise UserError(
            f"--name was given {len(args.name)} times for {len(args.runs)} runs. Name every run, or none."
        )
    if args.batch_wait_ms < 0:
        raise UserError(f"--batch-wait-ms must be 0 or more, got {args.batch_wait_ms}.")
    if args.parallel_batches < 1:
        raise UserError(f"--parallel-batches must be 1 or more, got {args.parallel_batches}.")
    if args.parallel_batches > 1 and args.backend != "onnxruntime":
        raise UserError(
            "--parallel-batches needs --backend onnxruntime: torch adapters share one base whose active "
            "adapter is switched per batch. Drop it, or serve an ONNX export."
        )
    for flag, value in (("--max-texts", args.max_texts), ("--max-chars", args.max_chars)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}.")
    if args.max_body_bytes < 1024:
        raise UserError(f"--max-body-bytes must be at least 1024, got {args.max_body_bytes}.")
    if args.runs_root and not Path(args.runs_root).is_dir():
        raise UserError(
            f"--runs-root {args.runs_root} is not a folder. Pass the folder runs are loaded from."
        )
    if args.threads is not None and (args.threads < 1 or args.backend != "torch"):
        raise UserError(
            f"--threads {args.threads}: give 1 or more, with --backend torch (ONNX Runtime shares the cores "
            "between --parallel-batches)."
        )
    limits = Limits(
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        batch_wait_ms=args.batch_wait_ms,
        parallel_batches=args.parallel_batches,
    )
    serve(
        args.runs,
        args.host,
        args.port,
        names=args.name,
        admin_token=_admin_token(args),
        runs_root=args.runs_root,
        limits=limits,
        bf16=args.bf16,
        backend=args.backend,
        onnx_file=args.onnx_file,
        threads=serving_threads(args.threads) if args.backend == "torch" else None,
    )
    return 0


def serving_threads(given: int | None) -> int:
    """torch threads for `serve`: as given, else the CPU cores less one, left to the event loop (HTTP,
    JSON, tokenizing). On 2 cores one thread answered one-text requests in 23 ms against 36-44 ms with
    two, and 1.2-1.3x the requests/s under 8 clients (benchmarks/README.md, "Serving backends")."""
    from intentlab.hardware import usable_cores, warn_if_oversubscribed

    if given:
        warn_if_oversubscribed(given, "serving")
    return given or max(1, usable_cores() - 1)


def _admin_token(args: argparse.Namespace) -> str | None:
    """The admin token from --admin-token-file (first line), else --admin-token, else the environment."""
    if args.admin_token_file:
        try:
            lines = Path(args.admin_token_file).read_text(encoding="utf-8").splitlines()
            token = lines[0].strip() if lines else ""
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(
                f"--admin-token-file {args.admin_token_file}: {e}. Give a readable text file."
            ) from None
        if not token:
            raise UserError(
                f"--admin-token-file {args.admin_token_file} is empty. Put the token on its first line."
            )
        return token
    if args.admin_token:
        print(
            "intentlab serve: warning: --admin-token is visible to other users in the process list; "
            "prefer INTENTLAB_ADMIN_TOKEN or --admin-token-file",
            file=sys.stderr,
        )
    return args.admin_token or os.environ.get("INTENTLAB_ADMIN_TOKEN") or None


def cmd_sweep(args: argparse.Namespace) -> int:
    from intentlab.training.sweep import run_sweep

    flags = {name: getattr(args, name, None) for name in C.FIELDS if name not in ("method", "name")}
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


def build_parser() -> Parser:
    from intentlab import __version__
    from intentlab.models.methods import COMPARE_DEFAULTS

    parser = Parser(prog="intentlab", description="Train, compare and serve intent classifiers.")
    parser.add_argument("--version", action="version", version=f"intentlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help=f"train one run ({', '.join(C.METHODS)})")
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
    p.set_defaults(func=cmd_train)

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
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_compare)

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
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("ood", help="fit (or refit) a run's out-of-scope scorers, thresholds and calibration")
    p.add_argument("run", help="run folder")
    p.add_argument("--data-dir", help="folder with banking77's CSVs (if it moved since training)")
    p.add_argument("--k", type=int, help="neighbours of the k-NN scorer [default: the run's ood_k, 10]")
    p.add_argument(
        "--target-recall",
        type=float,
        help="without OOS rows in validation: in-scope share to keep [default: 0.95]",
    )
    p.set_defaults(func=cmd_ood)

    p = sub.add_parser("export", help="export a run (merged, or as an adapter), verified against the run")
    p.add_argument("run", help="run folder")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument(
        "--merge",
        action="store_true",
        help="fold adapters into the base weights: a plain transformers folder",
    )
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (needs onnx + onnxruntime)")
    p.add_argument(
        "--quantize", choices=("int8",), help="with --onnx: also write model.int8.onnx (dynamic int8)"
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="refuse a quantized model whose top-1 agreement with the run is lower [default: 0.99]",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--data-dir", help="folder with banking77's CSVs, for the verification")
    p.set_defaults(func=cmd_export)

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
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("serve", help="serve runs over HTTP: many adapters on one base model")
    p.add_argument("runs", nargs="+", help="run folders to load at start-up")
    p.add_argument(
        "--name", action="append", help="adapter name per run, in order [default: the folder names]"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--admin-token-file",
        help="file whose first line is the token for POST/DELETE /v1/adapters "
        "[default: $INTENTLAB_ADMIN_TOKEN; unset: run-time loading disabled]",
    )
    p.add_argument(
        "--admin-token", help=argparse.SUPPRESS
    )  # visible in the process list: use the file or env
    p.add_argument(
        "--runs-root", help="folder that runs loaded at run time must be inside [default: current folder]"
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="torch: run folders; onnxruntime: export folders made with `export --merge --onnx` [default: torch]",
    )
    p.add_argument(
        "--onnx-file",
        help="with --backend onnxruntime: model.onnx or model.int8.onnx [default: int8 if exported]",
    )
    p.add_argument("--max-texts", type=int, default=64, help="texts per request [default: 64]")
    p.add_argument("--max-chars", type=int, default=2000, help="characters per text [default: 2000]")
    p.add_argument(
        "--max-body-bytes", type=int, default=256 * 1024, help="request body bytes [default: 262144]"
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="how long a request that finds the model idle waits for others to batch with; requests that "
        "arrive while a batch runs always form the next one [default: 0]",
    )
    p.add_argument(
        "--parallel-batches",
        type=int,
        default=1,
        help="with --backend onnxruntime: batches run at once, each on its share of the CPU cores [default: 1]",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="with --backend torch: threads for the model [default: CPU cores - 1, at least 1; one core is "
        "left to HTTP and tokenizing]",
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast for inference; default: as each run was trained, where this machine has fast bf16",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("report", help="build report.md + report.html from run folders")
    p.add_argument("runs", nargs="+", help="run folders, or folders holding runs (searched recursively)")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and charts/")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    try:
        args = parser.parse_args_anywhere(argv)
    except SystemExit as e:  # --help, or a one-line usage error already printed
        return int(e.code or 0)
    from intentlab import runs

    runs.COMMAND[:] = ["intentlab", *(sys.argv[1:] if argv is None else argv)]
    try:
        if argv is None and args.command in MODEL_COMMANDS:
            from intentlab import allocator

            allocator.reexec_if_wanted()  # tcmalloc where installed: faster, same numbers
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"intentlab {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(f"intentlab {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"intentlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # disk full, read-only folders, permissions: one line, nothing half-written
        err = write_error(e)
        if err is None:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(
            f"intentlab {args.command}: error: cannot write{where}: {err.strerror}. "
            "Free some space or choose a writable output folder; nothing was left half-written.",
            file=sys.stderr,
        )
        return 2


def write_error(e: BaseException) -> OSError | None:
    """The OSError behind a failed write (safetensors reports its own as 'I/O error: ... (os error N)')."""
    if isinstance(e, OSError):
        return e if e.errno in WRITE_ERRORS else None
    match = re.search(r"I/O error: (.*?) \(os error (\d+)\)", str(e))
    if type(e).__name__ == "SafetensorError" and match and int(match.group(2)) in WRITE_ERRORS:
        return OSError(int(match.group(2)), match.group(1))
    return None


if __name__ == "__main__":
    sys.exit(main())
