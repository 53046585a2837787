"""Serving: two adapters with different label sets on one base, run-time load/unload, every limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_args, write_csv
from intentlab.cli import main

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from intentlab.serving.app import Limits, create_app

OTHER_INTENTS = {
    "greeting": ["hello there", "hi, good morning", "hey how are you"],
    "goodbye": ["bye for now", "see you later", "goodbye and thanks"],
    "weather": ["will it rain today", "what's the weather like", "is it sunny tomorrow"],
}
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> dict[str, Path]:
    from conftest import make_rows

    root = tmp_path_factory.mktemp("serve-runs")
    other = root / "other-data"
    other.mkdir()
    write_csv(other / "train.csv", make_rows(12, seed=5, intents=OTHER_INTENTS))
    write_csv(other / "test.csv", make_rows(4, seed=6, intents=OTHER_INTENTS))
    common = [
        *tiny_args(tiny_model, epochs=2),
    ]
    plan = {
        "bank": ("lora", toy_data),
        "chat": ("lora", str(other)),
        "dora": ("dora", str(other)),
        "full": ("full", toy_data),
    }
    for name, (method, data) in plan.items():
        assert main(["train", "--method", method, "--out", str(root / name), "--data", data, *common]) == 0
    return {name: root / name for name in plan}


@pytest.fixture(scope="module")
def client(runs: dict[str, Path]) -> TestClient:
    app = create_app(
        [str(runs["bank"]), str(runs["chat"]), str(runs["full"])],
        admin_token=TOKEN,
        runs_root=str(runs["bank"].parent),
        limits=Limits(max_texts=4, max_chars=50, max_body_bytes=2048),
    )
    with TestClient(app) as c:
        yield c


def predict(client: TestClient, **body: object) -> object:
    return client.post("/v1/predict", json=body)


def test_two_adapters_share_one_base_and_answer_with_their_own_labels(
    client: TestClient, runs: dict[str, Path]
) -> None:
    from intentlab.inference.opener import open_run

    reg = client.app.state.registry
    assert len(reg.bases) == 1  # bank and chat: one copy of the base model
    assert reg.entries["full"].shared_key is None
    listed = {a["name"]: a for a in client.get("/v1/adapters").json()["adapters"]}
    assert listed["bank"]["num_labels"] == 4 and listed["chat"]["num_labels"] == 3
    assert listed["bank"]["shares_base"] and not listed["full"]["shares_base"]
    texts = ["i lost my card", "hello there", "will it rain today"]
    for name, labels in (
        ("bank", {"card_arrival", "lost_card", "exchange_rate", "top_up"}),
        ("chat", set(OTHER_INTENTS)),
    ):
        r = predict(client, texts=texts, adapter=name, top_k=2)
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert all({p["intent"] for p in x["intents"]} <= labels for x in preds)
        # identical to the run loaded on its own (the shared base + switched adapter changes nothing)
        solo = open_run(runs[name]).predict(texts, top_k=2)
        for got, want in zip(preds, solo, strict=True):
            assert [p["intent"] for p in got["intents"]] == [w[0] for w in want]
            assert [p["probability"] for p in got["intents"]] == pytest.approx([w[1] for w in want], abs=1e-5)


def test_load_and_unload_at_run_time(client: TestClient, runs: dict[str, Path]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/v1/adapters", json={"name": "dora", "run": "dora"}, headers=auth)
    assert r.status_code == 201, r.text
    assert predict(client, texts=["hello"], adapter="dora").status_code == 200
    assert client.post("/v1/adapters", json={"name": "dora", "run": "dora"}, headers=auth).status_code == 409
    assert client.delete("/v1/adapters/dora", headers=auth).status_code == 204
    assert predict(client, texts=["hello"], adapter="dora").status_code == 404
    assert client.delete("/v1/adapters/dora", headers=auth).status_code == 404
    # the others still work after the unload
    assert predict(client, texts=["hello there"], adapter="chat").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"texts": ["hi"], "adapter": "nope"}, 404, "unknown adapter"),
        ({"texts": [], "adapter": "bank"}, 422, "texts is empty"),
        ({"texts": ["a", "b", "c", "d", "e"], "adapter": "bank"}, 413, "too many texts"),
        ({"texts": ["x" * 51], "adapter": "bank"}, 413, "over the 50 limit"),
        ({"texts": ["   "], "adapter": "bank"}, 422, "is empty"),
        ({"texts": ["hi"]}, 422, "several adapters are loaded"),
        ({"texts": "hi", "adapter": "bank"}, 422, "list"),
        ({"texts": [1, 2], "adapter": "bank"}, 422, "string"),
        ({"texts": ["hi"], "adapter": "bank", "top_k": 0}, 422, "greater than or equal"),
    ],
)
def test_bad_predict_requests(client: TestClient, body: dict[str, object], status: int, needle: str) -> None:
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status, r.text
    assert needle in json.dumps(r.json())


def test_malformed_and_oversized_bodies(client: TestClient) -> None:
    r = client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post(
        "/v1/predict",
        content=b'{"texts": ["' + b"a" * 4000 + b'"]}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and "over 2048 bytes" in r.text

    def chunks():  # no Content-Length: streamed, still capped
        for _ in range(10):
            yield b" " * 500

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, {"name": "x", "run": "dora"}, 401),
        ({"Authorization": "Bearer wrong"}, {"name": "x", "run": "dora"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, {"name": "../x", "run": "dora"}, 422),
        ({"Authorization": f"Bearer {TOKEN}"}, {"name": "x", "run": "../../etc"}, 400),
        ({"Authorization": f"Bearer {TOKEN}"}, {"name": "x", "run": "/etc"}, 400),
        ({"Authorization": f"Bearer {TOKEN}"}, {"name": "x", "run": "missing-run"}, 422),
    ],
)
def test_admin_endpoint_guards(
    client: TestClient, headers: dict[str, str], body: dict[str, str], status: int
) -> None:
    r = client.post("/v1/adapters", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert "x" not in client.app.state.registry.entries


def test_corrupt_adapter_fails_cleanly_and_others_keep_working(
    client: TestClient, runs: dict[str, Path]
) -> None:
    import shutil

    bad = runs["bank"].parent / "corrupt"
    shutil.copytree(runs["chat"], bad)
    (bad / "model" / "adapter" / "adapter_model.safetensors").write_bytes(b"garbage" * 10)
    r = client.post(
        "/v1/adapters",
        json={"name": "corrupt", "run": "corrupt"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert r.status_code == 422 and "corrupt" in r.text
    assert predict(client, texts=["hello there"], adapter="chat").status_code == 200
    assert predict(client, texts=["i lost my card"], adapter="bank").status_code == 200


def test_admin_disabled_without_token(runs: dict[str, Path]) -> None:
    with TestClient(create_app([str(runs["bank"])])) as c:
        assert c.post("/v1/adapters", json={"name": "a", "run": "x"}).status_code == 403
        r = c.post("/v1/predict", json={"texts": ["hi"]})  # one adapter: the name is optional
        assert r.status_code == 200 and r.json()["adapter"] == "bank"
        assert '<select id="adapter">' in c.get("/").text
        assert "/v1/predict" in c.get("/openapi.json").json()["paths"]


def test_requests_queued_during_a_batch_form_the_next_one(client: TestClient) -> None:
    """Continuous batching: while the model thread is busy, arriving requests queue up and then run
    together, so 8 concurrent requests take at most 2 forward passes (the one that found the model
    idle, and the rest)."""
    import concurrent.futures
    import threading
    import time

    batcher = client.app.state.batcher
    gate = threading.Event()
    busy = client.portal.start_task_soon(batcher.run, gate.wait)  # occupies the model thread
    before_batches, before_requests = batcher.batches, batcher.requests
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = [
            pool.submit(lambda i=i: predict(client, texts=[f"card {i}"], adapter="bank").status_code)
            for i in range(8)
        ]
        deadline = time.monotonic() + 60
        while batcher.requests - before_requests < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        assert [c.result() for c in codes] == [200] * 8
    busy.result()
    assert batcher.requests - before_requests == 8
    assert 1 <= batcher.batches - before_batches <= 2
    health = client.get("/healthz").json()
    assert health["requests"] == batcher.requests and health["batches"] == batcher.batches


def test_batcher_takes_what_is_queued_and_waits_only_when_asked() -> None:
    import asyncio

    from intentlab.serving.batcher import Batcher, Item

    async def go() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()

        def item() -> Item:
            return Item("a", [[1, 2]], 1, None, loop.create_future())

        idle = Batcher(registry=None, wait_ms=0, max_batch_texts=3)  # type: ignore[arg-type]
        idle.queue = asyncio.Queue()
        for _ in range(5):
            idle.queue.put_nowait(item())
        first, second = len(await idle._collect()), len(await idle._collect())  # capped at 3 texts
        waiting = Batcher(registry=None, wait_ms=60_000, max_batch_texts=2)  # type: ignore[arg-type]
        waiting.queue = asyncio.Queue()
        waiting.queue.put_nowait(item())
        loop.call_soon(waiting.queue.put_nowait, item())  # arrives after the collector started waiting
        return first, second, len(await asyncio.wait_for(waiting._collect(), 30))

    assert asyncio.run(go()) == (3, 2, 2)


def test_parallel_batches_run_at_once_on_onnxruntime() -> None:
    """With parallel=2 a second batch starts while the first is still running (a barrier both must
    reach together); with parallel=1 the same two requests would break the barrier and fail."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from intentlab.serving.batcher import Batcher

    barrier = threading.Barrier(2, timeout=30)
    started = threading.Event()

    class Probe(Batcher):
        def _predict_group(self, adapter: str, group: list) -> list:  # type: ignore[type-arg]
            started.set()
            barrier.wait()  # returns only when two batches are in flight together
            return [[{"ok": True}] for _ in group]

    async def go() -> list[object]:
        batcher = Probe(SimpleNamespace(backend="onnxruntime"), parallel=2)  # type: ignore[arg-type]
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.predict("a", [[1]], 1))
            await asyncio.to_thread(started.wait, 30)  # the first batch is running
            second = asyncio.create_task(batcher.predict("a", [[2]], 1))
            return list(await asyncio.wait_for(asyncio.gather(first, second), 60))
        finally:
            await batcher.stop()

    assert asyncio.run(go()) == [[{"ok": True}], [{"ok": True}]]
    with pytest.raises(ValueError, match="onnxruntime"):
        Batcher(SimpleNamespace(backend="torch"), parallel=2)  # type: ignore[arg-type]


