"""Training throughput: intentlab's loop against the Hugging Face Trainer + PEFT setup a user would write.

    python benchmarks/throughput.py [--examples 1024] [--reps 3] [--methods full,lora]

Same model (packaged all-MiniLM-L6-v2), same method and hyper-parameters (intentlab's shipped configs),
same batch size (32), same data (a shuffled Banking77 subset), one epoch, no evaluation. The two sides
run alternately `--reps` times; the medians of training examples per second are compared and the ratio
intentlab / Trainer is printed. intentlab runs on the allocator `intentlab train` picks (tcmalloc where
installed), the Trainer on glibc's, as a user's own script would; `--same-malloc` puts both on
intentlab's. `--fp32` trains intentlab in fp32 too (as it does on a CPU without fast bf16), which shows
on any machine how much of the ratio is bf16's. The reference is described in benchmarks/hf_reference.py.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import hf_reference as hf
from common import isolated, machine, machine_kind, malloc_line, median, subset, table, train_epoch_stats


def trainer_examples_per_second(method: str, data: str, out: str, seed: int) -> float:
    """One epoch of the Trainer + PEFT reference (in whatever process calls this)."""
    from transformers import AutoTokenizer

    from intentlab.config import resolve
    from intentlab.models.loading import quiet_transformers, resolve_model_path

    quiet_transformers()
    cfg = resolve(method, None, {"data": data, "epochs": 1, "seed": seed})
    tok = AutoTokenizer.from_pretrained(resolve_model_path(cfg.model))
    labels = hf.labels_of(Path(data) / "train.csv")
    train_rows = hf.load_split(Path(data) / "train.csv", tok, {lab: i for i, lab in enumerate(labels)})
    _, metrics = hf.timed_train(hf.trainer(method, train_rows, None, len(labels), cfg, Path(out), 1))
    return float(metrics["train_samples_per_second"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--methods", default="full,lora")
    ap.add_argument(
        "--same-malloc", action="store_true", help="the Trainer on intentlab's allocator too (default: glibc)"
    )
    ap.add_argument(
        "--fp32", action="store_true", help="intentlab in fp32 too (default: bf16 where it is fast)"
    )
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(malloc_line(args.same_malloc))
    picks = "fp32 (--fp32)" if args.fp32 else "bf16 where it is fast"
    print(f"machine kind: {machine_kind()} (intentlab: {picks}; the Trainer runs fp32)")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        data = subset(args.examples, Path(d) / "data")
        for method in args.methods.split(","):
            ours, theirs = [], []
            for rep in range(args.reps):  # each side of each rep in its own fresh process
                overrides = {
                    "data": str(data),
                    "epochs": 1,
                    "seed": rep,
                    **({"bf16": False} if args.fp32 else {}),
                }
                row = isolated(train_epoch_stats, method, overrides, str(Path(d) / f"{method}-{rep}"))
                ours.append(row["train_examples_per_second"])
                theirs.append(
                    isolated(
                        trainer_examples_per_second,
                        method,
                        str(data),
                        str(Path(d) / f"hf-{method}-{rep}"),
                        rep,
                        shipped_malloc=args.same_malloc,
                    )
                )
                print(
                    f"{method} rep {rep}: intentlab {ours[-1]:.1f} ex/s ({'bf16' if row['bf16'] else 'fp32'}), "
                    f"Trainer {theirs[-1]:.1f} ex/s",
                    flush=True,
                )
            rows.append(
                [
                    method,
                    f"{median(ours):.1f}",
                    f"{median(theirs):.1f}",
                    f"**{median(ours) / median(theirs):.2f}×**",
                ]
            )
    print(
        f"\ntraining examples/s, median of {args.reps}, {args.examples} Banking77 examples, batch 32, one epoch"
    )
    print(table(["method", "intentlab", "Trainer + PEFT defaults", "ratio intentlab / Trainer"], rows))


if __name__ == "__main__":
    main()
