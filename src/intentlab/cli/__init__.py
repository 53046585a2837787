"""Command-line interface: `intentlab train|evaluate|compare|report|predict|export|serve|sweep|ood`.

One module per command (`cli/<command>.py`), each with its parser beside its handler; shared parsing
in `cli/parsing.py`. Bad input ends in one line on stderr and exit code 2, never a traceback. Heavy
imports (torch, transformers) happen inside the handlers, so `intentlab --help` is instant. Nothing
imports this package but the `intentlab` script and `python -m intentlab`.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Sequence

from intentlab.cli import (
    audit,
    compare,
    drift,
    evaluate,
    export,
    ood,
    predict,
    report,
    review,
    serve,
    sweep,
    train,
)
from intentlab.cli.parsing import Parser
from intentlab.errors import Interrupted, UserError

COMMANDS = (
    train,
    evaluate,
    compare,
    predict,
    ood,
    export,
    sweep,
    serve,
    report,
    audit,
    review,
    drift,
)  # --help lists them so
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
MODEL_COMMANDS = (
    "train",
    "compare",
    "sweep",
    "evaluate",
    "predict",
    "ood",
    "export",
    "serve",
    "audit",
    "review",
    "drift",
)


def build_parser() -> Parser:
    from intentlab import __version__

    parser = Parser(prog="intentlab", description="Train, compare and serve intent classifiers.")
    parser.add_argument("--version", action="version", version=f"intentlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    try:
        args = parser.parse_args_anywhere(argv)
    except SystemExit as e:  # --help, or a one-line usage error already printed
        return int(e.code or 0)
    from intentlab.training import provenance

    provenance.COMMAND[:] = ["intentlab", *(sys.argv[1:] if argv is None else argv)]
    try:
        if args.command in MODEL_COMMANDS:
            from intentlab.hardware import sleeping_openmp_threads

            sleeping_openmp_threads()  # before torch loads (and before a re-exec, which inherits it)
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
