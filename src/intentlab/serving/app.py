"""`intentlab serve RUN [RUN ...]`: a thin FastAPI layer over the adapter registry.

    INTENTLAB_ADMIN_TOKEN=... intentlab serve runs/lora runs/other --port 8000
    curl -s localhost:8000/v1/predict -d '{"texts": ["I lost my card"], "adapter": "lora", "top_k": 3}'

Endpoints: `POST /v1/predict`, `GET /v1/adapters`, `POST /v1/adapters` and `DELETE /v1/adapters/{name}`
(admin token), `GET /healthz`, OpenAPI at `/docs` and `/openapi.json`, and a small page at `/`.
Each request is parsed strictly (JSON whatever its content type; NaN and Infinity refused), checked
and tokenized on its own, then batched with the requests for the same adapter that arrive together.
Inputs are limited (texts per request, characters per text, body bytes, time to send them); breaches
get a 4xx naming the limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from intentlab.data.loading import valid_unicode
from intentlab.errors import UserError
from intentlab.hardware import usable_cores
from intentlab.inference.opener import check_run_files
from intentlab.serving.batcher import AdapterGone, Batcher
from intentlab.serving.http import BodyLimit, listening_socket, server_config
from intentlab.serving.registry import NAME_RE, Registry
from intentlab.serving.runtime import Limits
from intentlab.serving.traffic_log import TrafficLog

MIN_TOKEN_CHARS = 16


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr] = Field(..., description="texts to classify (1 to the server's --max-texts)")
    adapter: StrictStr | None = Field(None, description="adapter name (optional when exactly one is loaded)")
    top_k: StrictInt = Field(3, ge=1, description="intents per text (at most 20)")
    threshold: StrictFloat | StrictInt | None = Field(
        None, description="out-of-scope threshold for the adapter's scorer (default: the fitted one)"
    )


class ThresholdRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: StrictFloat | StrictInt | None = Field(
        ..., description="new threshold; null restores the fitted one"
    )


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(..., description="adapter name: 1-64 letters, digits, '.', '_' or '-'")
    run: StrictStr = Field(..., description="run folder, inside the server's runs root")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """The request body as `model`: JSON whatever the Content-Type (curl -d sends a form type), NaN
    and Infinity refused; every problem is a 422 that names it."""
    raw = await request.body()
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise HTTPException(422, "the body is nested too deeply to be a request") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPException(422, f"the body is not valid JSON ({str(e)[:120]})") from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors()
        )
        raise HTTPException(422, problems[:500]) from None


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def create_app(
    runs: list[str],
    names: list[str] | None = None,
    admin_token: str | None = None,
    runs_root: str | None = None,
    limits: Limits | None = None,
    bf16: bool | None = None,
    backend: str = "torch",
    onnx_file: str | None = None,
    threads: int | None = None,
    traffic_log: TrafficLog | None = None,
) -> Any:
    """The FastAPI app serving `runs` (named after their folders unless `names` is given); with
    `backend="onnxruntime"` they are export folders served from their ONNX models. `threads`: torch's
    threads on the model thread (None: torch's own setting). `traffic_log`: where each prediction is
    appended (`intentlab serve --log`; serving/traffic_log.py)."""
    from intentlab.models.loading import quiet_transformers

    quiet_transformers()
    limits = limits or Limits()
    onnx_threads = None
    if limits.parallel_batches > 1:
        onnx_threads = max(1, usable_cores() // limits.parallel_batches)
    registry = Registry(bf16=bf16, backend=backend, onnx_file=onnx_file, onnx_threads=onnx_threads)
    names = names or [Path(r).name for r in runs]
    if len(set(names)) != len(names):
        raise UserError(f"two runs would share an adapter name ({names}). Name them: --name a --name b.")
    batcher = Batcher(
        registry, limits.batch_wait_ms, limits.max_batch_texts, limits.parallel_batches, threads
    )
    for name, run in zip(names, runs, strict=True):
        batcher.call(registry.load, name, run)  # on the model thread, like every torch call (Batcher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        await batcher.start()
        yield
        await batcher.stop()
        if traffic_log is not None:
            traffic_log.close()

    from fastapi_offline import FastAPIOffline

    # /docs and /redoc from the package's own Swagger UI and ReDoc files (FastAPI's load them from a CDN)
    app = FastAPIOffline(
        title="intentlab",
        version="1",
        lifespan=lifespan,
        description="Intent classification: many adapters on one base model.",
    )
    app.state.registry = registry
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.state.traffic_log = traffic_log
    _predict_routes(app, registry, batcher, limits, traffic_log)
    token = admin_token or os.environ.get("INTENTLAB_ADMIN_TOKEN") or None
    if token and len(token) < MIN_TOKEN_CHARS:
        print(
            f"intentlab serve: warning: the admin token has {len(token)} characters; use {MIN_TOKEN_CHARS} or more "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            file=sys.stderr,
        )
    _admin_routes(app, registry, batcher, token, Path(runs_root or os.getcwd()).resolve(), limits)
    page = (resources.files("intentlab.serving") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    return app


def _check_texts(texts: list[str], limits: Limits) -> None:
    if not texts:
        raise HTTPException(422, f"texts is empty: send 1 to {limits.max_texts} texts")
    if len(texts) > limits.max_texts:
        raise HTTPException(413, f"too many texts: {len(texts)} > {limits.max_texts} per request")
    for i, t in enumerate(texts):
        if not t.strip():
            raise HTTPException(422, f"texts[{i}] is empty")
        if len(t) > limits.max_chars:
            raise HTTPException(413, f"texts[{i}] has {len(t)} characters, over the {limits.max_chars} limit")
        if not valid_unicode(t):
            raise HTTPException(422, f"texts[{i}] is not valid Unicode (a lone surrogate)")


def _predict_routes(
    app: FastAPI, registry: Registry, batcher: Batcher, limits: Limits, traffic_log: TrafficLog | None
) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        busy = batcher.busiest()
        stuck = busy > limits.stuck_after_s
        body = {
            "status": "stuck" if stuck else "ok",
            "model_thread_busy_s": round(busy, 3),
            "adapters": len(registry.entries),
            "shared_bases": len(registry.bases),
            "requests": batcher.requests,
            "batches": batcher.batches,
            **({"traffic_log": traffic_log.stats()} if traffic_log is not None else {}),
        }
        return Response(json.dumps(body), status_code=503 if stuck else 200, media_type="application/json")

    @app.get("/v1/adapters")
    async def list_adapters() -> dict[str, Any]:
        return {"adapters": [e.describe() for e in list(registry.entries.values())]}

    @app.post("/v1/predict", openapi_extra=_schema(PredictRequest))
    async def predict(request: Request) -> Response:
        req: PredictRequest = await parse_body(request, PredictRequest)
        if req.top_k > limits.max_top_k:
            raise HTTPException(422, f"top_k {req.top_k} is over the limit of {limits.max_top_k}")
        _check_texts(req.texts, limits)
        name = req.adapter
        if name is None:
            if len(registry.entries) != 1:
                raise HTTPException(
                    422, f"several adapters are loaded: name one of {sorted(registry.entries)}"
                )
            name = next(iter(registry.entries))
        t0 = time.perf_counter()
        try:
            threshold = registry.entries[name].decider.check_threshold(req.threshold)
            ids = registry.encode(name, req.texts)  # this request alone: its errors stay its own
            preds = await batcher.predict(name, ids, req.top_k, threshold)
        except (KeyError, AdapterGone):
            raise HTTPException(
                404, f"unknown adapter {name!r}; loaded: {sorted(registry.entries)}"
            ) from None
        except UserError as e:
            raise HTTPException(422, str(e)) from None
        milliseconds = round(1000 * (time.perf_counter() - t0), 2)
        if traffic_log is not None:  # queued, never waited for
            traffic_log.record(name, req.texts, preds, milliseconds)
        body = {
            "adapter": name,
            "predictions": [{"text": t, **p} for t, p in zip(req.texts, preds, strict=True)],
            "milliseconds": milliseconds,
        }
        return Response(json.dumps(body).encode(), media_type="application/json")  # no per-field re-encoding


def _admin_routes(
    app: FastAPI, registry: Registry, batcher: Batcher, token: str | None, root: Path, limits: Limits
) -> None:
    failures: dict[str, list[float]] = {}  # client -> times of its recent wrong tokens (batcher's clock)

    def admin(request: Request) -> None:
        if not token:
            raise HTTPException(
                403,
                "runtime loading is disabled: start the server with INTENTLAB_ADMIN_TOKEN or --admin-token-file",
            )
        client = request.client.host if request.client else "?"
        now = batcher.clock()
        recent = [t for t in failures.get(client, []) if now - t < limits.admin_lockout_s]
        if len(recent) >= limits.admin_failures:
            wait = limits.admin_lockout_s - (now - recent[0])
            raise HTTPException(
                429,
                f"too many wrong admin tokens from {client}; try again in {wait:.0f} s",
                {"Retry-After": f"{wait:.0f}"},
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not secrets.compare_digest(given.encode(), token.encode()):
            failures[client] = [*recent, now]
            print(
                f"intentlab serve: wrong admin token from {client} ({len(recent) + 1} in a row)",
                file=sys.stderr,
            )
            raise HTTPException(401, "missing or wrong admin token (Authorization: Bearer TOKEN)")
        failures.pop(client, None)

    @app.post("/v1/adapters", status_code=201, openapi_extra=_schema(LoadRequest))
    async def load_adapter(request: Request) -> dict[str, Any]:
        admin(request)
        req: LoadRequest = await parse_body(request, LoadRequest)
        if not NAME_RE.fullmatch(req.name):
            raise HTTPException(422, "adapter name must be 1-64 letters, digits, '.', '_' or '-'")
        try:
            path = (root / req.run).resolve()
        except (ValueError, OSError) as e:  # a NUL byte, a loop of links
            raise HTTPException(422, f"run path is not usable ({e})") from None
        if not path.is_relative_to(root):
            raise HTTPException(400, f"run path must be inside the runs root {root}")
        if req.name in registry.entries:
            raise HTTPException(409, f"adapter {req.name!r} is already loaded")
        try:  # every file check off the model thread, within a deadline: a bad folder cannot stall serving
            await asyncio.wait_for(
                asyncio.to_thread(check_run_files, path, root, registry.backend), limits.load_check_s
            )
        except asyncio.TimeoutError:
            raise HTTPException(
                422,
                f"the checks of run {req.run} did not finish within {limits.load_check_s:g} s; not loaded",
            ) from None
        except UserError as e:
            raise HTTPException(422, str(e)) from None
        try:
            entry = await batcher.run(registry.load, req.name, path)
        except UserError as e:
            raise HTTPException(422, str(e)) from None
        return entry.describe()

    @app.put("/v1/adapters/{name}/threshold", openapi_extra=_schema(ThresholdRequest))
    async def set_threshold(name: str, request: Request) -> dict[str, Any]:
        admin(request)
        req: ThresholdRequest = await parse_body(request, ThresholdRequest)
        entry = registry.entries.get(name)
        if entry is None:
            raise HTTPException(404, f"unknown adapter {name!r}")
        try:
            entry.threshold = entry.decider.check_threshold(req.threshold)
        except UserError as e:
            raise HTTPException(422, str(e)) from None
        return entry.describe()

    @app.delete("/v1/adapters/{name}", status_code=204, response_class=Response)
    async def unload_adapter(name: str, request: Request) -> None:
        admin(request)
        if name not in registry.entries:
            raise HTTPException(404, f"unknown adapter {name!r}")
        try:
            await batcher.run(registry.unload, name)  # on the model thread: never during a batch
        except KeyError:
            raise HTTPException(404, f"unknown adapter {name!r}") from None


def serve(runs: list[str], host: str, port: int, **kwargs: Any) -> None:
    import uvicorn

    sock = listening_socket(host, port)
    try:
        app = create_app(runs, **kwargs)
        limits = kwargs.get("limits") or Limits()
        port = sock.getsockname()[1]
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        print(f"serving {len(runs)} run(s) on http://{where} (page at /, API docs at /docs)", flush=True)
        config = server_config(app, host, port, limits.header_timeout_s, limits.max_header_bytes)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