def test_slow_client_gets_408_while_others_are_served(runs: dict[str, Path]) -> None:
    """A client that stalls mid-body is cut off with 408; a normal client is served in the meantime."""
    import socket

    import httpx

    from live_server import live_server

    # a generous deadline: on a loaded machine the normal client must never be the one cut off
    app = create_app([str(runs["full"])], limits=Limits(body_timeout_s=5.0))
    with live_server(app) as (url, port):
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"texts": ['
        )  # then nothing
        ok = httpx.post(f"{url}/v1/predict", json={"texts": ["where is my card"]}, timeout=10)
        assert ok.status_code == 200
        slow.settimeout(60)
        reply = b""
        while b"not received within" not in reply:  # the 408's head and body may come in several reads
            chunk = slow.recv(4096)
            if not chunk:
                break
            reply += chunk
        slow.close()
        assert reply.startswith(b"HTTP/1.1 408") and b"not received within 5 s" in reply


def test_bounded_load_no_errors_and_stable_memory(runs: dict[str, Path]) -> None:
    """8 concurrent clients, 400 requests on loopback against a real server: no errors, memory flat."""
    import asyncio
    import resource

    import httpx
    import numpy as np

    from live_server import live_server

    texts = ["i lost my card", "hello there", "what exchange rate do you use", "top up failed"]

    async def load(url: str, n: int) -> list[float]:
        lat: list[float] = []
        todo = iter(range(n))

        async def client(c: httpx.AsyncClient) -> None:
            for i in todo:
                t0 = asyncio.get_running_loop().time()
                r = await c.post(f"{url}/v1/predict", json={"texts": [texts[i % 4]], "adapter": "bank"})
                assert r.status_code == 200, r.text
                lat.append(asyncio.get_running_loop().time() - t0)

        async with httpx.AsyncClient(timeout=30) as c:
            await asyncio.gather(*(client(c) for _ in range(8)))
        return lat

    app = create_app([str(runs["bank"]), str(runs["chat"])])
    with live_server(app) as (url, _):
        asyncio.run(load(url, 100))  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        lat = asyncio.run(load(url, 400))
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(lat) == 400
    assert grown_mb < 50, f"peak memory grew {grown_mb:.0f} MB over 400 requests"
    print(f"p50 {np.percentile(lat, 50) * 1000:.1f} ms, p99 {np.percentile(lat, 99) * 1000:.1f} ms")


