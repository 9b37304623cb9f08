"""One pace per bot account, shared by replies and broadcasts (and by every worker).

- ``AccountPacer.acquire(priority)`` waits for the account's next send slot. Slots are spaced
  ``1 / (rate × headroom)`` apart, so no one-second window ever holds more than ``rate`` sends
  (a slot not used at its time is dropped, never saved up for a burst). Waiting replies get
  the next slot before waiting broadcasts (``REPLY`` < ``BROADCAST``).
- Where the slots come from is a ``SlotSource``: ``MemorySlots`` for one process, or
  ``DatabaseSlots`` (one ``UPDATE … RETURNING`` per batch of slots on the ``send_pace`` row of
  the account) when several workers share the account. Both do the same arithmetic: the next
  free time ``next_at`` moves forward by the span taken.
- ``PriorityGate`` bounds the sends in flight (concurrency), replies first, with a reserve
  that broadcasts never take.
- A message the channel splits into parts (Telegram's 4096 characters) takes one slot per
  extra part: the channel calls ``pace_extra_part()`` before each.

Clock and sleep are injected, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

REPLY = 0
BROADCAST = 1

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class TokenBucket:
    """A plain token bucket (kept for the adapters' own small spacings)."""

    rate: float  # tokens per second
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def delay(self, now: float | None = None) -> float:
        """Seconds to wait before one token is available (0 = take it now)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class SlotSource(Protocol):
    async def take(self, span: float, now: float) -> float:
        """Reserve ``span`` seconds of send slots from ``max(next_at, now)``; return the
        start of the span reserved."""
        ...


class MemorySlots:
    """The account's slots in this process only (one worker, or tests)."""

    def __init__(self) -> None:
        self.next_at = 0.0

    async def take(self, span: float, now: float) -> float:
        start = max(self.next_at, now)
        self.next_at = start + span
        return start


class DatabaseSlots:
    """The account's slots in the ``send_pace`` table, shared by every worker: one
    ``UPDATE … RETURNING`` per batch. ``call`` runs a function off the event loop
    (``Runtime.call``); times are Unix seconds (``time.time``) on every worker."""

    def __init__(self, db: object, account: str, call: Callable[..., Awaitable[float]]) -> None:
        self.db, self.account, self.call = db, account, call

    def _take(self, span: float, now: float) -> float:
        from storage.db import Database
        from storage.repositories_runtime import RuntimeRepo

        assert isinstance(self.db, Database)
        with self.db.session() as session:
            return RuntimeRepo(self.db, session).take_slots(self.account, span, now)

    async def take(self, span: float, now: float) -> float:
        return await self.call(self._take, span, now)


_EXTRA_PART: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = contextvars.ContextVar(
    "parlons_extra_part", default=None
)


async def pace_extra_part() -> None:
    """Called by a channel before each extra API send of one message (a split text): waits
    for one more slot of the account's pace. Outside the delivery runtime it does nothing."""
    hook = _EXTRA_PART.get()
    if hook is not None:
        await hook()


@contextlib.contextmanager
def extra_parts_paced_by(hook: Callable[[], Awaitable[None]]) -> Iterator[None]:
    token = _EXTRA_PART.set(hook)
    try:
        yield
    finally:
        _EXTRA_PART.reset(token)


class AccountPacer:
    def __init__(
        self,
        rate: float,
        slots: SlotSource | None = None,
        *,
        headroom: float = 0.95,
        batch: int = 1,
        tolerance: float = 0.02,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("the pace must be positive")
        self.rate = rate
        self.interval = 1.0 / (rate * headroom)
        self.slots = slots or MemorySlots()
        self._fallback = MemorySlots()
        self.batch = max(1, batch)
        self.tolerance = tolerance
        self.clock, self.sleep = clock, sleep
        self._granted: deque[float] = deque()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._paused_until: dict[int, float] = {}
        self.granted = 0  # slots handed out (a counter for metrics)
        self.wasted = 0  # slots dropped because nobody wanted them in time

    def pause(self, priority: int, seconds: float) -> None:
        """No slot for ``priority`` (e.g. broadcasts after a 429) for ``seconds``."""
        until = self.clock() + seconds
        self._paused_until[priority] = max(self._paused_until.get(priority, 0.0), until)

    async def acquire(self, priority: int = REPLY) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._dispatch())
        await future

    async def _next_slot(self) -> float:
        while True:
            now = self.clock()
            while self._granted and self._granted[0] < now - self.tolerance:
                self._granted.popleft()  # too late: never used, never saved for a burst
                self.wasted += 1
            if self._granted:
                return self._granted.popleft()
            span = self.interval * self.batch
            try:
                start = await self.slots.take(span, self.clock())
            except Exception:
                # The shared pace is out of reach (database down): keep this worker's own
                # spacing meanwhile rather than stalling every send.
                log.warning("shared send slots unavailable; pacing locally", exc_info=True)
                start = await self._fallback.take(span, self.clock())
            self._granted.extend(start + i * self.interval for i in range(self.batch))

    def _pop_waiter(self, now: float) -> asyncio.Future[None] | None:
        skipped: list[tuple[int, int, asyncio.Future[None]]] = []
        found: asyncio.Future[None] | None = None
        while self._waiters:
            entry = heapq.heappop(self._waiters)
            if entry[2].done():
                continue  # cancelled
            if self._paused_until.get(entry[0], 0.0) > now:
                skipped.append(entry)
                continue
            found = entry[2]
            break
        for entry in skipped:
            heapq.heappush(self._waiters, entry)
        return found

    def _live(self) -> bool:
        self._waiters = [w for w in self._waiters if not w[2].done()]
        heapq.heapify(self._waiters)
        return bool(self._waiters)

    async def _dispatch(self) -> None:
        while self._live():
            now = self.clock()
            if all(self._paused_until.get(p, 0.0) > now for p, _s, _f in self._waiters):
                resume = min(self._paused_until[p] for p, _s, _f in self._waiters)
                await self.sleep(max(0.0, resume - now))
                continue
            slot = await self._next_slot()
            delay = slot - self.clock()
            if delay > 0:
                await self.sleep(delay)
            waiter = self._pop_waiter(self.clock())
            if waiter is None:
                self.wasted += 1
                continue
            self.granted += 1
            waiter.set_result(None)


class PriorityGate:
    """At most ``capacity`` holders; ``reserve`` places only for ``REPLY``; waiters served by
    priority, then in arrival order."""

    def __init__(self, capacity: int, *, reserve: int = 0) -> None:
        self.capacity = max(1, capacity)
        self.reserve = min(max(0, reserve), self.capacity - 1)
        self.held = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def _fits(self, priority: int) -> bool:
        limit = self.capacity if priority == REPLY else self.capacity - self.reserve
        return self.held < limit

    async def acquire(self, priority: int = REPLY) -> None:
        if not self._waiters and self._fits(priority):
            self.held += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        self._wake()  # a reply may pass broadcasts held back by the reserve
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as we were cancelled
            raise

    def release(self) -> None:
        self.held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            priority, _seq, future = self._waiters[0]
            if future.done():
                heapq.heappop(self._waiters)
                continue
            if not self._fits(priority):
                return
            heapq.heappop(self._waiters)
            self.held += 1
            future.set_result(None)
