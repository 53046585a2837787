"""Serving backends side by side: torch fp32, ONNX Runtime fp32 and ONNX Runtime int8, in one run.

    python benchmarks/serving.py --run RUN [--clients 8] [--requests 2000] [--memory --lora RUN --full RUN]
    python benchmarks/serving.py --run RUN --torch-only --torch-bf16 [--busy 1]

The run is exported once (`intentlab export --merge --onnx --quantize int8`); then, for each backend,
in its own process:
- batched: texts/s of the backend alone on 1,024 Banking77 test texts (inference batches of 256; torch
  with the threads `serve` gives it);
- agreement: top-1 agreement with torch fp32 on the same texts;
- latency: p50/p99 of 200 one-text requests sent one after another to `intentlab serve`;
- load: requests/s and p50/p99 with `--clients` concurrent one-text clients until `--requests` are
  answered (server in its own process, load generator in this one, both on loopback).
The ratios are against the torch fp32 server measured in the same run. torch runs twice: as `serve`
runs it (OpenMP threads sleep between ops; torch gets the cores less one, the other is left to HTTP
and tokenizing) and with `--threads` set to all cores (what `serve` did before);
int8 runs twice: one batch at a time on all cores, and `--parallel-batches CORES` (one core each).
`--torch-only` measures just the two torch rows, `--torch-bf16` serves them in the run's own precision
(bf16 where fast, the `serve` default) instead of fp32, and `--busy N` keeps N busy-loop processes
running alongside, as other jobs on a shared machine would.
`--memory` also reports the resident memory of N LoRA adapters on one base against N full models.
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
from typing import Any

import numpy as np

from common import banking77_dir, isolated, machine, machine_kind, table

LOAD_N = """
import json, resource, sys
from intentlab.serving.registry import Registry
from intentlab.models.loading import quiet_transformers
quiet_transformers()
reg = Registry()
for i, run in enumerate(sys.argv[1:]):
    reg.load(f"m{i}", run)
    reg.predict(f"m{i}", ["warm up"], 1)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "bases": len(reg.bases)}))
