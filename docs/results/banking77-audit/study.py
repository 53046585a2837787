"""The audit study: does `intentlab audit` find label noise whose answer is known, and does training on
its cleaned copy win back what the noise cost? Then the same audit on the real Banking77.

    python docs/results/banking77-audit/study.py --data-dir ../shared/data/banking77 --work runs/audit-study

1. Banking77's training split (9,000 rows; validation and test as intentlab splits them) gets 5% or 10%
   of its labels flipped, with 3 seeds each, in two ways: uniformly to another intent, or
   realistically, to the intent a model finds most likely for that text besides its own (from
   out-of-fold probabilities of the clean data: the hardest errors to see).
2. Each noisy copy is audited (`intentlab audit`, its defaults), and the rows it flags as label issues
   are scored against the flipped rows: precision, recall, F1.
3. The shipped LoRA is trained on each noisy copy and on its cleaned copy (`--write-clean`: flagged
   label issues and conflicting duplicates dropped), seed 42, and on the original data (3 seeds), all
   with the same validation and test files, by `intentlab compare` with the plan this script writes.
4. The real training split is audited and cleaned the same way, and LoRA trained on it (3 seeds).

Writes WORK/{data,audits,runs}, then results.json and results.md beside this script, and copies the
audit of the real data (report, issues.csv) and the run records (no weights, no test texts) here.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from records import keep_records  # noqa: E402  (docs/results/records.py)

RATES = (0.05, 0.10)
KINDS = ("uniform", "realistic")
SEEDS = (42, 43, 44)


def write(path: Path, texts: list[str], labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(zip(texts, labels, strict=True))


def flip(
    labels: list[str], classes: list[str], probs: np.ndarray, kind: str, rate: float, seed: int
) -> dict[int, str]:
    """Rows to flip -> their wrong label: uniformly another intent, or the most likely other one."""
    rng = np.random.default_rng([seed, int(rate * 1000), KINDS.index(kind)])
    rows = rng.choice(len(labels), round(rate * len(labels)), replace=False)
    out = {}
    for i in rows.tolist():
        own = classes.index(labels[i])
        if kind == "uniform":
            other = rng.choice([c for c in range(len(classes)) if c != own])
        else:
            p = probs[i].copy()
            p[own] = -1
            other = int(p.argmax())
        out[i] = classes[int(other)]
    return out


def audit(folder: Path, out: Path, clean: Path, relabel: bool = False) -> list[int]:
    """`intentlab audit` of folder/train.csv (test.csv for leaks); returns the 0-based rows it flags
    as label issues, most certain first (issues.csv's order). The cleaned copy (`--relabel`: relabelled instead of dropped) gets the untouched
    validation file."""
    if not (out / "summary.json").is_file():
        argv = ["audit", "--data", str(folder), "--out", str(out), "--write-clean", str(clean)]
        subprocess.run(
            [sys.executable, "-m", "intentlab", *argv, *(["--relabel"] if relabel else [])], check=True
        )
    with open(out / "issues.csv", encoding="utf-8") as f:
        return [int(r["row"]) - 1 for r in csv.DictReader(f) if r["issue"] == "label"]


def precision_at_recall(ranked: list[int], truth: set[int], recall: float) -> float | None:
    """Precision of the shortest head of the ranked flags that reaches `recall` of `truth` (None: the
    flags never reach it)."""
    hits = 0
    for k, row in enumerate(ranked, start=1):
        hits += row in truth
        if hits >= recall * len(truth):
            return hits / k
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument(
        "--no-train",
        action="store_true",
        help="audit only, and summarize the runs that exist (the others are reported as not run)",
    )
    args = ap.parse_args()
    from intentlab.audit.crossval import head_probabilities
    from intentlab.audit.features import encoder_features
    from intentlab.config import resolve
    from intentlab.data import dataset_for

    work = Path(args.work).resolve()
    ds = dataset_for(resolve("lora", None, {"data_dir": args.data_dir}))
    classes = ds.labels
    base = work / "data" / "original"
    for name, split in (("train", ds.train), ("validation", ds.validation), ("test", ds.test)):
        write(base / f"{name}.csv", split.texts, split.labels)
    probs_file = work / "clean_oof.npy"
    if not probs_file.is_file():  # out-of-fold probabilities of the clean data, for the realistic flips
        features = encoder_features(ds.train.texts, resolve("head", None, {}))
        y = np.asarray([classes.index(label) for label in ds.train.labels])
        np.save(probs_file, head_probabilities(features, y, 5, 42))
    probs = np.load(probs_file)

    settings, plan = (
        [],
        {"methods": ["original"], "seeds": 1, "original": {"config": "lora", "data": str(base), "seeds": 3}},
    )
    for kind in KINDS:
        for rate in RATES:
            for seed in SEEDS:
                name = f"{kind}-{round(rate * 100):02d}pct-s{seed}"
                flips = flip(ds.train.labels, classes, probs, kind, rate, seed)
                labels = [flips.get(i, y) for i, y in enumerate(ds.train.labels)]
                noisy, clean = work / "data" / name, work / "data" / f"{name}-clean"
                audit_in = work / "audit-in" / name
                write(noisy / "train.csv", ds.train.texts, labels)
                write(audit_in / "train.csv", ds.train.texts, labels)
                for f in ("validation.csv", "test.csv"):
                    shutil.copyfile(base / f, noisy / f)
                shutil.copyfile(base / "test.csv", audit_in / "test.csv")
                ranked = audit(audit_in, work / "audits" / name, clean)
                flagged = set(ranked)
                shutil.copyfile(base / "validation.csv", clean / "validation.csv")
                truth = set(flips)
                hit = len(flagged & truth)
                settings.append(
                    {
                        "name": name,
                        "kind": kind,
                        "rate": rate,
                        "seed": seed,
                        "flipped": len(truth),
                        "flagged": len(flagged),
                        "precision": hit / max(len(flagged), 1),
                        "recall": hit / len(truth),
                        "f1": 2 * hit / max(len(flagged) + len(truth), 1),
                        # the same flags read as a ranking: precision where they reach 80% / 60% recall
                        "precision_at_recall_80": precision_at_recall(ranked, truth, 0.8),
                        "precision_at_recall_60": precision_at_recall(ranked, truth, 0.6),
                    }
                )
                plan["methods"] += [f"{name}-noisy", f"{name}-clean"]
                plan[f"{name}-noisy"] = {"config": "lora", "data": str(noisy)}
                plan[f"{name}-clean"] = {"config": "lora", "data": str(clean)}
                if rate == max(RATES):  # and relabelled instead of dropped
                    relabelled = work / "data" / f"{name}-relabel"
                    audit(audit_in, work / "audits" / f"{name}-relabel", relabelled, relabel=True)
                    shutil.copyfile(base / "validation.csv", relabelled / "validation.csv")
                    plan["methods"].append(f"{name}-relabel")
                    plan[f"{name}-relabel"] = {"config": "lora", "data": str(relabelled)}
    real_in = work / "audit-in" / "real"
    for f in ("train.csv", "test.csv"):
        real_in.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base / f, real_in / f)
    audit(real_in, work / "audits" / "real", work / "data" / "real-clean")
    shutil.copyfile(base / "validation.csv", work / "data" / "real-clean" / "validation.csv")
    plan["methods"].append("real-clean")
    plan["real-clean"] = {"config": "lora", "data": str(work / "data" / "real-clean"), "seeds": 3}
    import yaml

    (work / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    if args.no_train:
        summarize(work, settings)
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "intentlab",
            "compare",
            "--plan",
            str(work / "plan.yaml"),
            "--out",
            str(work / "runs"),
            "--no-report",
        ],
        check=True,
    )
    summarize(work, settings)


def accuracy(work: Path, name: str) -> list[float]:
    return [
        json.loads(p.read_text())["test"]["accuracy"]
        for p in sorted((work / "runs" / name).glob("seed-*/result.json"))
    ]


def summarize(work: Path, settings: list[dict]) -> None:
    original = float(np.mean(accuracy(work, "original")))
    for s in settings:
        noisy = (accuracy(work, f"{s['name']}-noisy") or [None])[0]
        clean = (accuracy(work, f"{s['name']}-clean") or [None])[0]  # None: not trained (--no-train)
        lost = original - noisy if noisy is not None else 0
        s.update(
            noisy_accuracy=noisy,
            clean_accuracy=clean,
            recovered=(clean - noisy) / lost if lost > 0 and clean is not None else None,
        )
        relabel = accuracy(work, f"{s['name']}-relabel")
        if relabel and noisy is not None:
            s.update(
                relabel_accuracy=relabel[0],
                recovered_relabel=(relabel[0] - noisy) / lost if lost > 0 else None,
            )
    real = json.loads((work / "audits" / "real" / "summary.json").read_text())
    results = {
        "original_accuracy": accuracy(work, "original"),
        "real_clean_accuracy": accuracy(work, "real-clean"),
        "real_audit": {
            k: real[k] for k in ("rows", "counts", "flagged_rows", "out_of_fold_accuracy", "seconds")
        },
        "settings": settings,
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        f"LoRA on the original data: {100 * original:.2f}% (mean of 3 seeds). Recovered: the share of the accuracy "
        "lost to the noise that training on the cleaned copy wins back, (cleaned - noisy) / (original - noisy).",
        "",
        "| noise | rate | flipped | flagged | precision | recall | F1 | P at R 0.8 | P at R 0.6 | LoRA noisy "
        "| LoRA cleaned | recovered | LoRA relabelled | recovered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        for rate in RATES:
            rows = [s for s in settings if s["kind"] == kind and s["rate"] == rate]

            def ms(key: str, scale: float = 1.0, rows: list = rows) -> str:
                v = [r[key] * scale for r in rows if r.get(key) is not None]
                if not v:
                    return "not reached" if key.startswith("precision_at") else "not run"
                shown = f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
                return shown + (f" ({len(v)} of {len(rows)})" if len(v) < len(rows) else "")

            def pct(key: str, ms=ms) -> str:  # a share in percent
                shown = ms(key, 100)
                return (
                    shown
                    if shown == "not run"
                    else shown.replace(" (", "% (", 1)
                    if " (" in shown
                    else shown + "%"
                )

            lines.append(
                f"| {kind} | {rate:.0%} | {rows[0]['flipped']} | {ms('flagged')} | {ms('precision')} | {ms('recall')} | "
                f"{ms('f1')} | {ms('precision_at_recall_80')} | {ms('precision_at_recall_60')} | {ms('noisy_accuracy', 100)} | {ms('clean_accuracy', 100)} | {pct('recovered')} | "
                f"{ms('relabel_accuracy', 100)} | {pct('recovered_relabel')} |"
            )
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    real_out = HERE / "real-audit"
    real_out.mkdir(exist_ok=True)
    for f in ("report.md", "report.html", "issues.csv", "summary.json"):
        shutil.copyfile(work / "audits" / "real" / f, real_out / f)
    shutil.copytree(work / "audits" / "real" / "charts", real_out / "charts", dirs_exist_ok=True)
    keep_records(work / "runs", HERE / "runs")  # the records, without weights or test texts
    print((HERE / "results.md").read_text())


if __name__ == "__main__":
    main()
