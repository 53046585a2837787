"""The traffic log's failure modes (`serve --log`): a full disk and an unwritable folder never fail a
request; every record that could not be written is dropped, counted, and shown in /healthz."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main

pytestmark = pytest.mark.slow
pytest.importorskip("fastapi")

TEXTS = ["where is my new card", "how do i top up my account", "my top up failed", "play some jazz"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    out = tmp_path_factory.mktemp("log-faults") / "run"
    assert main(["train", "--method", "head", "--out", str(out), *tiny_args(tiny_model, toy_data, 1)]) == 0
    return out


def serve_with(run: Path, log: object) -> tuple[list[int], dict]:
    from fastapi.testclient import TestClient

    from intentlab.serving.app import create_app

    with TestClient(create_app([str(run)], traffic_log=log)) as c:
        codes = [c.post("/v1/predict", json={"texts": [t]}).status_code for t in TEXTS]
        log.listener.stop()  # drain the queue (what closing the server does) before reading the counts
        log.listener.start()
        return codes, c.get("/healthz").json()["traffic_log"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) for a real ENOSPC")
def test_a_full_disk_drops_and_counts_records_and_serves_every_request(run: Path, tmp_path: Path) -> None:
    from intentlab.serving.traffic_log import TrafficLog

    folder = tmp_path / "logs"
    folder.mkdir()
    # the file the log opens is /dev/full: every write fails with ENOSPC, as on a full disk
    (folder / f"traffic-{socket.gethostname()}-{os.getpid()}.jsonl").symlink_to("/dev/full")
    codes, stats = serve_with(run, TrafficLog(folder))
    assert codes == [200] * len(TEXTS)
    assert stats["dropped"] == len(TEXTS) and stats["written"] == 0
    assert "No space left on device" in stats["last_error"]


def test_an_unwritable_log_folder_drops_and_counts_records_and_serves_every_request(
    run: Path, tmp_path: Path
) -> None:
    from intentlab.serving.traffic_log import TrafficLog

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log folder should be")
    codes, stats = serve_with(run, TrafficLog(blocked / "logs"))
    assert codes == [200] * len(TEXTS)
    assert stats["dropped"] == len(TEXTS) and stats["written"] == 0 and stats["last_error"]
