"""Does bf16 cost accuracy? bf16 against fp32 training for LoRA and full fine-tuning over 3 seeds.

    python benchmarks/precision.py [--methods lora,full] [--seeds 3] [--epochs 5]
                                   [--reuse-fp32 RUNS_DIR] [--reuse-bf16 RUNS_DIR]

Runs only where bf16 is fast (AVX512-BF16/AMX CPUs, CUDA); elsewhere it says so and exits 0 (bf16 is
emulated there and never the default). Each run trains the shipped config on Banking77 in its own
process; validation and test accuracy are compared across seeds with the report's paired tests
(bootstrap over test texts, McNemar, Welch's t-test over seeds). `--reuse-fp32` takes the fp32 side
from existing run folders of the same configs (e.g. docs/results/banking77/runs), `--reuse-bf16` the
bf16 side (e.g. a `compare` folder trained where bf16 is the automatic choice); a reused run whose
record says another precision is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import banking77_dir, isolated, machine, machine_kind, table


def one_run(method: str, seed: int, bf16: bool, epochs: int, out: str) -> dict[str, Any]:
    from intentlab.config import resolve
    from intentlab.models.loading import quiet_transformers
    from intentlab.training.loop import train

    quiet_transformers()
    cfg = resolve(
        method, None, {"data_dir": str(banking77_dir()), "seed": seed, "bf16": bf16, "epochs": epochs}
    )
    res = train(cfg, out, progress=False)
    preds = json.loads((Path(out) / "test_predictions.json").read_text())
    return {
        "val": res.train.best_val_accuracy,
        "test": res.test.accuracy,
        "y_true": preds["y_true"],
        "y_pred": preds["y_pred"],
        "seconds": res.train.train_seconds,
    }


def recorded(folder: Path, bf16: bool) -> dict[str, Any]:
    result = json.loads((folder / "result.json").read_text())
    if bool(result["run"]["config"].get("bf16")) != bf16:
        sys.exit(f"{folder} was not trained in {'bf16' if bf16 else 'fp32'}; point --reuse-* elsewhere.")
    preds = json.loads((folder / "test_predictions.json").read_text())
    return {
        "val": result["train"]["best_val_accuracy"],
        "test": result["test"]["accuracy"],
        "y_true": preds["y_true"],
        "y_pred": preds["y_pred"],
        "seconds": result["train"]["train_seconds"],
    }


def main() -> None:
    import numpy as np

    from intentlab.hardware import default_device_type, fast_bf16
    from intentlab.reporting.stats import compare_predictions

    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--reuse-fp32", help="folder with METHOD/seed-N fp32 runs of the same configs")
    ap.add_argument("--reuse-bf16", help="folder with METHOD/seed-N bf16 runs of the same configs")
    args = ap.parse_args()
    print(f"machine: {machine()}\nmachine kind: {machine_kind()}")
    if not fast_bf16(default_device_type()):
        print(
            "bf16 is not fast on this machine (emulated): intentlab never picks it here, nothing to compare."
        )
        sys.exit(0)
    rows, summary = [], {}
    with tempfile.TemporaryDirectory() as d:
        for method in args.methods.split(","):
            runs: dict[str, list[dict[str, Any]]] = {"bf16": [], "fp32": []}
            for i in range(args.seeds):
                seed = 42 + i
                for precision in ("bf16", "fp32"):
                    given = args.reuse_bf16 if precision == "bf16" else args.reuse_fp32
                    reuse = Path(given or "") / method / f"seed-{seed}"
                    if given and (reuse / "result.json").is_file():
                        r = recorded(reuse, precision == "bf16")
                    else:
                        out = str(Path(d) / f"{method}-{precision}-{seed}")
                        r = isolated(one_run, method, seed, precision == "bf16", args.epochs, out)
                    runs[precision].append(r)
                    print(
                        f"{method} seed {seed} {precision}: val {r['val']:.4f}, test {r['test']:.4f}, "
                        f"{r['seconds'] / 60:.1f} min",
                        flush=True,
                    )
            t = compare_predictions(
                runs["bf16"][0]["y_true"],
                [r["y_pred"] for r in runs["bf16"]],
                [r["y_pred"] for r in runs["fp32"]],
            )
            mean = {
                p: (np.mean([r["test"] for r in rs]), np.std([r["test"] for r in rs], ddof=1))
                for p, rs in runs.items()
            }
            val = {p: np.mean([r["val"] for r in rs]) for p, rs in runs.items()}
            verdict = "a real difference" if t.significant else "within noise"
            summary[method] = verdict
            rows.append(
                [
                    method,
                    f"{100 * val['bf16']:.2f} / {100 * val['fp32']:.2f}",
                    f"{100 * mean['bf16'][0]:.2f} ± {100 * mean['bf16'][1]:.2f}",
                    f"{100 * mean['fp32'][0]:.2f} ± {100 * mean['fp32'][1]:.2f}",
                    f"{100 * t.diff:+.2f} [{100 * t.low:+.2f}, {100 * t.high:+.2f}]",
                    f"{t.p_mcnemar:.3g}",
                    "–" if t.p_seeds is None else f"{t.p_seeds:.3g}",
                    verdict,
                ]
            )
    print(f"\nbf16 against fp32, {args.seeds} seeds each, Banking77, shipped configs, {args.epochs} epochs")
    print(
        table(
            [
                "method",
                "best val acc bf16 / fp32 (%)",
                "test acc bf16 (%)",
                "test acc fp32 (%)",
                "difference (points, 95% CI)",
                "McNemar p",
                "Welch p (seeds)",
                "verdict",
            ],
            rows,
        )
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
