"""Serving: latency and throughput under concurrent clients on loopback, and the memory of N adapters on
one base against N separate full models.

    python benchmarks/serving.py --lora RUN --full RUN [--clients 8] [--requests 2000]

Load: `intentlab serve` runs in its own process; an asyncio + httpx load generator keeps `--clients`
requests in flight until `--requests` have been answered (one Banking77 test text each). Reported: errors,
p50/p99 latency, requests/s, and the server's resident memory before and after (stable memory).
Memory: for N = 1, 4, 16, a fresh process loads N copies of the LoRA run as named adapters on one shared
base, or N copies of the full run as separate models; its resident memory is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import banking77_dir, machine, table

LOAD_N = """
import json, resource, sys
from intentlab.serving.registry import Registry
from intentlab.models.classifier import quiet_transformers
quiet_transformers()
reg = Registry()
for i, run in enumerate(sys.argv[1:]):
    reg.load(f"m{i}", run)
    reg.predict(f"m{i}", ["warm up"], 1)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "bases": len(reg.bases)}))
"""


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def load(url: str, texts: list[str], clients: int, requests: int) -> tuple[list[float], int]:
    import httpx

    lat: list[float] = []
    errors = 0
    todo = iter(range(requests))

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in todo:
            t0 = time.perf_counter()
            r = await c.post(f"{url}/v1/predict", json={"texts": [texts[i % len(texts)]], "top_k": 3})
            lat.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    async with httpx.AsyncClient(timeout=60) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return lat, errors


def main() -> None:
    from intentlab.data import load_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--lora", required=True, help="a LoRA run folder")
    ap.add_argument("--full", required=True, help="a full fine-tuning run folder")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    texts = load_dataset("banking77", str(banking77_dir())).test.texts
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "intentlab", "serve", args.lora, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        asyncio.run(load(url, texts, args.clients, 100))  # warm-up
        before = rss_mb(server.pid)
        t0 = time.perf_counter()
        lat, errors = asyncio.run(load(url, texts, args.clients, args.requests))
        wall = time.perf_counter() - t0
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    print(f"\nload: {args.requests} requests, {args.clients} concurrent clients, 1 text each, loopback")
    print(
        table(
            ["errors", "p50 (ms)", "p99 (ms)", "requests/s", "server RSS before → after (MB)"],
            [
                [
                    str(errors),
                    f"{np.percentile(lat, 50) * 1000:.1f}",
                    f"{np.percentile(lat, 99) * 1000:.1f}",
                    f"{len(lat) / wall:.0f}",
                    f"{before:.0f} → {after:.0f}",
                ]
            ],
        )
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in (1, 4, 16):
            measured = {}
            for kind, src in (("adapters", args.lora), ("full", args.full)):
                copies = []
                for i in range(n):
                    dst = Path(d) / f"{kind}-{i}"
                    if not dst.exists():
                        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint", "plots"))
                    copies.append(str(dst))
                p = subprocess.run(
                    [sys.executable, "-c", LOAD_N, *copies], capture_output=True, text=True, check=True
                )
                measured[kind] = json.loads(p.stdout.strip().splitlines()[-1])
            a, f = measured["adapters"]["rss_mb"], measured["full"]["rss_mb"]
            rows.append(
                [str(n), f"{a:.0f} (bases: {measured['adapters']['bases']})", f"{f:.0f}", f"{f / a:.2f}×"]
            )
    print("\nserving memory: peak RSS of a process holding N models")
    print(table(["N", "N LoRA adapters on one base (MB)", "N full models (MB)", "full / adapters"], rows))


if __name__ == "__main__":
    main()
