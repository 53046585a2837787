"""Hardware efficiency: the matmul peak of this machine (fp32 and bf16) and the share of it that
intentlab's training reaches.

    python benchmarks/hardware.py [--reps 5] [--train-reps 3] [--examples 1024]

Peak: median GFLOP/s of (tokens x 384) @ (384 x 1536) matmuls, MiniLM's feed-forward shape, fp32 and bf16.
Training: intentlab trains the packaged MiniLM on a Banking77 subset with each method's shipped config.
Achieved GFLOP/s is the matmul work the real (unpadded) tokens needed, per second of the epoch:
torch's `FlopCounterMode` counts every product of one epoch, forward and backward, in a separate
process (adapters and attention included, and only what autograd computes: LoRA's frozen weights get no
weight gradient, and layers below the lowest adapter no backward pass at all), scaled by the share of
real tokens in the padded batches. (Earlier tables counted 6 x non-embedding parameters x real tokens
for full and 4 x for LoRA; that left out LoRA's adapter products, about 9% of its work at r=16 on
every linear layer, and would over-count a LoRA with fewer adapted layers.)
The printed fraction is achieved / the measured peak of the dtype the run used. Each training run
runs in its own process; the methods alternate `--train-reps` times, and the peak is measured again before
every training run: on a shared machine both move by a third from one minute to the next, and not
together, so the share is the median achieved rate over the median peak of the same stretch of time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import epoch_flops, isolated, machine, machine_kind, median, subset, table, train_epoch_stats


def matmul_gflops(dtype: object, tokens: int = 512, reps: int = 5) -> float:
    import torch

    a = torch.randn(tokens, 384, dtype=dtype)
    b = torch.randn(384, 1536, dtype=dtype)
    flop = 2 * tokens * 384 * 1536
    out = []
    for _ in range(reps):
        a @ b
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            a @ b
            n += 1
        out.append(flop * n / (time.perf_counter() - t0) / 1e9)
    return median(out)


def main() -> None:
    import torch

    from intentlab.config import resolve
    from intentlab.training.loop import for_this_machine

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5, help="timed matmul bursts per peak measurement")
    ap.add_argument("--train-reps", type=int, default=3, help="training runs per method (alternating)")
    ap.add_argument("--examples", type=int, default=1024)
    args = ap.parse_args()
    peaks = {
        "fp32": matmul_gflops(torch.float32, reps=args.reps),
        "bf16": matmul_gflops(torch.bfloat16, reps=args.reps),
    }
    print(f"machine: {machine()}")
    print(f"machine kind: {machine_kind()}")
    print(
        f"matmul peak (512x384 @ 384x1536, median of {args.reps}): fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s (bf16/fp32 = {peaks['bf16'] / peaks['fp32']:.2f})"
    )
    methods = ("full", "lora")
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    info: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as d:
        data = subset(args.examples, Path(d) / "data")
        work = {m: isolated(epoch_flops, m, {"data": str(data), "epochs": 1}) for m in methods}
        for rep in range(args.train_reps):
            for method in methods if rep % 2 == 0 else methods[::-1]:
                cfg = resolve(method, None, {"data": str(data), "epochs": 1})
                dtype = "bf16" if for_this_machine(cfg).bf16 else "fp32"
                peak = matmul_gflops(torch.bfloat16 if dtype == "bf16" else torch.float32, reps=args.reps)
                out = str(Path(d) / f"{method}-{rep}")
                row = isolated(train_epoch_stats, method, {"data": str(data), "epochs": 1}, out)
                real_work = work[method]["flops"] * work[method]["real_share"]
                achieved = real_work / row["epoch_seconds"] / 1e9
                runs[method].append(
                    {"ex_s": row["train_examples_per_second"], "achieved": achieved, "peak": peak}
                )
                info[method] = {
                    "dtype": dtype,
                    "gflop_per_token": real_work / row["tokens"] / 1e9,
                    "tokens": row["tokens"],
                    "padding": row["padding_fraction"],
                }
                print(
                    f"rep {rep} {method}: {row['train_examples_per_second']:.0f} ex/s, {achieved:.0f} GFLOP/s; "
                    f"{dtype} peak just before {peak:.0f} GFLOP/s",
                    flush=True,
                )
    rows = []
    for method in methods:
        r, i = runs[method], info[method]
        rows.append(
            [
                method,
                str(i["dtype"]),
                f"{i['gflop_per_token'] * 1e3:.1f}",
                f"{i['tokens']:,}",
                f"{median([x['ex_s'] for x in r]):.0f}",
                f"{median([x['achieved'] for x in r]):.0f}",
                f"{median([x['peak'] for x in r]):.0f}",
                f"{median([x['achieved'] for x in r]) / median([x['peak'] for x in r]):.0%}",
                f"{i['padding']:.1%}",
            ]
        )
    print(
        table(
            [
                "method",
                "dtype",
                "MFLOP per real token (training)",
                "real tokens",
                "train ex/s",
                "achieved GFLOP/s",
                "its dtype's peak (GFLOP/s)",
                "share of the peak",
                "padding",
            ],
            rows,
        )
    )
    print(f"medians of {args.train_reps} runs per method and of the peaks measured before them")
    print(json.dumps({"fp32_gflops": peaks["fp32"], "bf16_gflops": peaks["bf16"]}))


if __name__ == "__main__":
    main()
