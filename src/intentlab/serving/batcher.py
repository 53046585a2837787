"""Dynamic batching for `intentlab serve`: requests that arrive together for one adapter run as one
forward pass.

Batching is continuous: a batch takes every request queued when the model becomes free, so requests
that arrive while a batch runs form the next one, and a request that finds the model idle starts at
once (or after `wait_ms`, when set, to gather companions).

Each request is validated and tokenized on its own before it joins a batch, so malformed input is
that request's 422 and never reaches a batch. Should a batch still fail, its requests are retried
one by one, so one request's failure never becomes another's.

With torch, all model calls go through one worker thread: the active adapter of a shared base is
switched per group, never concurrently, and loading or unloading an adapter (on the same thread) never
overlaps a batch. Loading at start-up goes through that thread too (`call`): torch's OpenMP runtime
keeps a team of threads for every thread that ever ran a parallel op, and with more OpenMP threads than
cores they stop spinning between ops. With the models loaded on the main thread (and OpenMP's default
wait policy), one-text requests on 2 cores took 29 ms instead of 17 (benchmarks/README.md, "Serving
backends"). `threads` sets the model thread's torch threads; `serve` leaves one core to the event loop
(HTTP, JSON, tokenizing).

ONNX Runtime sessions are safe to run concurrently, so there `parallel` batches may run at once, each
on its own worker thread (and, in `serve`, with a share of the CPU cores each).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from intentlab.inference.engine import Outputs
from intentlab.serving.registry import Registry


class AdapterGone(Exception):
    """The adapter was unloaded while the request waited (the API answers 404)."""


@dataclass
class Item:
    adapter: str
    ids: list[list[int]]
    top_k: int
    threshold: float | None
    future: asyncio.Future[Any]


class Batcher:
    """Takes the queued requests (waiting up to `wait_ms` for more), groups them by adapter and runs each
    group as one batch."""

    def __init__(
        self,
        registry: Registry,
        wait_ms: float = 0.0,
        max_batch_texts: int = 256,
        parallel: int = 1,
        threads: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if parallel > 1 and registry.backend != "onnxruntime":
            raise ValueError(
                "parallel batches need the onnxruntime backend (torch switches adapters per batch)"
            )
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be 1 or more, got {threads}")
        self.registry = registry
        self.wait_ms = wait_ms
        self.max_batch_texts = max_batch_texts
        self.parallel = parallel
        self.queue: asyncio.Queue[Item] | None = None
        self.executor = ThreadPoolExecutor(
            max_workers=parallel,
            thread_name_prefix="intentlab-model",
            initializer=None if threads is None else _torch_threads,
            initargs=() if threads is None else (threads,),
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.batches = 0  # forward passes run
        self.requests = 0  # requests received (requests / batches: the mean batch, in requests)
        self.clock = clock  # injected by tests: no test waits for a real deadline
        self.busy: dict[int, float] = {}  # model-thread job -> when it started (clock)

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.tasks = [asyncio.create_task(self._run()) for _ in range(self.parallel)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _timed(self, fn: Any, *args: Any) -> Any:
        """On the model thread: `fn(*args)`, with its start time kept while it runs (`busiest`)."""
        key = threading.get_ident()
        self.busy[key] = self.clock()
        try:
            return fn(*args)
        finally:
            self.busy.pop(key, None)

    def busiest(self) -> float:
        """Seconds the longest-running model-thread job has been running (0: idle)."""
        now = self.clock()
        return max((now - t for t in list(self.busy.values())), default=0.0)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the model thread and wait for it (outside the event loop: start-up)."""
        return self.executor.submit(self._timed, fn, *args).result()

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the model thread (loading and unloading adapters go through here)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._timed, fn, *args)

    async def predict(
        self, adapter: str, ids: list[list[int]], top_k: int, threshold: float | None = None
    ) -> list[dict[str, Any]]:
        assert self.queue is not None, "batcher not started"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.requests += 1
        await self.queue.put(Item(adapter, ids, top_k, threshold, fut))
        return await fut

    async def _collect(self) -> list[Item]:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        items = [await self.queue.get()]
        texts = len(items[0].ids)
        deadline = loop.time() + self.wait_ms / 1000
        while texts < self.max_batch_texts:
            if not self.queue.empty():  # already waiting: take it without a timer
                items.append(self.queue.get_nowait())
            else:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            texts += len(items[-1].ids)
        return items

    async def _run(self) -> None:
        while True:
            groups: dict[str, list[Item]] = {}
            for item in await self._collect():
                groups.setdefault(item.adapter, []).append(item)
            for adapter, group in groups.items():
                self.batches += 1
                try:
                    results = await self.run(self._predict_group, adapter, group)
                except Exception:
                    results = [await self._alone(adapter, item) for item in group]  # isolate the failure
                for item, result in zip(group, results, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(result, BaseException):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)

    async def _alone(self, adapter: str, item: Item) -> Any:
        try:
            return (await self.run(self._predict_group, adapter, [item]))[0]
        except Exception as e:
            return e

    def _predict_group(self, adapter: str, group: list[Item]) -> list[list[dict[str, Any]]]:
        entry = self.registry.entries.get(adapter)
        if entry is None:
            raise AdapterGone(adapter)
        outputs = self.registry.outputs_ids(adapter, [row for item in group for row in item.ids])
        results, start = [], 0
        for item in group:
            part = slice(start, start + len(item.ids))
            mine = Outputs(outputs.logits[part], None if outputs.features is None else outputs.features[part])
            threshold = item.threshold if item.threshold is not None else entry.threshold
            results.append([p.to_dict() for p in entry.decider.decide(mine, item.top_k, threshold)])
            start += len(item.ids)
        return results


def _torch_threads(n: int) -> None:
    """The model thread's torch intra-op threads (OpenMP keeps this setting per calling thread)."""
    import torch

    torch.set_num_threads(n)