# ----------------------------------------------------------------------------- hostile requests
@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"texts": ["hi"], "adapter": "bank", "top_k": NaN}', "NaN is not valid JSON"),
        (b'{"texts": [NaN], "adapter": "bank"}', "NaN is not valid JSON"),
        (b'{"texts": ["hi"], "adapter": "bank", "top_k": Infinity}', "Infinity is not valid JSON"),
        (b'{"texts": ["card \\ud800"], "adapter": "bank"}', "not valid Unicode"),
        (b'{"texts": ["hi"], "adapter": "bank", "top_k": true}', "top_k"),
        (b'{"texts": ["hi"], "adapter": "bank", "extra": 1}', "extra"),
        (b"[1, 2]", "body"),
    ],
)
def test_malformed_json_is_a_422_not_a_500(client: TestClient, raw: bytes, needle: str) -> None:
    r = client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]


def test_json_is_accepted_whatever_the_content_type(client: TestClient) -> None:
    body = b'{"texts": ["i lost my card"], "adapter": "bank", "top_k": 2}'
    for ctype in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"content-type": ctype} if ctype else {}
        r = client.post("/v1/predict", content=body, headers=headers)
        assert r.status_code == 200 and len(r.json()["predictions"][0]["intents"]) == 2


def test_the_readme_curl_example_works_as_written(runs: dict[str, Path], tmp_path: Path) -> None:
    import re
    import shutil
    import subprocess

    from live_server import live_server

    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(
        li.strip() for li in readme.splitlines() if li.strip().startswith("curl -s localhost:8000/v1/predict")
    )
    adapter = re.search(r'"adapter": "([^"]+)"', line).group(1)
    served = tmp_path / adapter
    shutil.copytree(runs["bank"], served)
    with live_server(create_app([str(served)])) as (_, port):
        out = subprocess.run(
            ["bash", "-c", line.replace("localhost:8000", f"127.0.0.1:{port}")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    reply = json.loads(out.stdout)
    assert reply["adapter"] == adapter and len(reply["predictions"][0]["intents"]) == 3


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Authorization": TOKEN}, {"name": "x", "run": "dora"}, 401),  # no "Bearer " scheme
        ({"Authorization": f"bearer {TOKEN}"}, {"name": "x", "run": "dora"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, {"name": "x\n", "run": "dora"}, 422),  # newline in a name
        ({"Authorization": f"Bearer {TOKEN}"}, {"name": "x", "run": "do\u0000ra"}, 422),  # NUL in a path
        ({"Authorization": f"Bearer {TOKEN}"}, {"name": 5, "run": "dora"}, 422),
    ],
)
def test_admin_requests_are_strict(
    client: TestClient, headers: dict[str, str], body: dict[str, object], status: int
) -> None:
    r = client.post("/v1/adapters", json=body, headers=headers)
    assert r.status_code == status, r.text
    assert not any(name.startswith("x") for name in client.app.state.registry.entries)


def test_a_failed_load_is_rolled_back_completely(client: TestClient, runs: dict[str, Path]) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    auth = {"Authorization": f"Bearer {TOKEN}"}
    root = runs["bank"].parent
    extra = root / "extra-weights"
    shutil.copytree(runs["chat"], extra)
    weights = extra / "model" / "adapter" / "adapter_model.safetensors"
    state = load_file(weights)
    state["base_model.model.encoder.not_a_layer.lora_A.weight"] = next(iter(state.values())).clone()
    save_file(state, weights)  # fails after the adapter was added to the shared base
    r = client.post("/v1/adapters", json={"name": "again", "run": "extra-weights"}, headers=auth)
    assert r.status_code == 422, r.text
    base = client.app.state.registry.bases[client.app.state.registry.entries["bank"].shared_key]
    assert "again" not in base.peft_config  # nothing half-registered
    listed = root / "listed-info"
    shutil.copytree(runs["chat"], listed)
    (listed / "model" / "intentlab.json").write_text("[1, 2]")
    r = client.post("/v1/adapters", json={"name": "again", "run": "listed-info"}, headers=auth)
    assert r.status_code == 422 and "must hold an object" in r.text
    r = client.post("/v1/adapters", json={"name": "again", "run": "chat"}, headers=auth)
    assert r.status_code == 201, r.text  # the name is free: the failed loads left nothing behind
    assert client.delete("/v1/adapters/again", headers=auth).status_code == 204


def test_one_bad_request_never_fails_its_neighbours(runs: dict[str, Path]) -> None:
    import asyncio

    import httpx

    from live_server import live_server

    async def burst(url: str) -> list[int]:
        async with httpx.AsyncClient(timeout=60) as c:
            good = [c.post(f"{url}/v1/predict", json={"texts": [f"i lost my card {i}"]}) for i in range(20)]
            bad = c.post(f"{url}/v1/predict", content=b'{"texts": ["card \\ud800"]}')
            replies = await asyncio.gather(bad, *good)
        return [r.status_code for r in replies]

    with live_server(create_app([str(runs["bank"])])) as (url, _):
        codes = asyncio.run(burst(url))
    assert codes[0] == 422 and codes[1:] == [200] * 20


def test_unloading_while_requests_are_in_flight(runs: dict[str, Path]) -> None:
    import asyncio

    import httpx

    from live_server import live_server

    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def storm(url: str) -> list[int]:
        async with httpx.AsyncClient(timeout=60) as c:
            requests = [
                c.post(f"{url}/v1/predict", json={"texts": ["hi"], "adapter": "chat"}) for _ in range(80)
            ]
            unload = c.delete(f"{url}/v1/adapters/chat", headers=auth)
            replies = await asyncio.gather(*requests[:40], unload, *requests[40:])
        return [r.status_code for r in replies]

    app = create_app(
        [str(runs["bank"]), str(runs["chat"])], admin_token=TOKEN, runs_root=str(runs["bank"].parent)
    )
    with live_server(app) as (url, _):
        codes = asyncio.run(storm(url))
    assert 204 in codes and set(codes) <= {200, 204, 404, 503}, codes


def test_idle_and_trickling_connections_do_not_starve_others(runs: dict[str, Path]) -> None:
    """200 idle connections and 10 clients trickling headers: normal requests are served all along,
    and the stalled connections are cut off by the header deadline."""
    import socket

    import httpx

    from live_server import live_server

    app = create_app([str(runs["bank"])], limits=Limits(body_timeout_s=2.0))
    with live_server(app, header_timeout_s=2.0) as (url, port):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        trickle = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        for s in trickle:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        for _ in range(10):
            r = httpx.post(f"{url}/v1/predict", json={"texts": ["where is my card"]}, timeout=30)
            assert r.status_code == 200, r.text
        for s in trickle[:3]:
            s.settimeout(20)
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 408"), reply[:80]  # cut off, not held forever
        for s in idle + trickle:
            s.close()


def test_a_body_sent_byte_by_byte_hits_the_total_deadline(runs: dict[str, Path]) -> None:
    import socket
    import time

    from live_server import live_server

    app = create_app([str(runs["bank"])], limits=Limits(body_timeout_s=1.5))
    with live_server(app) as (_, port):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        s.settimeout(0.5)
        reply = b""
        for _ in range(40):  # one byte every 0.5 s: each chunk is in time, the body never is
            try:
                s.sendall(b" ")
                reply += s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if reply:
                break
            time.sleep(0.1)
        s.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]


