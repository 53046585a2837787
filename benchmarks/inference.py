"""Inference speed (merged vs unmerged LoRA) and training memory (every method), on this machine.

    python benchmarks/inference.py [--run RUN] [--queries 300]

Latency: one query at a time (tokenize + forward, as `Predictor.predict` does), p50 and p99 over
`--queries` Banking77 test texts. Throughput: all 3,080 test texts in length-sorted batches of 256.
"Unmerged" is the peft model as trained; "merged" folds the adapters into the base weights.
Memory: each method trains one epoch on 1,024 examples in its own process; peak resident memory and its
rise over the resident memory just before training are read from the run records.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import banking77_dir, machine, subset, table


def latency_and_throughput(predictor: object, texts: list[str], queries: int) -> tuple[float, float, float]:
    lat = []
    for t in texts[:queries]:
        t0 = time.perf_counter()
        predictor.predict([t], top_k=1)
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    predictor.predict(texts, top_k=1)
    thr = len(texts) / (time.perf_counter() - t0)
    return float(np.percentile(lat, 50) * 1000), float(np.percentile(lat, 99) * 1000), thr


def main() -> None:
    from intentlab.data import load_dataset
    from intentlab.inference.opener import open_run

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="a trained LoRA run (default: train one epoch on a subset, here)")
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    texts = load_dataset("banking77", str(banking77_dir())).test.texts
    with tempfile.TemporaryDirectory() as d:
        data = subset(1024, Path(d) / "data")
        mem_rows = []
        for method in ("head", "ia3", "lora", "dora", "full"):
            out = Path(d) / f"mem-{method}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "intentlab",
                    "train",
                    "--method",
                    method,
                    "--out",
                    str(out),
                    "--data",
                    str(data),
                    "--epochs",
                    "1",
                ],
                check=True,
                capture_output=True,
            )
            tr = json.loads((out / "result.json").read_text())["train"]
            mem_rows.append(
                [
                    method,
                    f"{tr['trainable_params']:,}",
                    f"{tr['peak_memory_mb']:.0f}",
                    f"{tr['peak_memory_mb'] - tr['rss_before_train_mb']:.0f}",
                ]
            )
        run = Path(args.run) if args.run else Path(d) / "mem-lora"
        unmerged = open_run(run)
        merged = open_run(run)
        merged.model = merged.model.merge_and_unload()
        same = (unmerged.logits(texts[:256]).argmax(1) == merged.logits(texts[:256]).argmax(1)).all()
        rows = []
        for name, p in (("LoRA unmerged (peft)", unmerged), ("LoRA merged", merged)):
            p50, p99, thr = latency_and_throughput(p, texts, args.queries)
            rows.append([name, f"{p50:.1f}", f"{p99:.1f}", f"{thr:.0f}"])
    print(f"\ninference on {len(texts)} Banking77 test texts (merged predictions identical: {bool(same)})")
    print(table(["model", "single-query p50 (ms)", "p99 (ms)", "batch throughput (texts/s)"], rows))
    print("\ntraining memory, one epoch on 1,024 examples, each method in its own process")
    print(table(["method", "trainable params", "peak RSS (MB)", "rise during training (MB)"], mem_rows))


if __name__ == "__main__":
    main()
