"""Time to accuracy: wall time until validation accuracy first passes the TF-IDF baseline's, for intentlab
and for the Hugging Face Trainer (+ PEFT) setup — so speed is never bought with accuracy.

    python benchmarks/time_to_accuracy.py [--methods lora,full] [--max-epochs 5] [--seeds 42,43,44]

Both sides train on the same Banking77 split (validation carved with intentlab's seeded split), with
intentlab's shipped hyper-parameters, evaluating after every epoch; each stops at the first epoch whose
validation accuracy is at least the baseline's (TF-IDF + linear SVM, fitted in the same run). Wall time
counts training and the per-epoch evaluations, not model loading. intentlab runs on the allocator
`intentlab train` picks (tcmalloc where installed), the Trainer on glibc's, as a user's own script
would; `--same-malloc` puts both on intentlab's.

The epoch at which a side first passes the bar moves with the seed (both sides' validation accuracy sits
near the bar around epochs 2-3), so one seed's ratio can move by an epoch's worth either way. `--seeds`
runs both sides once per seed (the seed of intentlab's run and of the Trainer's) and adds, per method,
the median of the seeds' ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import hf_reference as hf
from common import banking77_dir, isolated, machine, machine_kind, malloc_line, table


def encode(tok: Any, split: Any, label2id: dict[str, int]) -> list[dict[str, Any]]:
    ids = tok(split.texts, truncation=True, max_length=128)["input_ids"]
    return [
        {"input_ids": i, "attention_mask": [1] * len(i), "labels": label2id[y]}
        for i, y in zip(ids, split.labels, strict=True)
    ]


def describe(r: tuple[Any, float, float], max_epochs: int) -> str:
    if r[0]:
        return f"epoch {r[0]}, {r[1] / 60:.1f} min (val {r[2]:.4f})"
    return f"not in {max_epochs} epochs ({r[1] / 60:.1f} min, val {r[2]:.4f})"


def stop_at(floor: float, reached: dict[str, Any]) -> Any:
    """A Trainer callback that records when validation accuracy first reaches `floor`, and stops there."""
    from transformers import TrainerCallback

    class StopAtFloor(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.start = time.perf_counter()

        def on_evaluate(
            self, _args: Any, state: Any, control: Any, metrics: dict[str, float], **k: Any
        ) -> None:
            now = (round(state.epoch), time.perf_counter() - self.start, metrics["eval_accuracy"])
            reached["theirs_last"] = now
            if now[2] >= floor and "theirs" not in reached:
                reached["theirs"] = now
                control.should_training_stop = True

    return StopAtFloor()


def ours_time_to(method: str, floor: float, max_epochs: int, out: str, seed: int) -> tuple[Any, float, float]:
    """(epoch, seconds, validation accuracy) when intentlab's run first reaches `floor` (or its end)."""
    from intentlab.config import resolve
    from intentlab.models.loading import quiet_transformers
    from intentlab.training.loop import train

    quiet_transformers()
    cfg = resolve(method, None, {"data_dir": str(banking77_dir()), "epochs": max_epochs, "seed": seed})
    reached: dict[str, Any] = {}

    def stop_at_floor(row: Any) -> bool:
        if row.val_accuracy >= floor and "ours" not in reached:
            reached["ours"] = (row.epoch, row.elapsed_seconds, row.val_accuracy)
        return "ours" in reached

    res = train(cfg, out, progress=False, on_epoch=stop_at_floor)
    return reached.get("ours") or (None, res.train.train_seconds, res.train.best_val_accuracy)


def theirs_time_to(
    method: str, floor: float, max_epochs: int, out: str, seed: int
) -> tuple[Any, float, float]:
    """The same for the Trainer + PEFT reference."""
    from transformers import AutoTokenizer

    from intentlab.config import resolve
    from intentlab.data import load_dataset
    from intentlab.models.loading import quiet_transformers, resolve_model_path

    quiet_transformers()
    cfg = resolve(method, None, {"data_dir": str(banking77_dir()), "epochs": max_epochs, "seed": seed})
    ds = load_dataset("banking77", str(banking77_dir()))
    tok = AutoTokenizer.from_pretrained(resolve_model_path(cfg.model))
    reached: dict[str, Any] = {}
    t = hf.trainer(
        method,
        encode(tok, ds.train, ds.label2id),
        encode(tok, ds.validation, ds.label2id),
        len(ds.labels),
        cfg,
        Path(out),
        max_epochs,
        callbacks=[stop_at(floor, reached)],
    )
    t.train()
    return reached.get("theirs") or (None, *reached["theirs_last"][1:])


def main() -> None:
    from intentlab.data import load_dataset
    from intentlab.inference.metrics import metrics
    from intentlab.models import tfidf

    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--max-epochs", type=int, default=5)
    ap.add_argument(
        "--same-malloc", action="store_true", help="the Trainer on intentlab's allocator too (default: glibc)"
    )
    ap.add_argument("--seeds", default="42", help="comma-separated seeds, each run on both sides")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"machine: {machine()}")
    print(malloc_line(args.same_malloc))
    print(f"machine kind: {machine_kind()} (intentlab picks bf16 where it is fast; the Trainer runs fp32)")
    ds = load_dataset("banking77", str(banking77_dir()))
    pipe = tfidf.make_pipeline().fit(ds.train.texts, ds.ids(ds.train))
    floor = metrics(ds.ids(ds.validation), tfidf.margins(pipe, ds.validation.texts))["accuracy"]
    print(f"TF-IDF baseline validation accuracy: {floor:.4f} (the target)")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for method in args.methods.split(","):  # each side in its own fresh process
            ratios = []
            for seed in seeds:
                run = f"{method}-{seed}"
                ours = isolated(ours_time_to, method, floor, args.max_epochs, str(Path(d) / run), seed)
                print(f"{method} seed {seed}: intentlab: {describe(ours, args.max_epochs)}", flush=True)
                theirs = isolated(
                    theirs_time_to,
                    method,
                    floor,
                    args.max_epochs,
                    str(Path(d) / f"hf-{run}"),
                    seed,
                    shipped_malloc=args.same_malloc,
                )
                print(f"{method} seed {seed}: Trainer: {describe(theirs, args.max_epochs)}", flush=True)
                ratio = theirs[1] / ours[1] if ours[0] and theirs[0] else None
                ratios.append(ratio)
                shown = f"**{ratio:.2f}×**" if ratio else "–"
                rows.append(
                    [
                        method,
                        str(seed),
                        describe(ours, args.max_epochs),
                        describe(theirs, args.max_epochs),
                        shown,
                    ]
                )
            if len(seeds) > 1:
                both = [r for r in ratios if r]
                mid = (
                    f"**{statistics.median(both):.2f}×** ({len(both)} of {len(seeds)} seeds)" if both else "–"
                )
                rows.append([method, "median", "", "", mid])
    print(f"\ntime until validation accuracy >= the TF-IDF baseline's {floor:.4f}")
    headers = ["method", "seed", "intentlab", "Trainer + PEFT defaults", "Trainer time / intentlab time"]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
