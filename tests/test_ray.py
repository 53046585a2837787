"""compare on Ray: a 2-cell matrix on a local Ray instance, skipped on rerun; bad addresses and a
missing Ray are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_args

pytest.importorskip("ray")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intentlab", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.mark.slow
def test_a_two_cell_compare_on_local_ray_then_skips(tmp_path: Path, tiny_model: str, toy_data: str) -> None:
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--out",
        str(out),
        "--methods",
        "baseline,head",
        "--seeds",
        "1",
        "--executor",
        "ray",
        "--no-report",
        *tiny_args(tiny_model, toy_data, 1),
    ]
    first = run(args, tmp_path)
    assert first.returncode == 0, first.stderr[-1500:]
    assert "ray: 2 cells submitted" in first.stdout
    for cell in ("baseline", "head"):
        assert json.loads((out / cell / "seed-42" / "result.json").read_text())["run"]["method"] == cell
    again = run(args, tmp_path)
    assert again.returncode == 0 and "ray: 0 cells submitted" in again.stdout
    assert again.stdout.count("complete, skipped") == 2


@pytest.mark.slow
def test_an_unreachable_cluster_is_one_line(tmp_path: Path, tiny_model: str, toy_data: str) -> None:
    args = [
        "compare",
        "--out",
        str(tmp_path / "c"),
        "--methods",
        "baseline",
        "--executor",
        "ray",
        "--address",
        "ray://127.0.0.1:1",
        *tiny_args(tiny_model, toy_data, 1),
    ]
    proc = run(args, tmp_path)
    assert proc.returncode == 2, proc.stderr[-800:]
    assert "cannot connect to the Ray cluster" in proc.stderr and "Traceback" not in proc.stderr


def test_ray_missing_is_one_line(tmp_path: Path, tiny_model: str, toy_data: str) -> None:
    argv = [
        "compare",
        "--out",
        str(tmp_path / "c"),
        "--methods",
        "baseline",
        "--executor",
        "ray",
        *tiny_args(tiny_model, toy_data, 1),
    ]
    code = f"import sys\nsys.modules['ray'] = None\nfrom intentlab.cli import main\nsys.exit(main({argv!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "intentlab[ray]" in proc.stderr and "Traceback" not in proc.stderr
