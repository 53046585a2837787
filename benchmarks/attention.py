"""Attention kernel on CPU: transformers' default SDPA against the eager (explicit matmul) path.

    python benchmarks/attention.py [--examples 1024] [--reps 2] [--methods lora,full] [--bf16 auto|on|off]

Each configuration trains one epoch of the shipped method config on a shuffled Banking77 subset, in its
own fresh process, alternating sdpa and eager `--reps` times; the medians of training examples per
second are compared and the ratio eager / sdpa is printed, with the machine kind (bf16 autocast is on
where the hardware has fast bf16, as in a normal run).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import isolated, machine, machine_kind, median, subset, table, train_epoch_stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"machine kind: {machine_kind()}, bf16: {args.bf16}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        data = subset(args.examples, Path(d) / "data")
        for method in args.methods.split(","):
            speed: dict[str, list[float]] = {"sdpa": [], "eager": []}
            for rep in range(args.reps):
                for kernel in speed:
                    overrides = {"data": str(data), "epochs": 1, "seed": rep, "attention": kernel}
                    if args.bf16 != "auto":
                        overrides["bf16"] = args.bf16 == "on"
                    row = isolated(
                        train_epoch_stats, method, overrides, str(Path(d) / f"{method}-{kernel}-{rep}")
                    )
                    speed[kernel].append(row["train_examples_per_second"])
            s, e = median(speed["sdpa"]), median(speed["eager"])
            rows.append([method, f"{s:.1f}", f"{e:.1f}", f"{e / s:.2f}x"])
            print(f"{method}: sdpa {speed['sdpa']} eager {speed['eager']}", flush=True)
    print(table(["method", "sdpa ex/s", "eager ex/s", "eager / sdpa"], rows))


if __name__ == "__main__":
    main()
