"""The active-learning study: does `intentlab review` pick queries that teach the model more than
random ones, measured as labels saved?

    python docs/results/banking77-active-learning/study.py --data-dir ../shared/data/banking77 \\
        --oos-dir ../shared/data/banking77-oos --work runs/al-study

A simulated team, 3 seeds:
1. starts from 10 labelled texts per intent (770) of Banking77's training split (intentlab's split:
   9,000 train, 1,003 validation, 3,080 test, the same validation and test for every run);
2. treats the other 8,230 training texts as served traffic: they are written as an `intentlab serve
   --log` traffic log (serving/traffic_log.py);
3. in 5 rounds, labels 200 queries chosen by `intentlab review` (its default, hybrid) from that log,
   revealing their gold labels, and retrains the shipped LoRA with `--extra-data` (what a user does);
4. does the same with 200 chosen at random each round (`--strategy random`).
The BANKING77-OOS variant (one seed, the frozen-encoder head for speed) mixes the validation split's
out-of-scope queries into the traffic and reports the share of them in each round's picks.

Writes WORK/, then results.json and results.md beside this script, and copies the run records (no
weights, no test texts) here.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from records import keep_records  # noqa: E402  (docs/results/records.py)

SEEDS = (42, 43, 44)
ROUNDS = 5
BUDGET = 200
PER_INTENT = 10


def write(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "category")) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_log(folder: Path, texts: list[str]) -> None:
    """The traffic as `serve --log` writes it (one process's file)."""
    from intentlab.serving.traffic_log import TrafficLog

    log = TrafficLog(folder)
    for t in texts:
        log.record("bank", [t], [{"intents": [], "out_of_scope": None, "score": None}], 0.0)
    log.close()


def intentlab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "intentlab", *args], check=True, stdout=subprocess.DEVNULL)


def train(work: Path, name: str, data: Path, extra: Path | None, seed: int, method: str = "lora") -> Path:
    out = work / "runs" / name
    if not (out / "result.json").is_file():
        args = [
            "train",
            "--method",
            method,
            "--data",
            str(data),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--overwrite",
        ]
        intentlab(*args, *(["--extra-data", str(extra)] if extra else []))
    return out


def pick(log: Path, run: Path, out: Path, strategy: str, seed: int) -> tuple[list[str], float]:
    """The texts `intentlab review` picks (and the seconds it took)."""
    t0 = time.perf_counter()
    if not (out / "review.csv").is_file():
        intentlab(
            "review",
            str(log),
            "--run",
            str(run),
            "--out",
            str(out),
            "--budget",
            str(BUDGET),
            "--strategy",
            strategy,
            "--seed",
            str(seed),
            "--overwrite",
        )
    seconds = (
        json.loads((out / "summary.json").read_text())["seconds"]
        if (out / "summary.json").is_file()
        else time.perf_counter() - t0
    )
    with open(out / "review.csv", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)], seconds


def simulate(
    work: Path, base: Path, pool: dict[str, str], seed: int, strategy: str, method: str, tag: str
) -> dict:
    """Rounds of review (or random picks) and retraining; accuracy and picks per round."""
    log = work / "logs" / tag
    if not log.is_dir():
        write_log(log, list(pool))
    labelled: dict[str, str] = {}
    run = train(work, f"{tag}/round-0", base, None, seed, method)
    curve = [json.loads((run / "result.json").read_text())["test"]["accuracy"]]
    picks_oos, seconds = [], []
    for r in range(1, ROUNDS + 1):
        texts, secs = pick(log, run, work / "reviews" / tag / f"round-{r}", strategy, seed + r)
        seconds.append(secs)
        picks_oos.append(sum(pool.get(t) == "oos" for t in texts) / max(len(texts), 1))
        labelled.update({t: pool[t] for t in texts if t in pool})
        extra = work / "labels" / tag / f"round-{r}.csv"
        write(extra, [(t, y) for t, y in labelled.items()], ("text", "label"))
        run = train(work, f"{tag}/round-{r}", base, extra, seed, method)
        curve.append(json.loads((run / "result.json").read_text())["test"]["accuracy"])
    return {
        "accuracy": curve,
        "labels": [BUDGET * r for r in range(ROUNDS + 1)],
        "oos_share": picks_oos,
        "review_seconds": seconds,
    }


def split_folder(work: Path, ds, name: str, train_rows: list[tuple[str, str]]) -> Path:
    folder = work / "data" / name
    write(folder / "train.csv", train_rows)
    write(folder / "validation.csv", list(zip(ds.validation.texts, ds.validation.labels, strict=True)))
    write(folder / "test.csv", list(zip(ds.test.texts, ds.test.labels, strict=True)))
    return folder


