"""`intentlab export RUN --out DIR`: a deployable folder (transformers, peft, ONNX), verified against the run. Its parser and its handler."""

from __future__ import annotations

import argparse
from typing import Any


def add(sub: Any) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
