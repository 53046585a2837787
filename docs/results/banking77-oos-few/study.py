"""Choosing the out-of-scope scorer when validation holds few out-of-scope rows.

    python docs/results/banking77-oos-few/study.py --oos-dir ../shared/data/banking77-oos --work runs/oos-few

One LoRA run (seed 42) on BANKING77-OOS, set up as the committed study's (docs/results/banking77-oos). Its logits and features for every split are
computed once; then, for 20 draws of 100 of validation's 728 out-of-scope rows (id-oos and ood-oos in
their validation proportions, every in-scope row kept), the scorers are fitted and chosen twice:
- the rule before (`FEW_OOS = 0`): each scorer's threshold at its best validation macro-F1, the scorer
  with the best such F1;
- the rule shipped (`inference/ood.py: choose`): below 300 out-of-scope rows, the scorer with the best
  validation AUROC, thresholds keeping 95% of in-scope validation texts;
and each choice is measured on the whole test split. A last row uses validation's 728 rows (both rules
then agree: 728 is not few).

Writes WORK/, and results.json and results.md beside this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DRAWS = 20
KEPT = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oos-dir", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    work = Path(args.work)
    run = work / "lora-seed42"
    if not (run / "result.json").is_file():
        # as the committed BANKING77-OOS study trained LoRA (configs/compare/banking77-oos.yaml)
        cmd = ["train", "--method", "lora", "--data", args.oos_dir, "--group-column", "source", "--no-bf16"]
        cmd += ["--pooling", "mean", "--epochs", "5", "--seed", "42", "--out", str(run), "--overwrite"]
        subprocess.run([sys.executable, "-m", "intentlab", *cmd], check=True, stdout=subprocess.DEVNULL)

    from intentlab.data.run_data import run_dataset
    from intentlab.inference import calibration
    from intentlab.inference import ood as O
    from intentlab.inference.metrics import scorer_metrics
    from intentlab.inference.opener import open_run

    ds, cfg = run_dataset(run)
    predictor = open_run(run, ood=False)
    y = {s: np.asarray(ds.ids(ds.split(s))) for s in ("train", "validation", "test")}
    out = {s: predictor.outputs(ds.split(s).texts, True, progress=s) for s in y}
    groups = {s: np.asarray(ds.split(s).groups) for s in ("validation", "test")}
    val_oos = np.flatnonzero(y["validation"] < 0)
    val_in = np.flatnonzero(y["validation"] >= 0)

    def choose(rows: np.ndarray, few: int) -> dict:
        O.FEW_OOS = few
        yv, lv, fv = y["validation"][rows], out["validation"].logits[rows], out["validation"].features[rows]
        temperature = calibration.fit_temperature(lv, yv)
        state = O.fit(out["train"].features, y["train"], len(ds.labels), cfg.ood_k, temperature)
        state = O.choose(state, yv, lv, fv, cfg.ood_target_recall)
        name = state.chosen
        test = out["test"]
        m = scorer_metrics(
            y["test"],
            test.logits.argmax(1),
            state.score(name, test.logits, test.features),
            state.thresholds[name],
            list(groups["test"]),
        )
        return {
            "chosen": name,
            "auroc": m["auroc"],
            "auroc_id_oos": m["groups"]["id-oos"]["auroc"],
            "auroc_ood_oos": m["groups"]["ood-oos"]["auroc"],
            "oos_recall": m["oos_recall"],
            "recall_id_oos": m["groups"]["id-oos"]["recall"],
            "recall_ood_oos": m["groups"]["ood-oos"]["recall"],
            "inscope_accuracy_with_rejection": m["inscope_accuracy_with_rejection"],
            "inscope_kept": m["inscope_kept"],
        }

    shipped = O.FEW_OOS
    draws = []
    for draw in range(DRAWS):
        rng = np.random.default_rng(draw)
        picked = []
        for g in ("id-oos", "ood-oos"):  # each kind in its validation share
            pool = val_oos[groups["validation"][val_oos] == g]
            picked.append(rng.choice(pool, round(KEPT * len(pool) / len(val_oos)), replace=False))
        rows = np.sort(np.concatenate([val_in, *picked]))
        draws.append({"draw": draw, "before": choose(rows, 0), "shipped": choose(rows, shipped)})
    everything = {"before": choose(np.arange(len(y["validation"])), 0)}
    O.FEW_OOS = shipped
    results = {
        "run": str(run),
        "validation_oos_rows": len(val_oos),
        "kept": KEPT,
        "draws": draws,
        "all_rows": everything,
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (HERE / "results.md").write_text(table(results) + "\n")
    print(table(results))


def table(results: dict) -> str:
    keys = (
        ("oos_recall", "OOS caught"),
        ("recall_id_oos", "ID-OOS caught"),
        ("recall_ood_oos", "OOD-OOS caught"),
        ("inscope_accuracy_with_rejection", "in-scope acc. with rejection"),
        ("auroc_id_oos", "AUROC ID-OOS"),
        ("auroc_ood_oos", "AUROC OOD-OOS"),
    )
    lines = [
        f"| rule ({len(results['draws'])} draws of {results['kept']} validation OOS rows) | scorers chosen | "
        + " | ".join(label for _, label in keys)
        + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for rule, name in (
        ("before", "best validation macro-F1"),
        ("shipped", "best validation AUROC, keep 95%"),
    ):
        rows = [d[rule] for d in results["draws"]]
        chosen = {}
        for r in rows:
            chosen[r["chosen"]] = chosen.get(r["chosen"], 0) + 1
        cells = []
        for key, _ in keys:
            v = np.array([r[key] for r in rows])
            scale = 1 if key.startswith("auroc") else 100
            fmt = ".3f" if key.startswith("auroc") else ".1f"
            cells.append(
                f"{scale * v.mean():{fmt}} ± {scale * v.std():{fmt}} (worst {scale * v.min():{fmt}})"
            )
        picks = ", ".join(f"{k} {n}" for k, n in sorted(chosen.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {name} | {picks} | " + " | ".join(cells) + " |")
    a = results["all_rows"]["before"]
    cells = [f"{a[key]:.3f}" if key.startswith("auroc") else f"{100 * a[key]:.1f}" for key, _ in keys]
    lines.append(
        f"| all {results['validation_oos_rows']} rows, best validation macro-F1 | {a['chosen']} | "
        + " | ".join(cells)
        + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