@pytest.mark.parametrize(
    ("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE"), ("default", "unset")]
)
def test_model_commands_make_openmp_threads_sleep_unless_the_user_chose(
    given: str | None, expected: str
) -> None:
    """Spinning OpenMP threads starve the HTTP side and, on a busy machine, training itself; the policy
    must be set before torch loads."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = (
        "import os, sys; from intentlab.cli import main; assert 'torch' not in sys.modules; "
        "assert main(['predict', '/no/such/run', 'hello']) == 2; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_models_load_and_run_on_the_model_thread_with_its_own_torch_threads(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One OpenMP team: loading at start-up runs on the model thread too (a second thread that ran torch
    ops would add a second team, and OpenMP threads then stop spinning between ops), and that thread
    uses the torch threads it was given."""
    import threading

    import torch

    from intentlab.hardware import usable_cores
    from intentlab.serving.registry import Registry
    from intentlab.serving.runtime import serving_threads

    loaded_on = []
    real_load = Registry.load

    def load(self: Registry, name: str, run: str | Path) -> object:
        loaded_on.append(threading.current_thread().name)
        return real_load(self, name, run)

    monkeypatch.setattr(Registry, "load", load)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # also the default of threads to come: the model thread must not inherit it
        app = create_app([str(runs["bank"]), str(runs["chat"])], threads=1)
        assert len(loaded_on) == 2
        assert all(name.startswith("intentlab-model") for name in loaded_on), loaded_on
        batcher = app.state.batcher
        assert batcher.call(torch.get_num_threads) == 1
        assert batcher.call(lambda: threading.current_thread().name) == loaded_on[0]
        with TestClient(app) as c:
            r = predict(c, texts=["hello there"], adapter="bank")
            assert r.status_code == 200, r.text
    finally:
        torch.set_num_threads(before)  # torch.set_num_threads also sets the default of threads to come
    capsys.readouterr()
    assert serving_threads(3) == 3
    assert ("is more than the" in capsys.readouterr().err) is (usable_cores() < 3)
    assert serving_threads(None) == max(1, usable_cores() - 1)
    assert serving_threads(usable_cores() + 1) == usable_cores() + 1  # allowed, but said
    assert "the extra threads share cores and slow serving" in capsys.readouterr().err


