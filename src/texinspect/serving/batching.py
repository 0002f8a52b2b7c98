"""Server-side batching: concurrent requests share one forward pass.

Requests queue up while the model is busy; when it is free, the worker takes everything waiting
(up to ``max_batch`` images, optionally waiting ``max_wait_ms`` for more), groups it by key (the
inference mode), runs one batch per group on a single model thread, and hands each request its
slice. At low load a request runs alone at once, so batching adds no latency there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class _Item:
    images: torch.Tensor
    key: Hashable
    future: asyncio.Future


class MicroBatcher:
    """Queue + worker task; ``fn(images, key) -> list`` (one entry per image) runs on ``executor``."""

    def __init__(
        self,
        fn: Callable[[torch.Tensor, Any], Sequence[Any]],
        executor: concurrent.futures.Executor,
        max_batch: int = 16,
        max_wait_ms: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.executor = executor
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Item] | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches_run = 0  # for tests and logs: how many forward passes served how many requests
        self.requests_served = 0

    def _ensure_worker(self) -> asyncio.Queue[_Item]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue))
        assert self._queue is not None
        return self._queue

    async def submit(self, images: torch.Tensor, key: Hashable) -> list[Any]:
        queue = self._ensure_worker()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Item(images, key, future))
        return await future

    async def _collect(self, queue: asyncio.Queue[_Item]) -> list[_Item]:
        batch = [await queue.get()]
        count = len(batch[0].images)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while count < self.max_batch:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(item)
            count += len(item.images)
        return batch

    async def _run(self, queue: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            batch.sort(key=lambda it: repr(it.key))
            for _, group_iter in itertools.groupby(batch, key=lambda it: it.key):
                group = [it for it in group_iter if not it.future.done()]  # cancelled clients are skipped
                if not group:
                    continue
                images = torch.cat([it.images for it in group]) if len(group) > 1 else group[0].images
                try:
                    results = await loop.run_in_executor(self.executor, self.fn, images, group[0].key)
                except Exception as exc:  # the error belongs to these requests, not to the worker
                    for it in group:
                        if not it.future.done():
                            it.future.set_exception(exc)
                    continue
                self.batches_run += 1
                self.requests_served += len(group)
                start = 0
                for it in group:
                    n = len(it.images)
                    if not it.future.done():
                        it.future.set_result(list(results[start : start + n]))
                    start += n
