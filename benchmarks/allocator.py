"""tcmalloc (what `intentlab train` preloads where it is installed) against the C library's malloc.

    python benchmarks/allocator.py [--method full] [--reps 2] [--examples 2048] [--epochs 3]
    python benchmarks/allocator.py --method lora --examples 0 --reps 1   # whole shipped Banking77 runs
    python benchmarks/allocator.py --run RUN [--reps 2]   # evaluate, predict, ood, export on a trained run

Each side is a fresh `intentlab train` process (INTENTLAB_ALLOCATOR=system against auto), the sides
alternating `--reps` times on the same Banking77 subset and seed. Prints each run's wall time and
per-epoch examples/s, the median ratio over the epochs after the first (steady state), and whether
the two sides' validation losses agree bit for bit (an allocator must not change a number).
With `--run`, the other commands that run the model over many texts are timed the same way, whole
processes from outside: `evaluate` on the test split, `predict` on the test CSV, `ood` (on a fresh copy
of the run each time: it writes into it) and `export --merge --onnx`; evaluate's scores and predict's
output file must be the same on both allocators. Where no tcmalloc is installed it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import banking77_dir, machine, machine_kind, median, subset, table
from intentlab import allocator


def intentlab(args: list[str], choice: str) -> tuple[float, str]:
    """Run `intentlab ARGS` in a fresh process on allocator `choice`; returns (wall seconds, stdout)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INTENTLAB_DATA_DIR": str(banking77_dir())}
    env = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    env[allocator.ENV] = choice
    cmd = [sys.executable, "-m", "intentlab", *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0, done.stdout


def run(method: str, choice: str, data: Path | None, epochs: int, out: Path) -> dict[str, Any]:
    args = ["train", "--method", method, "--out", str(out)]
    if data is not None:
        args += ["--data", str(data), "--epochs", str(epochs), "--seed", "0"]
    wall, _ = intentlab(args, choice)
    record = json.loads((out / "result.json").read_text())
    epochs_ = record["train"]["epochs"]
    return {
        "wall": wall,
        "speeds": [e["train_examples_per_second"] for e in epochs_],
        "val_losses": [e["val_loss"] for e in epochs_],
        "test_accuracy": record["test"]["accuracy"],
        "peak_mb": record["train"]["peak_memory_mb"],
        "allocator": record["meta"].get("allocator", "not recorded"),
    }


SIDES = {"system": "glibc malloc", "auto": "tcmalloc"}


def commands(run_dir: Path, reps: int) -> None:
    """Whole `evaluate`, `predict`, `ood` and `export` processes on each allocator, alternating."""
    files = json.loads((run_dir / "result.json").read_text())["run"]["dataset"]["source"]["files"]
    test_csv = Path(files.get("test", files["train"])["path"])  # the file the run was tested on
    walls: dict[tuple[str, str], list[float]] = {}
    outputs: dict[tuple[str, str], set[str]] = {}
    with tempfile.TemporaryDirectory() as d:
        for rep in range(reps):
            for choice in list(SIDES) if rep % 2 == 0 else list(SIDES)[::-1]:
                tag = f"{choice}-{rep}"
                copy = Path(d) / f"run-{tag}"
                shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("ood", "checkpoint"))
                pred = Path(d) / f"pred-{tag}.csv"
                jobs = {
                    "evaluate (test split)": ["evaluate", str(run_dir), "--json"],
                    "predict (test CSV)": [
                        "predict",
                        str(run_dir),
                        "--input",
                        str(test_csv),
                        "--output",
                        str(pred),
                    ],
                    "ood (fit scorers)": ["ood", str(copy)],
                    "export --merge --onnx": [
                        "export",
                        str(run_dir),
                        "--out",
                        str(Path(d) / f"export-{tag}"),
                        "--merge",
                        "--onnx",
                    ],
                }
                for name, args in jobs.items():
                    wall, stdout = intentlab(args, choice)
                    walls.setdefault((name, choice), []).append(wall)
                    if name.startswith("evaluate"):
                        outputs.setdefault((name, choice), set()).add(stdout.strip().splitlines()[-1])
                    if name.startswith("predict"):
                        outputs.setdefault((name, choice), set()).add(pred.read_text())
                    print(f"rep {rep} {SIDES[choice]:>12}: {name} {wall:.1f} s", flush=True)
    rows = []
    for name in jobs:
        glibc, tc = median(walls[(name, "system")]), median(walls[(name, "auto")])
        same = ""
        if (name, "auto") in outputs:
            both = outputs[(name, "system")] | outputs[(name, "auto")]
            same = "yes" if len(both) == 1 else "NO"
        rows.append([name, f"{glibc:.1f}", f"{tc:.1f}", f"**{glibc / tc:.2f}×**", same])
    print(f"\n{run_dir}: whole commands, medians of {reps} alternating pairs")
    print(table(["command", "glibc malloc (s)", "tcmalloc (s)", "glibc / tcmalloc", "same output"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="full")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--examples", type=int, default=2048, help="0: the whole Banking77 training split")
    ap.add_argument("--epochs", type=int, default=3, help="with --examples > 0 (else the shipped budget)")
    ap.add_argument("--run", type=Path, help="time evaluate/predict/ood/export on this trained run instead")
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
    if args.run is not None:
        commands(args.run, args.reps)
        return
    sides = SIDES
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
                    "train ex/s (epochs after the first)" if args.epochs > 1 else "train ex/s (one epoch)",
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
