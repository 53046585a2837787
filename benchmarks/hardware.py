"""Hardware efficiency: the matmul peak of this machine (fp32 and bf16) and the share of it that
intentlab's training reaches.

    python benchmarks/hardware.py [--reps 5] [--examples 1024]

Peak: median GFLOP/s of (tokens x 384) @ (384 x 1536) matmuls, MiniLM's feed-forward shape, fp32 and bf16.
Training: intentlab trains the packaged MiniLM on a Banking77 subset; achieved GFLOP/s is counted as
- full: 6 x non-embedding parameters x real (unpadded) tokens (forward 2, backward 4);
- LoRA: 4 x non-embedding parameters x real tokens (forward 2 + input-gradient 2: frozen weights get no
  weight gradient); the adapters' own FLOPs (<3% at r=16) are not counted.
The printed fraction is achieved / the measured peak of the dtype the run used. Each training run
runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import isolated, machine, machine_kind, median, subset, table, train_epoch_stats


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
    from intentlab.models.classifier import load_encoder

    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--examples", type=int, default=1024)
    args = ap.parse_args()
    fp32 = matmul_gflops(torch.float32, reps=args.reps)
    bf16 = matmul_gflops(torch.bfloat16, reps=args.reps)
    print(f"machine: {machine()}")
    print(f"machine kind: {machine_kind()}")
    print(
        f"matmul peak (512x384 @ 384x1536, median of {args.reps}): fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s "
        f"(bf16/fp32 = {bf16 / fp32:.2f})"
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        data = subset(args.examples, Path(d) / "data")
        for method, factor in (("full", 6), ("lora", 4)):
            cfg = resolve(method, None, {"data": str(data), "epochs": 1})
            row = isolated(train_epoch_stats, method, {"data": str(data), "epochs": 1}, str(Path(d) / method))
            enc = sum(
                p.numel()
                for n, p in load_encoder(cfg.model, "mean").named_parameters()
                if "embeddings" not in n
            )
            tokens = row["tokens"]
            achieved = factor * enc * tokens / row["epoch_seconds"] / 1e9
            dtype_peak = bf16 if row["bf16"] else fp32
            rows.append(
                [
                    method,
                    "bf16" if row["bf16"] else "fp32",
                    f"{enc / 1e6:.1f} M",
                    f"{tokens:,}",
                    f"{row['train_examples_per_second']:.0f}",
                    f"{achieved:.0f}",
                    f"{achieved / dtype_peak:.0%}",
                    f"{row['padding_fraction']:.1%}",
                ]
            )
    print(
        table(
            [
                "method",
                "dtype",
                "non-embedding params",
                "real tokens",
                "train ex/s",
                "achieved GFLOP/s",
                "of its dtype's measured peak",
                "padding",
            ],
            rows,
        )
    )
    print(json.dumps({"fp32_gflops": fp32, "bf16_gflops": bf16}))


if __name__ == "__main__":
    main()
