"""A fake clock for asyncio code that takes ``clock`` and ``sleep`` callables: time moves only
when every task is waiting, straight to the next sleeper's wake-up time. No timed assertion
needs the wall clock: a test reads ``clock.now``."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class FakeTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    async def _settle(self) -> None:
        """Let every runnable task run until all wait (on a fake sleep or an event)."""
        loop = asyncio.get_running_loop()
        for _ in range(100_000):
            await asyncio.sleep(0)
            if not loop._ready:  # type: ignore[attr-defined]  # CPython: nothing runnable
                await asyncio.sleep(0)
                if not loop._ready:  # type: ignore[attr-defined]
                    return
        raise RuntimeError("tasks never settle")

    async def step(self) -> bool:
        """Advance to the next sleeper's time and wake it; False if nobody sleeps."""
        await self._settle()
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled
        if not self._sleepers:
            return False
        at = self._sleepers[0][0]
        self.now = max(self.now, at)
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _at, _seq, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        return True

    async def run(self, awaitable: Awaitable[T], *, limit: float = 1e6) -> T:
        """Run ``awaitable`` to its end on fake time (at most ``limit`` fake seconds)."""
        task = asyncio.ensure_future(awaitable)
        end = self.now + limit
        while not task.done():
            if not await self.step():
                await self._settle()
                if not task.done():
                    raise RuntimeError("deadlock: nothing sleeps and the task waits")
            if self.now > end:
                task.cancel()
                raise TimeoutError(f"still running after {limit} fake seconds")
        return task.result()