def initial(texts: list[str], labels: list[str], seed: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng([seed, 10])
    first, rest = [], []
    for y in sorted(set(labels)):
        idx = [i for i, label in enumerate(labels) if label == y]
        idx = [idx[j] for j in rng.permutation(len(idx))]
        first += idx[:PER_INTENT]
        rest += idx[PER_INTENT:]
    return sorted(first), sorted(rest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--oos-dir", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated (default: 42,43,44)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    from intentlab.config import resolve
    from intentlab.data import dataset_for

    work = Path(args.work).resolve()
    ds = dataset_for(resolve("lora", None, {"data_dir": args.data_dir}))
    results: dict = {"banking77": {}, "oos": {}}
    for seed in seeds:
        first, rest = initial(ds.train.texts, ds.train.labels, seed)
        base = split_folder(
            work, ds, f"seed-{seed}", [(ds.train.texts[i], ds.train.labels[i]) for i in first]
        )
        pool = {ds.train.texts[i]: ds.train.labels[i] for i in rest}
        for strategy in ("hybrid", "random"):
            tag = f"{strategy}/seed-{seed}"
            if strategy == "random":  # round 0 is the same run for both strategies
                src = work / "runs" / f"hybrid/seed-{seed}" / "round-0"
                dst = work / "runs" / tag / "round-0"
                if src.is_dir() and not dst.is_dir():
                    shutil.copytree(src, dst)
            results["banking77"][tag] = simulate(work, base, pool, seed, strategy, "lora", tag)
    oos = dataset_for(resolve("head", None, {"data": args.oos_dir}))
    first, rest = initial(oos.train.texts, oos.train.labels, 42)
    base = split_folder(work, oos, "oos", [(oos.train.texts[i], oos.train.labels[i]) for i in first])
    pool = {oos.train.texts[i]: oos.train.labels[i] for i in rest}
    pool.update(
        {t: "oos" for t, y in zip(oos.validation.texts, oos.validation.labels, strict=True) if y == "oos"}
    )
    for strategy in ("hybrid", "random"):
        results["oos"][strategy] = simulate(work, base, pool, 42, strategy, "head", f"oos-{strategy}")
    results["oos"]["pool_oos_share"] = sum(y == "oos" for y in pool.values()) / len(pool)
    summarize(work, results, seeds)


def labels_to_reach(curve: list[float], labels: list[int], target: float) -> float | None:
    """Labels at which `curve` first reaches `target` (linear between rounds); None if it never does."""
    for k in range(1, len(curve)):
        if curve[k] >= target:
            a, b = curve[k - 1], curve[k]
            frac = 1.0 if b == a else (target - a) / (b - a)
            return labels[k - 1] + max(0.0, min(1.0, frac)) * (labels[k] - labels[k - 1])
    return None


def summarize(work: Path, results: dict, seeds: list[int]) -> None:
    from scipy import stats

    curves = {
        s: np.array([results["banking77"][f"{s}/seed-{seed}"]["accuracy"] for seed in seeds])
        for s in ("hybrid", "random")
    }
    labels = [BUDGET * r for r in range(ROUNDS + 1)]
    target = float(curves["random"][:, -1].mean())
    needed = labels_to_reach(list(curves["hybrid"].mean(axis=0)), labels, target)
    per_seed = [
        labels_to_reach(list(curves["hybrid"][k]), labels, float(curves["random"][k, -1]))
        for k in range(len(seeds))
    ]
    rounds = []
    for r in range(ROUNDS + 1):
        h, rnd = curves["hybrid"][:, r], curves["random"][:, r]
        p = (
            float(stats.ttest_rel(h, rnd).pvalue)
            if r and len(seeds) > 1 and not np.allclose(h, rnd)
            else None
        )
        rounds.append(
            {"round": r, "labels": labels[r], "review": h.tolist(), "random": rnd.tolist(), "paired_t_p": p}
        )
    review_seconds = [
        s for k, v in results["banking77"].items() if k.startswith("hybrid") for s in v["review_seconds"]
    ]
    out = {
        "seeds": seeds,
        "rounds": rounds,
        "random_final_accuracy": target,
        "labels_for_review_to_match_random_final": needed,
        "labels_per_seed": per_seed,
        "review_seconds": review_seconds,
        "oos": results["oos"],
    }
    (HERE / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = ["| round | labels | review (hybrid) | random | paired t-test p |", "|---|---|---|---|---|"]

    def fmt(v: list[float]) -> str:
        spread = f" ± {100 * np.std(v, ddof=1):.2f}" if len(v) > 1 else ""
        return f"{100 * np.mean(v):.2f}{spread}"

    for r in rounds:
        p = "–" if r["paired_t_p"] is None else f"{r['paired_t_p']:.3f}"
        lines.append(f"| {r['round']} | {r['labels']} | {fmt(r['review'])} | {fmt(r['random'])} | {p} |")
    oos = results["oos"]
    lines += ["", "| round | out-of-scope share of review's picks | of random picks |", "|---|---|---|"]
    for r in range(ROUNDS):
        lines.append(
            f"| {r + 1} | {100 * oos['hybrid']['oos_share'][r]:.1f}% | {100 * oos['random']['oos_share'][r]:.1f}% |"
        )
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    keep_records(work / "runs", HERE / "runs")  # the records, without weights or test texts
    print((HERE / "results.md").read_text())
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "random_final_accuracy",
                    "labels_for_review_to_match_random_final",
                    "labels_per_seed",
                )
            }
        )
    )


if __name__ == "__main__":
    main()
