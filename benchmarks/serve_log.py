"""What `serve --log` costs: requests/s and latency with the traffic log on and off, side by side.

    python benchmarks/serve_log.py --run RUN [--clients 8] [--requests 1500] [--reps 3]

The same run is served twice per repetition, log off then on (alternating, so a shift in the
machine's speed hits both), each in its own `intentlab serve` process on loopback, with `--clients`
concurrent one-text clients sending Banking77 test texts. Reports the median requests/s of each side,
their ratio (the target: the log costs at most 5%), p50/p99 latencies, and what the log wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from common import banking77_dir, machine, table
from serving import load, start_server


def one(run: str, flags: list[str], texts: list[str], clients: int, requests: int) -> dict[str, float]:
    server, url = start_server(run, flags)
    try:
        asyncio.run(load(url, texts, clients, 100))  # warm-up
        lat, errors, wall = asyncio.run(load(url, texts, clients, requests))
        import httpx

        health = httpx.get(f"{url}/healthz").json()
    finally:
        server.terminate()
        server.wait(10)
    return {
        "rps": len(lat) / wall,
        "p50": float(np.percentile(lat, 50)) * 1000,
        "p99": float(np.percentile(lat, 99)) * 1000,
        "errors": errors,
        "dropped": health.get("traffic_log", {}).get("dropped", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with open(banking77_dir() / "test.csv", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    print(machine())
    results: dict[str, list[dict[str, float]]] = {"log off": [], "log on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            results["log off"].append(one(args.run, [], texts, args.clients, args.requests))
            log = Path(tmp) / f"logs-{rep}"
            results["log on"].append(one(args.run, ["--log", str(log)], texts, args.clients, args.requests))
            written = sum(len(p.read_text().splitlines()) for p in log.glob("traffic-*.jsonl*"))
            results["log on"][-1]["written"] = written
    rows = []
    for name, rs in results.items():
        rows.append(
            [
                name,
                f"{statistics.median(r['rps'] for r in rs):.1f}",
                f"{statistics.median(r['p50'] for r in rs):.1f}",
                f"{statistics.median(r['p99'] for r in rs):.1f}",
                str(sum(r["errors"] for r in rs)),
                str(sum(r.get("written", 0) for r in rs)),
                str(sum(r["dropped"] for r in rs)),
            ]
        )
    print(table(["server", "requests/s", "p50 ms", "p99 ms", "errors", "log lines", "dropped"], rows))
    ratio = statistics.median(r["rps"] for r in results["log on"]) / statistics.median(
        r["rps"] for r in results["log off"]
    )
    print(
        f"requests/s with the log / without: **{ratio:.3f}×** (median of {args.reps} alternating repetitions)"
    )
    print(json.dumps({k: v for k, v in results.items()}))


if __name__ == "__main__":
    main()
