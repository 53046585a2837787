"""OpenMP's wait policy for training, on a quiet and on a busy machine: whole `intentlab train` runs
with OpenMP's default (`OMP_WAIT_POLICY=default`, which intentlab reads as "leave it unset": threads
spin a while between parallel regions) and with PASSIVE (they sleep; intentlab's default since
2026-12-08), side by side.

    python benchmarks/wait_policy.py [--methods head,lora] [--examples 2000] [--busy 2] [--reps 2]

Each run is `intentlab train --method M` on the same `--examples`-text Banking77 slice (seed 42), in
its own process, timed from start to exit. "busy" adds `--busy` processes that spin on the CPU for
the whole run (another job on a laptop or a shared runner); "quiet" adds none. The two policies
alternate (which goes first alternates too), so a slow spell falls on both. Prints every run, the
median seconds per (method, load, policy), the ratio default / PASSIVE (above 1: PASSIVE is faster),
and the machine's load average before starting (a "quiet" row measured on a loaded machine is not
quiet: the printed load says so).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, median, subset, table

POLICIES = ("default", "PASSIVE")


def spin() -> None:
    while True:
        pass


def torch_job() -> None:
    """Another torch job, as on a laptop or a shared runner: matrix products on 2 threads with
    OpenMP's default policy, forever."""
    os.environ.pop("OMP_WAIT_POLICY", None)
    import torch

    torch.set_num_threads(2)
    a = torch.randn(256, 256)
    while True:
        for _ in range(50):
            a = torch.tanh(a @ a.T / 256)


def one(method: str, data: Path, out: Path, policy: str) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    env["OMP_WAIT_POLICY"] = policy  # "default": intentlab leaves OpenMP its own default
    cmd = [sys.executable, "-m", "intentlab", "train", "--method", method, "--data", str(data)]
    cmd += ["--seed", "42", "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="head,lora")
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--busy", type=int, default=2, help="processes of load in the busy case")
    ap.add_argument(
        "--load",
        choices=("python", "torch"),
        default="python",
        help="busy with pure-Python spinning loops, or with torch jobs (2 OpenMP threads each)",
    )
    ap.add_argument("--machines", default="quiet,busy", help="which cases to run")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    print(machine())
    print(
        f"load average before starting: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; busy = {args.busy} {args.load} jobs"
    )
    rows, times = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(args.examples, Path(tmp) / "data")
        target = torch_job if args.load == "torch" else spin
        loads = args.machines.split(",")
        for load in loads:
            n = args.busy * (load == "busy")
            spinners = [multiprocessing.Process(target=target, daemon=True) for _ in range(n)]
            for p in spinners:
                p.start()
            try:
                for method in args.methods.split(","):
                    for rep in range(args.reps):
                        order = POLICIES if rep % 2 == 0 else POLICIES[::-1]
                        for policy in order:
                            s = one(method, data, Path(tmp) / "run", policy)
                            times.setdefault((method, load, policy), []).append(s)
                            print(f"{method} {load} {policy}: {s:.1f} s", flush=True)
            finally:
                for p in spinners:
                    p.terminate()
        for method in args.methods.split(","):
            for load in loads:
                d, p = (median(times[(method, load, x)]) for x in POLICIES)
                rows.append([method, load, f"{d:.1f}", f"{p:.1f}", f"{d / p:.2f}"])
    print(table(["method", "machine", "default (s)", "PASSIVE (s)", "default / PASSIVE"], rows))


if __name__ == "__main__":
    main()
