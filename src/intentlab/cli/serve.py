"""`intentlab serve RUN...`: serve runs over HTTP, many adapters on one base model. Its parser and its handler."""

from __future__ import annotations

import argparse
from typing import Any

from intentlab.errors import UserError


def add(sub: Any) -> None:
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
        "--log",
        metavar="DIR",
        help="append every prediction (time, adapter, text, top intents, out-of-scope decision, latency) to a "
        "rotating log in DIR, for `intentlab review` and `intentlab drift` [default: off]",
    )
    p.add_argument(
        "--log-redact",
        action="append",
        metavar="REGEX",
        help="with --log: mask matches (card or account numbers...) before anything is written; repeatable",
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast for inference; default: as each run was trained, where this machine has fast bf16",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intentlab.serving.runtime import Limits, admin_token, check_options, serving_threads

    limits = Limits(
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        batch_wait_ms=args.batch_wait_ms,
        parallel_batches=args.parallel_batches,
    )
    check_options(args.runs, args.name, args.backend, limits, args.threads, args.runs_root)
    if args.log_redact and not args.log:
        raise UserError("--log-redact masks what --log writes. Add --log DIR.")
    traffic_log = None
    if args.log:
        from intentlab.serving.traffic_log import TrafficLog

        traffic_log = TrafficLog(args.log, args.log_redact)
    try:
        from intentlab.serving.app import serve
    except ImportError as e:
        raise UserError(
            f"serve needs FastAPI and uvicorn ({e.name} is missing). Run: pip install 'intentlab[serve]'."
        ) from None
    serve(
        args.runs,
        args.host,
        args.port,
        names=args.name,
        admin_token=admin_token(args.admin_token_file, args.admin_token),
        runs_root=args.runs_root,
        limits=limits,
        bf16=args.bf16,
        backend=args.backend,
        onnx_file=args.onnx_file,
        threads=serving_threads(args.threads) if args.backend == "torch" else None,
        traffic_log=traffic_log,
    )
    return 0
