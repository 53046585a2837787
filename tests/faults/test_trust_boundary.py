"""The run folder as a trust boundary (issue 35): what the opener checks, what the writer makes atomic,
and a server that no single request or folder can stall. One test per hole a hostile review found;
each fails on the behaviour before the fix. Deadlines are never waited for: the server's clock is
injected, and subprocesses get generous bounds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_rows, one_line, tiny_args, write_csv
from intentlab.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    root = tmp_path_factory.mktemp("trust")
    for name, method in (("bank", "lora"), ("other", "lora"), ("full", "full")):
        args = [*tiny_args(tiny_model, toy_data, 1), "--seed", str(len(name))]
        assert main(["train", "--method", method, "--out", str(root / name), *args]) == 0
    return root


def copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """intentlab in its own process, with a generous bound (a hang fails the test instead of the suite)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "intentlab", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# ----------------------------------------------------------------------------- 1. the lock and symlinks
def test_a_symlink_to_a_run_folder_takes_the_same_lock(
    tmp_path: Path, tiny_model: str, toy_data: str
) -> None:
    from intentlab.folders import FolderLock

    real = tmp_path / "realrun"
    real.mkdir()
    alias = tmp_path / "aliasrun"
    alias.symlink_to(real)
    with FolderLock(real).acquire("realrun"):  # another writer holds the real folder
        p = cli("train", "--method", "head", "--out", str(alias), *tiny_args(tiny_model, toy_data, 1))
    assert p.returncode == 2 and "in use by another intentlab process" in p.stderr, p.stderr[-500:]


