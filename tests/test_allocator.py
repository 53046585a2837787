"""The model commands' allocator: which library INTENTLAB_ALLOCATOR picks, how it reaches LD_PRELOAD,
the one re-execution, which commands take it, a bad setting as a one-line error, and the allocator
recorded with a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab import allocator
from intentlab.cli import main
from intentlab.errors import UserError

TCMALLOC = allocator.find_tcmalloc() if sys.platform.startswith("linux") else None
needs_tcmalloc = pytest.mark.skipif(
    TCMALLOC is None, reason="tcmalloc not installed (Debian/Ubuntu: apt install libtcmalloc-minimal4)"
)


def test_system_keeps_the_c_library_malloc() -> None:
    env = {allocator.ENV: "system", "LD_PRELOAD": "libfoo.so"}
    assert allocator.wanted(env) is None
    assert allocator.child_env(env) == env


def test_auto_takes_tcmalloc_where_the_linker_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: f"lib{name}.so.4")
    assert allocator.wanted({}) == "libtcmalloc_minimal.so.4"
    env = allocator.child_env({"LD_PRELOAD": "libfoo.so"})
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4:libfoo.so"  # first, the user's after it
    assert int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) >= 1 << 40
    # a user who preloads an allocator of their own keeps it alone
    assert (
        allocator.child_env({"LD_PRELOAD": "/opt/libjemalloc.so.2"})["LD_PRELOAD"] == "/opt/libjemalloc.so.2"
    )
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    assert allocator.wanted({}) is None
    assert "LD_PRELOAD" not in allocator.child_env({})


def test_auto_finds_tcmalloc_inside_the_active_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libtcmalloc.so.4").write_bytes(b"")
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    assert allocator.wanted({}) == str(tmp_path / "lib" / "libtcmalloc.so.4")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the allocator is chosen on Linux only")
def test_a_path_is_taken_as_given_and_must_exist(tmp_path: Path) -> None:
    lib = tmp_path / "libmine.so"
    lib.write_bytes(b"")
    assert allocator.wanted({allocator.ENV: str(lib)}) == str(lib)
    with pytest.raises(UserError, match="is not a file"):
        allocator.wanted({allocator.ENV: str(tmp_path / "missing.so")})


MODEL_COMMANDS = {
    "train": ["train", "--out", "{tmp}/run"],
    "compare": ["compare", "--out", "{tmp}/run"],
    "sweep": ["sweep", "--method", "lora", "--trials", "2", "--out", "{tmp}/run"],
    "evaluate": ["evaluate", "{tmp}/run"],
    "predict": ["predict", "{tmp}/run", "hello"],
    "ood": ["ood", "{tmp}/run"],
    "export": ["export", "{tmp}/run", "--out", "{tmp}/export"],
    "serve": ["serve", "{tmp}/run"],
}


def _with_missing_allocator(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    if not sys.platform.startswith("linux"):
        pytest.skip("the allocator is chosen on Linux only")
    env = {**os.environ, allocator.ENV: str(tmp_path / "nope.so")}
    return subprocess.run(
        [sys.executable, "-m", "intentlab", *(a.format(tmp=tmp_path) for a in args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_every_model_command_takes_the_allocator_and_a_missing_library_is_a_one_line_error(
    tmp_path: Path, command: str
) -> None:
    done = _with_missing_allocator(tmp_path, MODEL_COMMANDS[command])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "INTENTLAB_ALLOCATOR" in done.stderr and "nope.so is not a file" in done.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "export").exists()


def test_the_report_keeps_the_c_library_malloc(tmp_path: Path) -> None:
    """`report` runs no model: it does not look at the allocator."""
    done = _with_missing_allocator(tmp_path, ["report", "{tmp}/no-runs", "--out", "{tmp}/report"])
    assert done.returncode == 2 and "INTENTLAB_ALLOCATOR" not in done.stderr, done.stderr


def test_in_process_calls_never_reexecute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main(argv) is a library call (tests, notebooks): it must not replace the caller's process."""
    monkeypatch.setattr(allocator, "reexec_if_wanted", lambda: pytest.fail("re-executed an in-process call"))
    code = main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "missing")])
    assert code == 2  # got past the allocator line to the data check


@needs_tcmalloc
def test_reexecution_puts_the_process_on_tcmalloc_once() -> None:
    code = "from intentlab import allocator; print(allocator.active()); allocator.reexec_if_wanted()"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # the first process prints 'system' and replaces itself; the second prints 'tcmalloc' and stays
    assert done.stdout.split() == ["system", "tcmalloc"]


@needs_tcmalloc
@pytest.mark.parametrize("choice, expected", [("auto", "tcmalloc"), ("system", "system")])
def test_a_trained_run_records_its_allocator(
    tmp_path: Path, tiny_model: str, toy_data: str, choice: str, expected: str
) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, allocator.ENV: choice}
    out = tmp_path / "run"
    args = ["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, toy_data, 1)]
    done = subprocess.run(
        [sys.executable, "-m", "intentlab", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "result.json").read_text())["meta"]["allocator"] == expected
