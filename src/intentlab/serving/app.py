"""`intentlab serve RUN [RUN ...]`: a thin FastAPI layer over the adapter registry.

    intentlab serve runs/lora runs/other --port 8000
    curl -s localhost:8000/v1/predict -d '{"texts": ["I lost my card"], "adapter": "lora", "top_k": 3}'

Endpoints: `POST /v1/predict`, `GET /v1/adapters`, `POST /v1/adapters` and `DELETE /v1/adapters/{name}`
(admin token), `GET /healthz`, OpenAPI at `/docs` and `/openapi.json`, and a small page at `/`.
Requests for the same adapter that arrive together are batched into one forward pass. Inputs are
limited (texts per request, characters per text, body bytes); breaches get a 4xx naming the limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from intentlab.errors import UserError
from intentlab.serving.registry import NAME_RE, Registry


class PredictRequest(BaseModel):
    texts: list[str] = Field(..., description="texts to classify (1 to the server's --max-texts)")
    adapter: str | None = Field(None, description="adapter name (optional when exactly one is loaded)")
    top_k: int = Field(3, ge=1, description="intents per text (at most 20)")


class LoadRequest(BaseModel):
    name: str = Field(..., description="adapter name: 1-64 letters, digits, '.', '_' or '-'")
    run: str = Field(..., description="run folder, inside the server's runs root")


@dataclass
class Limits:
    max_texts: int = 64
    max_chars: int = 2000
    max_body_bytes: int = 256 * 1024
    max_top_k: int = 20
    batch_wait_ms: float = 5.0
    max_batch_texts: int = 256
    body_timeout_s: float = 10.0


class Batcher:
    """Collects requests for a few ms, groups them by adapter and runs each group as one batch.

    All model calls go through one worker thread: the active adapter of a shared base is switched
    per group, never concurrently.
    """

    def __init__(self, registry: Registry, limits: Limits) -> None:
        self.registry = registry
        self.limits = limits
        self.queue: asyncio.Queue[tuple[str, list[str], int, asyncio.Future[Any]]] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intentlab-model")
        self.task: asyncio.Task[None] | None = None
        self.batches = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, adapter: str, texts: list[str], top_k: int) -> list[list[dict[str, Any]]]:
        assert self.queue is not None, "batcher not started"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.queue.put((adapter, texts, top_k, fut))
        return await fut

    async def _run(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.limits.batch_wait_ms / 1000
            while sum(len(i[1]) for i in items) < self.limits.max_batch_texts:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            groups: dict[str, list[tuple[str, list[str], int, asyncio.Future[Any]]]] = {}
            for item in items:
                groups.setdefault(item[0], []).append(item)
            for adapter, group in groups.items():
                texts = [t for g in group for t in g[1]]
                k = max(g[2] for g in group)
                try:
                    preds = await loop.run_in_executor(
                        self.executor, self.registry.predict, adapter, texts, k
                    )
                    self.batches += 1
                except Exception as e:
                    for g in group:
                        if not g[3].done():
                            g[3].set_exception(e)
                    continue
                start = 0
                for _, t, top_k, fut in group:
                    if not fut.done():
                        fut.set_result([p[:top_k] for p in preds[start : start + len(t)]])
                    start += len(t)


class BodyLimit:
    """ASGI middleware: reads a request body whole before the app sees it, with two limits.

    413 when the body is over `max_bytes` (declared by Content-Length or streamed); 408 when the client
    stalls for more than `timeout_s` between chunks (a slow or stuck client holds no handler meanwhile:
    other requests keep being served).
    """

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    @staticmethod
    async def _reply(send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        too_big = f"request body over {self.max_bytes} bytes"
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reply(send, 413, too_big)
        chunks, size = [], 0
        while True:
            try:
                msg = await asyncio.wait_for(receive(), self.timeout_s)
            except asyncio.TimeoutError:
                return await self._reply(send, 408, f"request body not received within {self.timeout_s:g} s")
            if msg["type"] != "http.request":  # client went away
                return None
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._reply(send, 413, too_big)
            if not msg.get("more_body"):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def receive_again() -> dict[str, Any]:
            return replay.pop() if replay else await receive()

        return await self.app(scope, receive_again, send)


def create_app(
    runs: list[str],
    names: list[str] | None = None,
    admin_token: str | None = None,
    runs_root: str | None = None,
    limits: Limits | None = None,
    bf16: bool | None = None,
) -> Any:
    """The FastAPI app serving `runs` (named after their folders unless `names` is given)."""
    from intentlab.models.classifier import quiet_transformers

    quiet_transformers()
    limits = limits or Limits()
    registry = Registry(bf16=bf16)
    names = names or [Path(r).name for r in runs]
    if len(set(names)) != len(names):
        raise UserError(f"two runs would share an adapter name ({names}). Name them: --name a --name b.")
    for name, run in zip(names, runs, strict=True):
        registry.load(name, run)
    root = Path(runs_root or os.getcwd()).resolve()
    token = admin_token or os.environ.get("INTENTLAB_ADMIN_TOKEN")
    batcher = Batcher(registry, limits)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="intentlab",
        version="1",
        lifespan=lifespan,
        description="Intent classification: many adapters on one base model.",
    )
    app.state.registry = registry
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)

    def admin(request: Request) -> None:
        if not token:
            raise HTTPException(
                403,
                "runtime loading is disabled: start the server with --admin-token or INTENTLAB_ADMIN_TOKEN",
            )
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong admin token (Authorization: Bearer TOKEN)")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "adapters": len(registry.entries), "shared_bases": len(registry.bases)}

    @app.get("/v1/adapters")
    async def list_adapters() -> dict[str, Any]:
        return {"adapters": [e.describe() for e in registry.entries.values()]}

    @app.post("/v1/predict")
    async def predict(req: PredictRequest) -> dict[str, Any]:
        if req.top_k > limits.max_top_k:
            raise HTTPException(422, f"top_k {req.top_k} is over the limit of {limits.max_top_k}")
        if not req.texts:
            raise HTTPException(422, f"texts is empty: send 1 to {limits.max_texts} texts")
        if len(req.texts) > limits.max_texts:
            raise HTTPException(413, f"too many texts: {len(req.texts)} > {limits.max_texts} per request")
        for i, t in enumerate(req.texts):
            if not t.strip():
                raise HTTPException(422, f"texts[{i}] is empty")
            if len(t) > limits.max_chars:
                raise HTTPException(
                    413, f"texts[{i}] has {len(t)} characters, over the {limits.max_chars} limit"
                )
        name = req.adapter
        if name is None:
            if len(registry.entries) != 1:
                raise HTTPException(
                    422, f"several adapters are loaded: name one of {sorted(registry.entries)}"
                )
            name = next(iter(registry.entries))
        if name not in registry.entries:
            raise HTTPException(404, f"unknown adapter {name!r}; loaded: {sorted(registry.entries)}")
        t0 = time.perf_counter()
        preds = await batcher.predict(name, req.texts, req.top_k)
        return {
            "adapter": name,
            "predictions": [{"text": t, "intents": p} for t, p in zip(req.texts, preds, strict=True)],
            "milliseconds": round(1000 * (time.perf_counter() - t0), 2),
        }

    @app.post("/v1/adapters", status_code=201)
    async def load_adapter(req: LoadRequest, request: Request) -> dict[str, Any]:
        admin(request)
        if not NAME_RE.match(req.name):
            raise HTTPException(422, "adapter name must be 1-64 letters, digits, '.', '_' or '-'")
        path = (root / req.run).resolve() if not Path(req.run).is_absolute() else Path(req.run).resolve()
        if not path.is_relative_to(root):
            raise HTTPException(400, f"run path must be inside the runs root {root}")
        if req.name in registry.entries:
            raise HTTPException(409, f"adapter {req.name!r} is already loaded")
        loop = asyncio.get_running_loop()
        try:
            entry = await loop.run_in_executor(batcher.executor, registry.load, req.name, path)
        except UserError as e:
            raise HTTPException(422, str(e)) from None
        return entry.describe()

    @app.delete("/v1/adapters/{name}", status_code=204, response_class=Response)
    async def unload_adapter(name: str, request: Request) -> None:
        admin(request)
        if name not in registry.entries:
            raise HTTPException(404, f"unknown adapter {name!r}")
        await asyncio.get_running_loop().run_in_executor(batcher.executor, registry.unload, name)

    page = (resources.files("intentlab.serving") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    return app


def serve(runs: list[str], host: str, port: int, **kwargs: Any) -> None:
    import uvicorn

    app = create_app(runs, **kwargs)
    print(f"serving {len(runs)} run(s) on http://{host}:{port} (page at /, API docs at /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5, limit_concurrency=1000)
