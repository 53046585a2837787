"""The benchmarks run on both kinds of CPU: each quick one, at a tiny size, on this machine's kind and
with torch's kernel libraries capped at AVX2 (`benchmarks/common.AVX2_CAP`: the AVX2 kind's code paths and
instructions, not its speed; a no-op on an AVX2-only CPU). Their figures are not checked (benchmarks are
not timed tests), only that they finish and print the ratios and tables their READMEs quote."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import AVX2_CAP  # noqa: E402

BANKING77 = Path(os.environ.get("INTENTLAB_DATA_DIR") or ROOT.parent / "shared" / "data" / "banking77")

# a benchmark subprocess gets this long; pytest's own limit for these tests is a minute more, so a stuck
# benchmark fails with its output (subprocess.TimeoutExpired) instead of being cut off by the global
# 300 s limit with nothing to read
BENCHMARK_TIMEOUT_S = 900
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(BENCHMARK_TIMEOUT_S + 60),
    pytest.mark.skipif(
        not (BANKING77 / "train.csv").is_file(), reason="needs Banking77 (INTENTLAB_DATA_DIR)"
    ),
]

# (script and tiny-size arguments, what its output must show)
QUICK = [
    (["hardware.py", "--reps", "1", "--train-reps", "1", "--examples", "128"], r"\| full \| (fp32|bf16) \|"),
    (
        ["throughput.py", "--examples", "128", "--reps", "1", "--methods", "lora"],
        r"\| lora \| [\d.]+ \| [\d.]+ \|",
    ),
    (["profile_step.py", "--method", "lora", "--steps", "2", "--examples", "96"], r"\| matmul \| [\d.]+ \|"),
    (["profile_step.py", "--phases", "--method", "full", "--examples", "96"], r"\| backward \| [\d.]+ \|"),
    (["setting_ab.py", "--method", "lora", "--set", "lr=0.001", "--reps", "1", "--examples", "128"], None),
    (["allocator.py", "--method", "lora", "--examples", "128", "--reps", "1", "--epochs", "1"], None),
]


def run_benchmark(args: list[str], fast_bf16: bool) -> str:
    env = {**os.environ, "INTENTLAB_DATA_DIR": str(BANKING77), "HF_HUB_OFFLINE": "1"}
    if not fast_bf16:
        env.update(AVX2_CAP)
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT / "benchmarks",
        env=env,
        capture_output=True,
        text=True,
        timeout=BENCHMARK_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def kind_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("machine kind:"))


@pytest.mark.parametrize("fast_bf16", [True, False], ids=["this-machine", "capped-at-avx2"])
@pytest.mark.parametrize(
    ("args", "shows"), QUICK, ids=[a[0] + ("-phases" if "--phases" in a else "") for a, _ in QUICK]
)
def test_a_quick_benchmark_finishes_and_prints_its_table(
    args: list[str], shows: str | None, fast_bf16: bool
) -> None:
    from intentlab.hardware import fast_bf16 as machine_has_fast_bf16

    if fast_bf16 and not machine_has_fast_bf16():
        pytest.skip("this machine has no fast bf16: the AVX2-capped case covers it")
    if args[0] == "allocator.py":
        from intentlab.allocator import find_tcmalloc

        if find_tcmalloc() is None:  # .ci/run installs it; without it the benchmark has nothing to compare
            pytest.skip("no tcmalloc here (apt install libtcmalloc-minimal4)")
    out = run_benchmark(args, fast_bf16)
    # the capped case says so, with the instruction set ATen dispatched to (AVX2, not AVX512)
    assert ("ATen dispatches AVX2)" in out) is not fast_bf16, out[:1500]
    if args[0] != "profile_step.py":  # it prints the precision it profiled instead
        assert ("no fast bf16" in kind_line(out)) is not fast_bf16, kind_line(out)
    else:
        assert f"bf16 {fast_bf16}," in out, out[-1500:]
    ratios = [float(r) for r in re.findall(r"\*\*([\d.]+)×\*\*", out)]
    if args[0] in ("throughput.py", "setting_ab.py", "allocator.py"):
        assert ratios and all(math.isfinite(r) and r > 0 for r in ratios), out[-1500:]
    if shows:
        assert re.search(shows, out), out[-1500:]


def test_precision_says_so_and_exits_0_where_bf16_is_not_fast() -> None:
    out = run_benchmark(["precision.py"], fast_bf16=False)
    assert "bf16 is not fast on this machine" in out and "nothing to compare" in out
