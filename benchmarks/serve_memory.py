"""`intentlab serve` under sustained load: requests/s and the server's memory, round after round.

    python benchmarks/serve_memory.py --run RUN [--rounds 6] [--requests 1500] [--clients 8] [--no-bf16]

Two servers, one after the other, each in its own process, each given the same rounds of load: as
shipped (`intentlab serve RUN`, re-executed onto tcmalloc where it is installed) and on glibc's malloc
(`INTENTLAB_ALLOCATOR=system`). A round is `--requests` requests from `--clients` concurrent
clients: four in five carry one text, one in five sixteen (interactive and bulk callers mixed),
Banking77 test texts in turn, so the server forms batches of ever-changing sizes. After each round the
server's resident memory is read from /proc. Then both servers answer the same 256 texts one request
each, and their answers (top intent and its probability) are compared. Ratios are against glibc.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from common import banking77_dir, machine, machine_kind, median, table
from serving import rss_mb, start_server


def request_texts(texts: list[str], i: int) -> list[str]:
    start = (i * 17) % (len(texts) - 16)
    return texts[start : start + (16 if i % 5 == 0 else 1)]


async def one_round(url: str, texts: list[str], clients: int, requests: int, offset: int) -> int:
    import httpx

    todo = iter(range(offset, offset + requests))
    errors = 0

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in todo:
            r = await c.post(f"{url}/v1/predict", json={"texts": request_texts(texts, i), "top_k": 3})
            errors += r.status_code != 200

    async with httpx.AsyncClient(timeout=120) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return errors


async def answers(url: str, texts: list[str]) -> list[tuple[str, float]]:
    import httpx

    async with httpx.AsyncClient(timeout=120) as c:
        out = []
        for t in texts:
            r = await c.post(f"{url}/v1/predict", json={"texts": [t], "top_k": 1})
            best = r.json()["predictions"][0]["intents"][0]
            out.append((best["intent"], best["probability"]))
    return out


def side(args: argparse.Namespace, env: dict[str, str], texts: list[str]) -> dict[str, Any]:
    server, url = start_server(args.run, ["--no-bf16"] if args.no_bf16 else [], env)
    rounds: list[tuple[float, float]] = []
    errors = 0
    try:
        start = rss_mb(server.pid)
        for r in range(args.rounds):
            t0 = time.perf_counter()
            errors += asyncio.run(one_round(url, texts, args.clients, args.requests, r * args.requests))
            rounds.append((args.requests / (time.perf_counter() - t0), rss_mb(server.pid)))
            print(f"  round {r}: {rounds[-1][0]:.0f} requests/s, {rounds[-1][1]:.0f} MB", flush=True)
        given = asyncio.run(answers(url, texts[:256]))
    finally:
        server.terminate()
        server.wait(30)
    return {"start": start, "rounds": rounds, "errors": errors, "answers": given}


def main() -> None:
    from intentlab import allocator
    from intentlab.data import load_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a trained run folder to serve")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--requests", type=int, default=1500, help="requests per round")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--no-bf16", action="store_true", help="serve in fp32 (default: as `serve` does)")
    args = ap.parse_args()
    print(f"machine: {machine()}\nmachine kind: {machine_kind()}")
    if allocator.find_tcmalloc() is None:
        print("tcmalloc is not installed here: `serve` runs on glibc's malloc either way; nothing to compare")
        return
    texts = load_dataset("banking77", str(banking77_dir())).test.texts
    glibc = {allocator.ENV: "system", "LD_PRELOAD": ""}
    sides = {"glibc malloc": glibc, "tcmalloc (shipped)": {allocator.ENV: "auto"}}
    results = {}
    for name, env in sides.items():
        print(name, flush=True)
        results[name] = side(args, env, texts)
    base = median([x for x, _ in results["glibc malloc"]["rounds"]])
    same = results["glibc malloc"]["answers"] == results["tcmalloc (shipped)"]["answers"]
    half = args.rounds // 2
    rows = []
    for name, r in results.items():
        rps = median([x for x, _ in r["rounds"]])
        mem = [m for _, m in r["rounds"]]
        rows.append(
            [
                name,
                f"{rps:.0f}",
                f"**{rps / base:.2f}×**",
                f"{r['start']:.0f} → {mem[0]:.0f} → {mem[-1]:.0f}",
                f"{mem[-1] - mem[half - 1]:+.0f}" if half else "–",
                str(r["errors"]),
            ]
        )
    precision = "fp32" if args.no_bf16 else "the run's precision where this machine runs it fast"
    print(
        f"\n{args.rounds} rounds of {args.requests} requests from {args.clients} clients "
        f"(1 in 5 with 16 texts), {precision}"
    )
    print(
        table(
            [
                "server",
                "requests/s (median of rounds)",
                "vs glibc",
                "RSS MB: started → after round 1 → after the last",
                f"MB added in rounds {half + 1}-{args.rounds}",
                "errors",
            ],
            rows,
        )
    )
    print(f"same answers (top intent and probability, 256 texts) on both allocators: {same}")


if __name__ == "__main__":
    main()