def test_bf16_bases_hold_bf16_weights_and_are_not_shared_with_fp32_adapters(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base served under bf16 stores its linear weights in bf16 once (not cast at every forward); an
    adapter run in fp32 on the same base model gets a base of its own, and both still answer."""
    import torch

    from intentlab.inference.engine import Placement
    from intentlab.serving.registry import Registry

    bf16_run = str(runs["bank"])

    def placement(run: Path, bf16: bool | None = None, device: str | None = None) -> Placement:
        return Placement(torch.device("cpu"), str(run) == bf16_run)

    monkeypatch.setattr("intentlab.inference.opener.placement_for", placement)
    reg = Registry()
    reg.load("bank", runs["bank"])
    reg.load("chat", runs["chat"])
    assert len(reg.bases) == 2
    dtypes = {
        key[-1]: {m.base_layer.weight.dtype for m in base.modules() if hasattr(m, "base_layer")}
        for key, base in reg.bases.items()
    }
    assert dtypes == {"bf16": {torch.bfloat16}, "fp32": {torch.float32}}
    for name in ("bank", "chat"):
        preds = reg.predict(name, ["hello there", "bye for now"], 1)
        assert len(preds) == 2 and all(p["intents"][0]["intent"] in reg.entries[name].labels for p in preds)


def test_the_servers_connections_send_without_delay() -> None:
    """`serve` listens on a socket it binds itself; the connections asyncio accepts on it must have
    Nagle's algorithm off, or a kept-alive client waits for a delayed ACK (~40 ms) on every response."""
    import asyncio
    import socket

    from intentlab.serving.http import listening_socket

    async def accepted_nodelay() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        sock = listening_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            value = await asyncio.wait_for(seen, 30)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0
