"""Sweeps: Optuna trials as run folders, SQLite by default, and two workers sharing a real PostgreSQL study."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab import methods as M
from intentlab.cli import main

optuna = pytest.importorskip("optuna")

SPACE = """
lr: {type: categorical, choices: [1.0e-9, 0.05, 0.02]}
epochs: {type: int, low: 3, high: 3}
batch_size: {type: categorical, choices: [8]}
"""


def test_sqlite_sweep_writes_runs_and_a_best_config(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "sweep",
                "--method",
                "head",
                "--trials",
                "3",
                "--out",
                str(out),
                "--space",
                str(space),
                *train_args,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "best validation accuracy" in printed
    study = optuna.load_study(study_name="head-toy-data0", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 3 and {t.number for t in trials} == {0, 1, 2}
    for t in trials:
        result = json.loads((Path(t.user_attrs["run"]) / "result.json").read_text())
        assert result["run"]["config"]["lr"] == t.params["lr"]
        assert result["train"]["pruned"] == (t.state == optuna.trial.TrialState.PRUNED)
    # the best config trains as is
    assert (
        main(["train", "--config", str(out / "best.yaml"), "--out", str(tmp_path / "best"), "--epochs", "1"])
        == 0
    )
    # and the sweep reads as a report
    assert main(["report", str(out / "trials"), "--out", str(tmp_path / "report")]) == 0


@pytest.mark.parametrize("method", M.NAMES)
def test_every_method_sweeps_with_its_shipped_space(
    tmp_path: Path, tiny_model: str, tiny64: str, toy_data: str, method: str
) -> None:
    """One trial of each method's own space (configs/sweep/<method>.yaml) on the tiny model: every
    method has a space, and its trainer takes a trial's config and reports its epochs."""
    extra = M.get(method).extra
    if extra is not None:
        pytest.importorskip({"qlora": "bitsandbytes"}.get(extra, extra))
    model = tiny64 if M.get(method).quantized else tiny_model
    out = tmp_path / "sweep"
    argv = ["sweep", "--method", method, "--trials", "1", "--out", str(out), *tiny_args(model, toy_data, 1)]
    assert main(argv) == 0
    study = optuna.load_study(study_name=f"{method}-toy-data0", storage=f"sqlite:///{out / 'study.db'}")
    (trial,) = study.get_trials()
    result = json.loads((Path(trial.user_attrs["run"]) / "result.json").read_text())
    assert result["run"]["method"] == method and trial.params
    assert all(result["run"]["config"][k] == v for k, v in trial.params.items() if k != "target_modules")
    assert trial.value == result["train"]["best_val_accuracy"]


def test_bad_space_and_storage(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    def sweep(*extra: str) -> int:
        return main(["sweep", "--method", "lora", "--trials", "1", "--out", str(tmp_path / "s"), *extra])

    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {type: float, low: 1, high: 2}\nlr: {type: float, low: 2, high: 1}\n")
    assert sweep("--space", str(space)) == 2
    err = capsys.readouterr().err
    assert "'learning_rate' is not a searchable" in err and "low <= high" in err
    assert sweep("--storage", "postgresql://nobody@127.0.0.1:1/none", *train_args) == 2
    assert "cannot open the Optuna study" in capsys.readouterr().err
    for text, needle in [
        ("lr: {type: categorical, choices: 5}\n", "lr: categorical needs a list of choices"),
        ("lr: {type: float, low: 0, high: 0.1, log: true}\n", "lr: log: true needs low > 0"),
        ("lora_r: {type: int, low: 1.5, high: 3}\n", "lora_r: needs whole numbers low and high"),
        ("lr: {type: float, low: -1, high: 1}\n", "lr: -1: lr must be positive"),
        ("pooling: {type: categorical, choices: [cls, nope]}\n", "pooling: 'nope': pooling must be one of"),
    ]:
        space.write_text(text)
        assert sweep("--space", str(space), *train_args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not (tmp_path / "s").exists()


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """A throwaway PostgreSQL server (Debian's postgresql) on a free loopback port."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("needs Debian's postgresql (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="intentlab-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "start",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
        ],
        check=True,
        capture_output=True,
    )
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study(
    tmp_path: Path, train_args: list[str], postgres_url: str
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "intentlab",
        "sweep",
        "--method",
        "head",
        "--trials",
        "8",
        "--out",
        str(out),
        "--storage",
        postgres_url,
        "--study",
        "shared",
        "--space",
        str(space),
        *train_args,
    ]
    workers = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    states = {t.state for t in trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}  # none lost mid-run
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))  # each trial recorded once
    assert (
        8 <= len(trials) <= 9
    )  # both workers stop at the total; one may start a last trial at the same time
    runs = sorted(p.name for p in (out / "trials").iterdir() if not p.name.startswith("."))
    assert runs == [f"trial-{n:04d}" for n in numbers]  # one run folder per trial, no duplicates
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    for t in trials:
        result = json.loads((out / "trials" / f"trial-{t.number:04d}" / "result.json").read_text())
        assert result["train"]["pruned"] == (t in pruned)
    print(f"{len(trials)} trials, {len(pruned)} pruned")


RACE = """
import sys, optuna
from intentlab.training.sweep import _open_study
optuna.logging.set_verbosity(optuna.logging.ERROR)
sys.stdin.readline()  # start together
study = _open_study(optuna, "race", sys.argv[1], optuna.pruners.NopPruner())
print(study.study_name)
"""


@pytest.mark.slow
def test_workers_starting_together_on_an_empty_database_all_join(postgres_url: str) -> None:
    """Workers that open a fresh database at once race to create Optuna's tables (CI hit this:
    UniqueViolation on pg_type); every worker must end up in the one study."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE race")
    url = postgres_url.rsplit("/", 1)[0] + "/race"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    for w in workers:  # release them all before waiting on any
        w.stdin.write("go\n")
        w.stdin.flush()
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-2000:]
        assert out.strip() == "race"
    assert len(optuna.get_all_study_summaries(storage=url)) == 1
