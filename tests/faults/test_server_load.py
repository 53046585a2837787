"""The server under a bounded loopback load that mixes valid, malformed and slow clients with adapter
load/unload cycles: no valid request fails, every bad one gets its 4xx, and memory stays flat."""

from __future__ import annotations

import asyncio
import resource
import socket
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main

pytestmark = pytest.mark.slow
TOKEN = "load-test"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    root = tmp_path_factory.mktemp("load")
    for name, method in (("bank", "lora"), ("extra", "lora"), ("full", "full")):
        args = [*tiny_args(tiny_model, toy_data, 1), "--seed", str(len(name))]
        assert main(["train", "--method", method, "--out", str(root / name), *args]) == 0
    return root


def test_mixed_load_with_load_unload_cycles(runs: Path) -> None:
    pytest.importorskip("fastapi")
    import httpx

    from intentlab.serving.app import Limits, create_app
    from live_server import live_server

    texts = ["i lost my card", "what exchange rate do you use", "top up failed", "hello?"]
    bad_bodies = [
        b'{"texts": ["x"], "top_k": NaN}',
        b'{"texts": ["card \\ud800"]}',
        b"{oops",
        b'{"texts": []}',
    ]

    async def scenario(url: str, port: int, rounds: int) -> dict[str, list[int]]:
        codes: dict[str, list[int]] = {"valid": [], "bad": [], "admin": []}
        async with httpx.AsyncClient(timeout=60) as c:

            async def valid(i: int) -> None:
                for j in range(rounds):
                    adapter = ("bank", "full")[(i + j) % 2]
                    r = await c.post(f"{url}/v1/predict", json={"texts": [texts[j % 4]], "adapter": adapter})
                    codes["valid"].append(r.status_code)

            async def malformed() -> None:
                for j in range(rounds):
                    r = await c.post(f"{url}/v1/predict", content=bad_bodies[j % len(bad_bodies)])
                    codes["bad"].append(r.status_code)

            async def cycles() -> None:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                for _ in range(3):
                    r = await c.post(
                        f"{url}/v1/adapters", json={"name": "extra", "run": "extra"}, headers=auth
                    )
                    codes["admin"].append(r.status_code)
                    r = await c.post(f"{url}/v1/predict", json={"texts": ["hi"], "adapter": "extra"})
                    codes["valid"].append(r.status_code)
                    r = await c.delete(f"{url}/v1/adapters/extra", headers=auth)
                    codes["admin"].append(r.status_code)

            loop = asyncio.get_running_loop()
            slow = []
            for _ in range(30):  # connections that send half a request and stall
                s = socket.socket()
                s.setblocking(False)
                await loop.sock_connect(s, ("127.0.0.1", port))
                await loop.sock_sendall(
                    s, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"
                )
                slow.append(s)
            await asyncio.gather(*(valid(i) for i in range(6)), malformed(), malformed(), cycles())
            for s in slow:
                s.close()
        return codes

    app = create_app(
        [str(runs / "bank"), str(runs / "full")],
        admin_token=TOKEN,
        runs_root=str(runs),
        # the stalled clients are closed by the test, never waited out: the deadlines can be generous,
        # so that no valid request on a loaded machine depends on meeting them
        limits=Limits(body_timeout_s=30.0, header_timeout_s=30.0),
    )
    with live_server(app, header_timeout_s=30.0) as (url, port):
        asyncio.run(scenario(url, port, 10))  # warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        codes = asyncio.run(scenario(url, port, 40))
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert codes["valid"] and set(codes["valid"]) == {200}, sorted(set(codes["valid"]))
    assert codes["bad"] and set(codes["bad"]) == {422}, sorted(set(codes["bad"]))
    assert codes["admin"] == [201, 204] * 3
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB under a repeated load"