# ----------------------------------------------------------------------------- 2. the tokenizer
@pytest.mark.parametrize("damage", ["delete", "fifo", "dev-zero"])
def test_a_missing_or_irregular_tokenizer_is_refused(
    runs: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy(runs / "bank", tmp_path / "run")
    target = run / "model" / "tokenizer.json"
    target.unlink()
    if damage == "fifo":
        os.mkfifo(target)
    elif damage == "dev-zero":
        target.symlink_to("/dev/zero")
    p = cli("predict", str(run), "i lost my card", timeout=120)  # a FIFO hung here before
    assert p.returncode == 2 and "tokenizer" in p.stderr.splitlines()[-1], p.stderr[-500:]
    assert main(["evaluate", str(run)]) == 2
    assert "tokenizer" in one_line(capsys)


def test_a_run_without_recorded_checksums_still_checks_its_vocabulary(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs saved before checksums were recorded: a missing vocabulary is refused, and so is a
    tokenizer whose size does not fit the encoder (transformers' 5-token fallback)."""
    run = copy(runs / "full", tmp_path / "old")
    info = json.loads((run / "model" / "intentlab.json").read_text())
    info.pop("tokenizer_files"), info.pop("vocab_size")
    (run / "model" / "intentlab.json").write_text(json.dumps(info))
    assert main(["predict", str(run), "hi"]) == 0  # intact: loads as before
    (run / "model" / "tokenizer.json").unlink()
    (run / "model" / "vocab.txt").unlink(missing_ok=True)
    assert main(["predict", str(run), "hi"]) == 2
    assert "no tokenizer vocabulary" in one_line(capsys)


# ----------------------------------------------------------------------------- 3. a load that would stall
def test_an_admin_load_of_a_fifo_or_a_huge_header_is_refused_and_serving_goes_on(
    runs: Path, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app

    fifo = copy(runs / "other", runs / "fifo")
    (fifo / "model" / "intentlab.json").unlink()
    os.mkfifo(fifo / "model" / "intentlab.json")
    huge = copy(runs / "full", runs / "huge")
    header = json.dumps(
        {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for i in range(30_000)}
    )
    (huge / "model" / "model.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4
    )
    auth = {"Authorization": "Bearer a-long-enough-admin-token"}
    app = create_app([str(runs / "bank")], admin_token="a-long-enough-admin-token", runs_root=str(runs))
    with TestClient(app) as c:
        for name in ("fifo", "huge"):
            r = c.post("/v1/adapters", json={"name": name, "run": name}, headers=auth)
            assert r.status_code == 422, r.text
        assert (
            "not a regular file"
            in c.post("/v1/adapters", json={"name": "f", "run": "fifo"}, headers=auth).text
        )
        assert c.post("/v1/predict", json={"texts": ["where is my card"]}).status_code == 200
        assert c.get("/healthz").json()["status"] == "ok"
    p = cli("predict", str(fifo), "hi", timeout=120)  # the CLI hung the same way before
    assert p.returncode == 2 and "not a regular file" in p.stderr


def test_healthz_reports_a_stuck_model_thread(runs: Path) -> None:
    """With an injected clock: a model-thread job older than stuck_after_s makes /healthz a 503."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app
    from intentlab.serving.runtime import Limits

    now = [1000.0]
    app = create_app([str(runs / "bank")], limits=Limits(stuck_after_s=120))
    app.state.batcher.clock = lambda: now[0]
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        app.state.batcher.busy[-1] = 1000.0  # a job that started at t=1000 and has not returned
        now[0] = 1100.0
        assert c.get("/healthz").json()["status"] == "ok"
        now[0] = 1121.0
        r = c.get("/healthz")
        assert (
            r.status_code == 503
            and r.json()["status"] == "stuck"
            and r.json()["model_thread_busy_s"] == 121.0
        )


# ----------------------------------------------------------------------------- 4. a killed export
def test_a_killed_export_leaves_nothing_serve_would_trust(runs: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "export"
    child = (
        "import os, signal, sys\nimport intentlab.deploy.onnx as O\n"
        "def die(*a, **k): os.kill(os.getpid(), signal.SIGKILL)\n"
        "O.quantize_int8 = die\n"
        "from intentlab.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["export", str(runs / "full"), "--out", str(out), "--onnx", "--quantize", "int8"]
    p = subprocess.run([sys.executable, "-c", child, *argv], capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL
    assert not out.exists()  # model.onnx was written, unverified, into a staging folder only
    assert cli(*argv).returncode == 0  # and the export runs again, without --overwrite
    verification = json.loads((out / "export_verification.json").read_text())
    assert {"onnx", "onnx int8"} <= set(verification["artifacts"])
    forged = copy(out, tmp_path / "forged")  # a folder with model.onnx but no verification record
    (forged / "export_verification.json").unlink()
    from intentlab.errors import UserError
    from intentlab.inference.opener import open_run

    with pytest.raises(UserError, match="no verification record"):
        open_run(forged, backend="onnxruntime")


# ----------------------------------------------------------------------------- 5. a failed load leaks nothing
def test_a_failed_load_with_a_corrupt_ood_leaves_the_shared_base_as_it_was(
    tmp_path: Path, tiny_model: str, oos_data: str
) -> None:
    from intentlab.errors import UserError
    from intentlab.serving.registry import Registry

    good, bad = tmp_path / "good", tmp_path / "bad"
    for run in (good, bad):
        assert (
            main(["train", "--method", "lora", "--out", str(run), *tiny_args(tiny_model, oos_data, 1)]) == 0
        )
    (bad / "ood" / "ood.json").write_text("{not json")
    reg = Registry(bf16=False)
    reg.load("good", good)
    (base,) = reg.bases.values()
    before = set(base.peft_config)
    with pytest.raises(UserError):
        reg.load("bad", bad)
    assert set(base.peft_config) == before and "bad" not in reg.entries


# ----------------------------------------------------------------------------- 6. unhandled input
def test_overflowing_and_infinite_thresholds_and_deep_json_are_4xx(runs: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app

    oos = tmp_path / "oos"
    assert main(["ood", str(copy(runs / "bank", oos))]) == 0  # a run with a scorer to threshold
    token = "a-long-enough-admin-token"
    with TestClient(create_app([str(oos)], admin_token=token)) as c:
        body = b'{"texts": ["hi"], "threshold": 1' + b"0" * 400 + b"}"
        r = c.post("/v1/predict", content=body)
        assert r.status_code == 422 and "not a usable number" in r.text, r.text
        r = c.put(
            "/v1/adapters/oos/threshold",
            content=b'{"threshold": 1' + b"0" * 400 + b"}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 422, r.text
        r = c.post("/v1/predict", content=b'{"texts": ' + b"[" * 1000 + b"]" * 1000 + b"}")
        assert r.status_code == 422 and "nested too deeply" in r.text


def test_threshold_inf_says_it_is_not_finite(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    oos = copy(runs / "bank", tmp_path / "oos")
    assert main(["ood", str(oos)]) == 0
    capsys.readouterr()
    assert main(["predict", str(oos), "hi", "--threshold", "inf"]) == 2
    line = one_line(capsys)
    assert "not a finite number" in line and "[-inf, inf]" not in line


def test_deep_json_in_run_files_and_a_pickled_base_model_are_one_line(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy(runs / "bank", tmp_path / "deep")
    (run / "model" / "labels.json").write_text('{"labels": ' + "[" * 5000 + "]" * 5000 + "}")
    assert main(["predict", str(run), "hi"]) == 2
    assert "not valid JSON" in one_line(capsys)
    # a base model folder whose weights are a pickle: refused by torch's weights-only loader, one line
    import pickle

    base = tmp_path / "pickled-base"
    shutil.copytree(json.loads((runs / "bank" / "model" / "intentlab.json").read_text())["base_model"], base)
    for f in base.glob("*.safetensors"):
        f.unlink()
    marker = tmp_path / "PWNED"
    (base / "pytorch_model.bin").write_bytes(
        pickle.dumps(type("P", (), {"__reduce__": lambda s: (os.system, (f"touch {marker}",))})())
    )
    run2 = copy(runs / "bank", tmp_path / "moved")
    info = json.loads((run2 / "model" / "intentlab.json").read_text())
    (run2 / "model" / "intentlab.json").write_text(json.dumps({**info, "base_model": str(base)}))
    assert main(["predict", str(run2), "hi"]) == 2
    assert "pickle" in one_line(capsys) and not marker.exists()


# ----------------------------------------------------------------------------- 7. a killed refit
def test_a_killed_ood_refit_is_detected_not_served_out_of_step(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy(runs / "bank", tmp_path / "run")
    assert main(["ood", str(run)]) == 0
    child = (
        "import os, signal, sys\nimport intentlab.training.writer as W\n"
        "W._write_result = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"  # after ood/, before the record
        "from intentlab.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", child, "ood", str(run), "--k", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == -signal.SIGKILL
    capsys.readouterr()
    assert main(["predict", str(run), "hi"]) == 2
    assert "not the state" in one_line(capsys)
    assert main(["ood", str(run)]) == 0 and main(["predict", str(run), "hi"]) == 0  # a refit mends it


# ----------------------------------------------------------------------------- 8. unbounded inputs
def test_unbounded_configs_fields_and_columns_are_refused(
    tmp_path: Path, tiny_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nlr: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    )
    p = cli("train", "--config", str(bomb), "--out", str(tmp_path / "r"), timeout=60)
    assert p.returncode == 2 and "aliases" in p.stderr
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "train.csv", [*make_rows(10, seed=1), {"text": "x" * 1100000, "label": "top_up"}])
    assert (
        main(
            ["train", "--method", "head", "--out", str(tmp_path / "r"), *tiny_args(tiny_model, str(data), 1)]
        )
        == 2
    )
    assert "over 1,000,000 characters" in one_line(capsys)
    wide = tmp_path / "wide.csv"
    wide.write_text(
        ",".join(["text", "label", *(f"c{i}" for i in range(2000))]) + "\nhi,a" + ",0" * 2000 + "\n"
    )
    assert (
        main(
            ["train", "--method", "head", "--out", str(tmp_path / "r"), *tiny_args(tiny_model, str(wide), 1)]
        )
        == 2
    )
    assert "2,002 columns" in one_line(capsys)


# ----------------------------------------------------------------------------- 9. the runs root, all the way down
def test_a_link_inside_a_run_to_outside_the_runs_root_is_refused(runs: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app

    outside = copy(runs / "other", tmp_path / "outside")
    sneaky = runs / "sneaky"
    sneaky.mkdir()
    for f in ("config.yaml", "result.json", "metrics.jsonl", "test_predictions.json"):
        shutil.copy(outside / f, sneaky / f)
    (sneaky / "model").symlink_to(outside / "model")
    token = "a-long-enough-admin-token"
    with TestClient(create_app([str(runs / "bank")], admin_token=token, runs_root=str(runs))) as c:
        r = c.post(
            "/v1/adapters", json={"name": "s", "run": "sneaky"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 422 and "outside the runs root" in r.text, r.text


# ----------------------------------------------------------------------------- 10. admin-token guesses
def test_wrong_admin_tokens_back_off_and_short_tokens_warn(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app

    create_app([str(runs / "bank")], admin_token="short")
    assert "the admin token has 5 characters" in capsys.readouterr().err
    token = "a-long-enough-admin-token"
    now = [0.0]
    app = create_app([str(runs / "bank")], admin_token=token, runs_root=str(runs))
    app.state.batcher.clock = lambda: now[0]
    with TestClient(app) as c:
        codes = [
            c.post(
                "/v1/adapters",
                json={"name": "o", "run": "other"},
                headers={"Authorization": f"Bearer guess{i}"},
            ).status_code
            for i in range(7)
        ]
        assert codes == [401] * 5 + [429] * 2
        good = {"Authorization": f"Bearer {token}"}
        assert c.post("/v1/adapters", json={"name": "o", "run": "other"}, headers=good).status_code == 429
        now[0] = 61.0  # the lockout has passed
        assert c.post("/v1/adapters", json={"name": "o", "run": "other"}, headers=good).status_code == 201
    assert "wrong admin token from" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 11. the header block
def test_an_endless_header_block_gets_431(runs: Path) -> None:
    pytest.importorskip("fastapi")
    from intentlab.serving.app import create_app
    from live_server import live_server

    with live_server(create_app([str(runs / "bank")])) as (url, port):
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(60)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        reply = b""
        try:
            for _ in range(200):  # 200 x 1 KB, far past the 64 KB limit, never a blank line
                s.sendall(b"X-Pad: " + b"a" * 1017 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := s.recv(4096):
                reply += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        s.close()
        assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
        import httpx

        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
