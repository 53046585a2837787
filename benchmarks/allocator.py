"""tcmalloc (what `intentlab train` preloads where it is installed) against the C library's malloc.

    python benchmarks/allocator.py [--method full] [--reps 2] [--examples 2048] [--epochs 3]
    python benchmarks/allocator.py --method lora --examples 0 --reps 1   # whole shipped Banking77 runs

Each side is a fresh `intentlab train` process (INTENTLAB_ALLOCATOR=system against auto), the sides
alternating `--reps` times on the same Banking77 subset and seed. Prints each run's wall time and
per-epoch examples/s, the median ratio over the epochs after the first (steady state), and whether
the two sides' validation losses agree bit for bit (an allocator must not change a number).
Where no tcmalloc is installed it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import banking77_dir, machine, machine_kind, median, subset, table
from intentlab import allocator


def run(method: str, choice: str, data: Path | None, epochs: int, out: Path) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INTENTLAB_DATA_DIR": str(banking77_dir())}
    env = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    env[allocator.ENV] = choice
    cmd = [sys.executable, "-m", "intentlab", "train", "--method", method, "--out", str(out)]
    if data is not None:
        cmd += ["--data", str(data), "--epochs", str(epochs), "--seed", "0"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    record = json.loads((out / "result.json").read_text())
    epochs_ = record["train"]["epochs"]
    return {
        "wall": time.perf_counter() - t0,
        "speeds": [e["train_examples_per_second"] for e in epochs_],
        "val_losses": [e["val_loss"] for e in epochs_],
        "test_accuracy": record["test"]["accuracy"],
        "peak_mb": record["train"]["peak_memory_mb"],
        "allocator": record["meta"].get("allocator", "not recorded"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="full")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--examples", type=int, default=2048, help="0: the whole Banking77 training split")
    ap.add_argument("--epochs", type=int, default=3, help="with --examples > 0 (else the shipped budget)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"machine kind: {machine_kind()}")
    lib = allocator.find_tcmalloc()
    if lib is None:
        print(
            "no tcmalloc on this machine (Debian/Ubuntu: apt install libtcmalloc-minimal4): nothing to compare"
        )
        return
    print(f"tcmalloc: {lib}")
    sides = {"system": "glibc malloc", "auto": "tcmalloc"}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    with tempfile.TemporaryDirectory() as d:
        data = subset(args.examples, Path(d) / "data") if args.examples else None
        for rep in range(args.reps):
            for choice in list(sides) if rep % 2 == 0 else list(sides)[::-1]:
                r = run(args.method, choice, data, args.epochs, Path(d) / f"{choice}-{rep}")
                runs[choice].append(r)
                print(
                    f"rep {rep} {sides[choice]:>12} ({r['allocator']}): {r['wall']:.0f} s, ex/s per epoch "
                    f"{'/'.join(f'{s:.0f}' for s in r['speeds'])}, test {100 * r['test_accuracy']:.2f}%, "
                    f"peak {r['peak_mb']:.0f} MB",
                    flush=True,
                )
    steady = {k: median([s for r in v for s in (r["speeds"][1:] or r["speeds"])]) for k, v in runs.items()}
    wall = {k: median([r["wall"] for r in v]) for k, v in runs.items()}
    same = all(a["val_losses"] == b["val_losses"] for a, b in zip(runs["system"], runs["auto"], strict=True))
    what = f"{args.examples} examples, {args.epochs} epochs" if args.examples else "whole Banking77, shipped"
    print(f"\n{args.method}, {what}, medians of {args.reps} alternating pairs")
    print(
        table(
            ["", "glibc malloc", "tcmalloc", "tcmalloc / glibc"],
            [
                [
                    "train ex/s (epochs after the first)",
                    f"{steady['system']:.1f}",
                    f"{steady['auto']:.1f}",
                    f"**{steady['auto'] / steady['system']:.2f}×**",
                ],
                [
                    "whole command (s)",
                    f"{wall['system']:.0f}",
                    f"{wall['auto']:.0f}",
                    f"{wall['system'] / wall['auto']:.2f}× faster",
                ],
            ],
        )
    )
    print(f"validation losses identical on both allocators: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
