"""One setting changed against a method's shipped config: training examples/s of both, alternating.

    python benchmarks/setting_ab.py --method full --set train_word_embeddings=true [--reps 5] [--examples 1024]

Both sides train one epoch on the same shuffled Banking77 subset with the same seed, each run in its own
fresh process, the two sides alternating `--reps` times (which side goes first alternates too), so slow
spells of a shared machine fall on both. Prints every repetition, then the medians and the ratio
shipped / changed. Speed only: one short epoch says nothing about accuracy (measure that with
`intentlab compare` over seeds).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from common import isolated, machine, machine_kind, median, subset, table, train_epoch_stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="full")
    ap.add_argument("--set", dest="settings", action="append", required=True, help="KEY=VALUE (YAML value)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--examples", type=int, default=1024)
    args = ap.parse_args()
    changed = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        parsed = yaml.safe_load(value)
        changed[key.strip()] = "null" if parsed is None else parsed  # resolve() drops None (= not given)
    from intentlab.config import resolve

    if resolve(args.method, None, changed) == resolve(args.method, None, {}):
        ap.error(f"--set {' '.join(args.settings)} changes nothing in the shipped {args.method} config")
    label = ", ".join(f"{k}={v}" for k, v in changed.items())
    print(f"machine: {machine()}")
    print(f"machine kind: {machine_kind()}")
    speeds: dict[str, list[float]] = {"shipped": [], label: []}
    with tempfile.TemporaryDirectory() as d:
        data = subset(args.examples, Path(d) / "data")
        for rep in range(args.reps):
            sides = [("shipped", {}), (label, changed)]
            for name, extra in sides if rep % 2 == 0 else sides[::-1]:
                overrides = {"data": str(data), "epochs": 1, "seed": 0, **extra}
                row = isolated(
                    train_epoch_stats, args.method, overrides, str(Path(d) / f"{rep}-{len(extra)}")
                )
                speeds[name].append(row["train_examples_per_second"])
            print(
                f"rep {rep}: shipped {speeds['shipped'][-1]:.1f} ex/s, {label} {speeds[label][-1]:.1f} ex/s",
                flush=True,
            )
    shipped, other = median(speeds["shipped"]), median(speeds[label])
    print(f"\n{args.method}, training examples/s, median of {args.reps}, {args.examples} examples, one epoch")
    print(
        table(
            ["shipped", label, "ratio shipped / changed"],
            [[f"{shipped:.1f}", f"{other:.1f}", f"**{shipped / other:.2f}×**"]],
        )
    )


if __name__ == "__main__":
    main()