"""
CORES = len(os.sched_getaffinity(0))
# name: (serve flags, folder: run or export, OMP_WAIT_POLICY). `serve` makes torch's OpenMP threads
# sleep between ops (PASSIVE) and gives torch the cores less one; the all-cores row is what it did
# before, for comparison.
ONNX_BACKENDS = {
    "onnxruntime fp32": (["--backend", "onnxruntime", "--onnx-file", "model.onnx"], "export", "PASSIVE"),
    "onnxruntime int8": (["--backend", "onnxruntime", "--onnx-file", "model.int8.onnx"], "export", "PASSIVE"),
    "onnxruntime int8, parallel batches": (
        ["--backend", "onnxruntime", "--onnx-file", "model.int8.onnx", "--parallel-batches", str(CORES)],
        "export",
        "PASSIVE",
    ),
}


def backends(torch_bf16: bool, torch_only: bool) -> dict[str, tuple[list[str], str, str]]:
    """The rows to measure; the first (torch as `serve` runs it) is the reference."""
    flags, label = ([], "torch (run's precision)") if torch_bf16 else (["--no-bf16"], "torch fp32")
    rows = {
        label: (flags, "run", "PASSIVE"),
        f"{label}, all cores": ([*flags, "--threads", str(CORES)], "run", "PASSIVE"),
    }
    return rows if torch_only else {**rows, **ONNX_BACKENDS}


def batched(flags: list[str], folder: str, texts: list[str]) -> dict[str, Any]:
    """Texts/s of one backend alone, and its top-1 predictions (run in a fresh process)."""
    from intentlab.models.loading import quiet_transformers
    from intentlab.serving.registry import Registry

    quiet_transformers()
    if "--backend" not in flags:  # torch: the threads `serve` would give it
        import torch

        from intentlab.cli import serving_threads

        given = int(flags[flags.index("--threads") + 1]) if "--threads" in flags else None
        torch.set_num_threads(serving_threads(given))
    reg = Registry(
        bf16=False if "--no-bf16" in flags or "--backend" in flags else None,
        backend="onnxruntime" if "--backend" in flags else "torch",
        onnx_file=flags[flags.index("--onnx-file") + 1] if "--onnx-file" in flags else None,
    )
    reg.load("m", folder)
    reg.predict("m", texts[:64], 1)  # warm-up
    t0 = time.perf_counter()
    out = reg.entries["m"].backend.run(texts)
    seconds = time.perf_counter() - t0
    return {"texts_per_s": len(texts) / seconds, "top1": out.logits.argmax(1).tolist()}


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def load(url: str, texts: list[str], clients: int, requests: int) -> tuple[list[float], int, float]:
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

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return lat, errors, time.perf_counter() - t0


def start_server(
    folder: str, flags: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`intentlab serve FOLDER` on a free loopback port in its own process; returns once /healthz answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "intentlab", "serve", folder, "--port", str(port), *flags],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if server.poll() is not None:
            raise SystemExit(f"intentlab serve {folder} exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit(f"intentlab serve {folder} did not answer /healthz within two minutes")


def served(folder: str, flags: list[str], texts: list[str], clients: int, requests: int) -> dict[str, float]:
    """Start `intentlab serve` in its own process; single-request latency, then the concurrent load."""
    server, url = start_server(folder, flags)
    try:
        asyncio.run(load(url, texts, clients, 100))  # warm-up
        single, _, _ = asyncio.run(load(url, texts, 1, 200))
        before = rss_mb(server.pid)
        lat, errors, wall = asyncio.run(load(url, texts, clients, requests))
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    return {
        "single_p50": float(np.percentile(single, 50)) * 1000,
        "single_p99": float(np.percentile(single, 99)) * 1000,
        "load_p50": float(np.percentile(lat, 50)) * 1000,
        "load_p99": float(np.percentile(lat, 99)) * 1000,
        "rps": len(lat) / wall,
        "errors": errors,
        "rss": f"{before:.0f} → {after:.0f}",
    }


def memory(lora: str, full: str) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in (1, 4, 16):
            measured = {}
            for kind, src in (("adapters", lora), ("full", full)):
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


def main() -> None:
    from intentlab.data import load_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a run folder (LoRA or full) to serve and export")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--memory", action="store_true", help="also measure N adapters against N full models")
    ap.add_argument("--lora", help="with --memory: a LoRA run")
    ap.add_argument("--full", help="with --memory: a full fine-tuning run")
    ap.add_argument(
        "--torch-bf16",
        action="store_true",
        help="torch rows in the run's own precision (bf16 where fast, as `serve` does) instead of fp32",
    )
    ap.add_argument("--torch-only", action="store_true", help="only the torch rows (no export)")
    ap.add_argument(
        "--busy", type=int, default=0, help="busy-loop processes running alongside, like other jobs"
    )
    args = ap.parse_args()
    rows_to_run = backends(args.torch_bf16, args.torch_only)
    print(f"machine: {machine()}\nmachine kind: {machine_kind()}")
    texts = load_dataset("banking77", str(banking77_dir())).test.texts
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        results = measure(args, rows_to_run, texts)
    finally:
        for p in busy:
            p.kill()
    if args.busy:
        print(f"\nwith {args.busy} busy-loop process(es) running alongside")
    report(args, results)
    if args.memory and args.lora and args.full:
        memory(args.lora, args.full)


def measure(
    args: argparse.Namespace, rows: dict[str, tuple[list[str], str, str]], texts: list[str]
) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as d:
        export = Path(d) / "export"
        if any(where == "export" for _, where, _ in rows.values()):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "intentlab",
                    "export",
                    args.run,
                    "--out",
                    str(export),
                    "--merge",
                    "--onnx",
                    "--quantize",
                    "int8",
                ],
                check=True,
            )
        folders = {"run": args.run, "export": str(export)}
        results = {}
        for name, (flags, where, wait) in rows.items():
            os.environ["OMP_WAIT_POLICY"] = wait  # read by the spawned processes when torch loads
            b = isolated(batched, flags, folders[where], texts[:1024])
            results[name] = {**b, **served(folders[where], flags, texts, args.clients, args.requests)}
            r = results[name]
            print(
                f"{name}: {r['texts_per_s']:.0f} texts/s batched, {r['rps']:.0f} requests/s with {args.clients} "
                f"clients (p99 {r['load_p99']:.0f} ms), single p50 {r['single_p50']:.1f} ms",
                flush=True,
            )
    return results


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    ref_name = next(iter(results))
    ref = results[ref_name]
    rows = [
        [
            name,
            f"{100 * np.mean(np.asarray(r['top1']) == np.asarray(ref['top1'])):.2f}",
            f"{r['texts_per_s']:.0f}",
            f"{r['single_p50']:.1f} / {r['single_p99']:.1f}",
            f"{r['rps']:.0f}",
            f"{r['load_p50']:.1f} / {r['load_p99']:.1f}",
            f"**{r['rps'] / ref['rps']:.2f}×**",
            str(r["errors"]),
            r["rss"],
        ]
        for name, r in results.items()
    ]
    print(
        f"\n{args.clients} concurrent one-text clients, {args.requests} requests; single: 200 sequential requests"
    )
    print(
        table(
            [
                "backend",
                f"top-1 agreement with {ref_name} (%)",
                "batched texts/s",
                "single p50 / p99 (ms)",
                "requests/s",
                "load p50 / p99 (ms)",
                f"requests/s vs {ref_name}",
                "errors",
                "server RSS (MB)",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
