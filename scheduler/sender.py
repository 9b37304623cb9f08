"""The broadcast lane of one channel: paced, resumable, never twice to anyone.

One message is in flight at a time (so a crash leaves at most that one in doubt). The pace is
a strict token bucket overall (burst of a fifth of a second at most, so any one-second window
stays under the platform's limit) plus spacing per chat (private chats) and per group; while
one chat waits for its spacing, the lane sends to others. Each send also takes a slot of the
bot account's one pace (``bot.delivery``: ``Runtime.delivery.pacer``), shared with the
interactive replies (which get slots first) and, on PostgreSQL, with every worker: replies and
broadcasts together never exceed the account's rate. A ``RetryAfter`` (Telegram 429, Matrix
``M_LIMIT_EXCEEDED``) pauses this lane only: interactive replies keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from bot.broadcasts import BroadcastOutbox, SendItem
from bot.channels import (
    Channel,
    Pace,
    PermanentFailure,
    RetryAfter,
    TemporaryFailure,
    Unreachable,
)
from bot.delivery import BROADCAST, TokenBucket
from bot.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class SenderStats:
    sent: int = 0
    throttled: int = 0  # RetryAfter answers
    throttled_seconds: float = 0.0
    failed: int = 0
    unreachable: int = 0
    temporary: int = 0


@dataclass(order=True)
class _Later:
    ready_at: float
    seq: int
    item: SendItem = field(compare=False)
    part: int = field(compare=False)


class BroadcastSender:
    def __init__(
        self,
        runtime: Runtime,
        channel: Channel,
        outbox: BroadcastOutbox,
        pace: Pace | None = None,
        *,
        batch: int = 500,
        backoff: float = 0.5,
        max_attempts: int = 4,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.runtime = runtime
        self.channel = channel
        self.platform = channel.platform
        self.outbox = outbox
        self.pace = pace or Pace()
        burst = min(5.0, max(1.0, self.pace.per_second * 0.2))
        self.overall = TokenBucket(self.pace.per_second, burst)
        self.overall.tokens = 1.0  # start gently: no burst after a restart
        # The account's pace, shared with the replies (the channel's sender sets its rate).
        self.account = runtime.delivery.pacer(self.platform, self.pace.per_second)
        self.group_interval = (
            60.0 / self.pace.per_group_per_minute if self.pace.per_group_per_minute else 0.0
        )
        self.batch = batch
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.monotonic = monotonic
        self.sleep = sleep
        self.stats = SenderStats()
        self.chat_ready: dict[str, float] = {}
        self.wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._seq = itertools.count()
        self._done: tuple[int, int, bool] | None = None
        # Set by ``run``: a flush stops between two messages when it is set.
        self.stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ pacing

    def _interval(self, item: SendItem) -> float:
        return self.group_interval if item.group_chat else self.pace.per_chat_interval

    async def _take_overall(self) -> None:
        while True:
            delay = self.overall.delay(self.monotonic())
            if delay <= 0:
                self.overall.take()
                break
            await self.sleep(delay)
        await self.account.acquire(BROADCAST)

    async def _pause(self, seconds: float) -> bool:
        """Wait (a throttle can ask for minutes); True if the lane is stopping meanwhile."""
        if self.stopping is None:
            await self.sleep(seconds)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def _record_done(self) -> None:
        if self._done is not None:
            done, self._done = self._done, None
            await self.runtime.call(self.outbox.step, done, None, lane=self.platform)

    # ------------------------------------------------------------------ sending

    async def recover(self) -> int:
        return await self.runtime.call(self.outbox.recover, self.platform)

    async def flush(self) -> int:
        """Send everything sendable now; returns how many messages went out."""
        async with self._lock:
            sent_before = self.stats.sent
            after = 0
            ready: deque[tuple[SendItem, int]] = deque()
            later: list[_Later] = []
            exhausted = False
            while self.stopping is None or not self.stopping.is_set():
                if not ready and not exhausted:
                    batch = await self.runtime.call(
                        self.outbox.claim,
                        self.platform,
                        self.channel.capabilities,
                        self.batch,
                        after,
                    )
                    if batch:
                        after = batch[-1].delivery_id
                        ready.extend((item, item.parts_sent) for item in batch)
                    else:
                        exhausted = True
                unit = self._next(ready, later)
                if unit is None:
                    if not later:
                        break
                    await self._record_done()
                    await self.sleep(max(0.0, later[0].ready_at - self.monotonic()))
                    continue
                item, part = unit
                if await self._send(item, part) and part + 1 < len(item.parts):
                    ready_at = self.chat_ready.get(item.chat_id, 0.0)
                    heapq.heappush(later, _Later(ready_at, next(self._seq), item, part + 1))
            await self._record_done()
            finished = await self.runtime.call(self.outbox.finish_broadcasts)
            for broadcast_id in finished:
                log.info("broadcast %s finished", broadcast_id)
            return self.stats.sent - sent_before

    def _next(
        self, ready: deque[tuple[SendItem, int]], later: list[_Later]
    ) -> tuple[SendItem, int] | None:
        now = self.monotonic()
        if later and later[0].ready_at <= now:
            entry = heapq.heappop(later)
            return entry.item, entry.part
        while ready:
            item, part = ready.popleft()
            if part >= len(item.parts):
                continue
            ready_at = self.chat_ready.get(item.chat_id, 0.0)
            if ready_at > now:
                heapq.heappush(later, _Later(ready_at, next(self._seq), item, part))
                continue
            return item, part
        return None

    async def _send(self, item: SendItem, part: int) -> bool:
        """Send one part; True if it went out."""
        await self._take_overall()
        done, self._done = self._done, None
        claimed = await self.runtime.call(
            self.outbox.step, done, (item.delivery_id, part), lane=self.platform
        )
        if not claimed:
            return False  # another sender has it, or it changed
        message = replace(item.parts[part], chat_id=item.chat_id)
        attempt = 0
        while True:
            try:
                await self.channel.send(message, key=item.key(part))
            except RetryAfter as exc:
                self.stats.throttled += 1
                self.stats.throttled_seconds += exc.seconds
                log.warning("%s broadcast lane throttled for %.2fs", self.platform, exc.seconds)
                if await self._pause(exc.seconds):
                    return False  # stopping: the row stays "sending", resent on the next start
                self.overall.tokens = min(self.overall.tokens, 0.0)
                continue
            except Unreachable as exc:
                self.stats.unreachable += 1
                await self.runtime.call(self.outbox.unreachable, self.platform, item, str(exc))
                return False
            except PermanentFailure as exc:
                self.stats.failed += 1
                log.error("%s refused broadcast row %s: %s", self.platform, item.delivery_id, exc)
                await self.runtime.call(self.outbox.failed, item, str(exc))
                return False
            except TemporaryFailure as exc:
                self.stats.temporary += 1
                attempt += 1
                if attempt >= self.max_attempts:
                    await self.runtime.call(self.outbox.retry_later, item, str(exc))
                    return False
                await self.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            break
        self.stats.sent += 1
        self.chat_ready[item.chat_id] = self.monotonic() + self._interval(item)
        if len(self.chat_ready) > 100_000:
            now = self.monotonic()
            self.chat_ready = {k: v for k, v in self.chat_ready.items() if v > now}
        self._done = (item.delivery_id, part, part + 1 == len(item.parts))
        return True

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Flush whenever woken (a new broadcast) and every ``idle`` seconds."""
        self.stopping = stop
        await self.recover()
        while not stop.is_set():
            try:
                await self.flush()
            except Exception:
                log.exception("broadcast flush failed on %s", self.platform)
            self.wake.clear()
            waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
