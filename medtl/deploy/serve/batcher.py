"""Micro-batching: concurrent requests wait up to a short window (or until a batch is full) and are scored in one
call of the model, so that throughput grows with load while a lone request waits at most the window."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """``await submit(inputs)`` with ``inputs`` a tuple of arrays ``(k, ...)`` (one per ensemble member) returns the
    model's ``(k, classes)``; one thread runs the model (onnxruntime uses its own threads inside a call)."""

    def __init__(self, model: Callable[[tuple[np.ndarray, ...]], np.ndarray], max_batch: int, window_s: float):
        self.model, self.max_batch, self.window = model, max_batch, window_s
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="medtl-model")
        self.batches = 0  # calls of the model, for /health
        self.images = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((inputs, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            count, deadline = len(items[0][0][0]), loop.time() + self.window
            while count < self.max_batch:
                try:
                    item = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                items.append(item)
                count += len(item[0][0])
            batch = tuple(np.concatenate([inputs[m] for inputs, _ in items]) for m in range(len(items[0][0])))
            try:
                prob = await loop.run_in_executor(self.pool, self._score, batch)
            except Exception as e:  # noqa: BLE001 -- handed to the waiting requests, which answer for it
                for _, future in items:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches, self.images = self.batches + 1, self.images + count
            start = 0
            for inputs, future in items:
                n = len(inputs[0])
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(prob[start:start + n])
                start += n

    def _score(self, batch: tuple[np.ndarray, ...]) -> np.ndarray:
        """The model over ``batch`` in chunks of at most ``max_batch`` (one large request stays bounded)."""
        n = len(batch[0])
        return np.concatenate([self.model(tuple(b[i:i + self.max_batch] for b in batch))
                               for i in range(0, n, self.max_batch)])
