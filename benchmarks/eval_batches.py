"""Evaluation batch shapes: texts/s over Banking77's test set (3,080 texts, sorted by length) with batches
cut by count only (256 texts) against batches also cut at a token budget (texts x longest text), for
the torch backend in this machine's automatic precision and, given an export, ONNX Runtime fp32/int8.

    python benchmarks/eval_batches.py --run RUN [--export EXPORT_DIR]

intentlab cuts CPU batches at `intentlab.inference.engine.CPU_BATCH_TOKENS`; this script varies that
setting. Each backend runs in its own process; within it the budgets alternate over 3 repetitions and
the median is printed, with the minor page faults of the median repetition (fresh memory the process
had to map: large batches make tensors above glibc's mmap threshold, mapped and zeroed afresh).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import banking77_dir, isolated, machine, machine_kind, table

BUDGETS = (None, 1024, 2048, 4096)


def measure(kind: str, path: str, reps: int = 3) -> dict[Any, tuple[float, int]]:
    """texts/s and minor faults per token budget, for one backend loaded in this process."""
    import csv
    import resource
    import time

    from intentlab.inference import engine, onnx
    from intentlab.models.loading import load_tokenizer, quiet_transformers

    quiet_transformers()
    texts = [r["text"] for r in csv.DictReader((banking77_dir() / "test.csv").open(encoding="utf-8"))]
    if kind == "torch":
        from intentlab.models.io import load_model

        loaded = load_model(path)
        backend: Any = engine.TorchBackend(loaded.model, loaded.tokenizer, 128)
    else:
        backend = onnx.OnnxBackend(path, load_tokenizer(str(Path(path).parent)), 128)
    ids = backend.encode(texts)
    got: dict[Any, list[tuple[float, int]]] = {b: [] for b in BUDGETS}
    for _ in range(reps):
        for budget in BUDGETS:
            engine.CPU_BATCH_TOKENS = onnx.CPU_BATCH_TOKENS = budget
            backend.run_ids(ids[:64])  # warm-up at this setting
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            backend.run_ids(ids)
            seconds = time.perf_counter() - t0
            got[budget].append(
                (len(ids) / seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
            )
    return {b: sorted(v)[len(v) // 2] for b, v in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a trained run folder (its model is scored with torch)")
    ap.add_argument("--export", help="an `intentlab export --onnx` folder: also ONNX Runtime fp32 and int8")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"machine kind: {machine_kind()}")
    backends = [("torch", args.run)]
    if args.export:
        for name, label in (("model.onnx", "onnxruntime fp32"), ("model.int8.onnx", "onnxruntime int8")):
            if (Path(args.export) / name).is_file():
                backends.append((label, str(Path(args.export) / name)))
    rows = []
    for label, path in backends:
        res = isolated(measure, "torch" if label == "torch" else "onnx", path)
        base = res[None][0]
        for budget in BUDGETS:
            speed, faults = res[budget]
            rows.append(
                [
                    label,
                    "256 texts" if budget is None else f"256 texts, {budget:,} tokens",
                    f"{speed:.0f}",
                    f"{faults / 1e3:.0f} k",
                    f"**{speed / base:.2f}×**",
                ]
            )
    print(table(["backend", "batch cut at", "texts/s (median of 3)", "minor faults", "vs count only"], rows))


if __name__ == "__main__":
    main()
