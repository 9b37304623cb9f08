"""Per-chat lanes: the one place where messages meet a channel.

- Order is kept within a chat and one message of a chat is in flight at a time; many chats
  are sent concurrently, up to the gate's capacity (``PriorityGate``).
- A transient failure (5xx, timeout, network error, 429 ``RetryAfter``) holds only that chat's
  lane: the same message is retried after a capped exponential backoff (or the time a 429
  asks) — a message is never skipped for a later one of its chat. A 429 on a broadcast also
  pauses the account's broadcasts (replies keep flowing).
- Only a permanent error (``PermanentFailure``) or an unreachable recipient (``Unreachable``)
  ends a message without sending it: the job's owner dead-letters it, and the lane goes on.
- Every send waits for the chat's spacing (a token bucket: private chats about 1 a second,
  groups 20 a minute, short bursts tolerated), then a place at the gate, then a slot of the
  account's pace (``AccountPacer``).

Jobs report their outcome to their owner through ``Job.done`` (the reply sender settles its
outbox rows; broadcasts record their delivery rows). Clock and sleep are injected for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.channels import (
    Channel,
    PermanentFailure,
    RetryAfter,
    Sent,
    TemporaryFailure,
    Unreachable,
)
from bot.delivery.pacing import (
    BROADCAST,
    REPLY,
    AccountPacer,
    PriorityGate,
    Sleep,
    TokenBucket,
    extra_parts_paced_by,
)
from bot.messages import OutboundMessage

log = logging.getLogger(__name__)

SENT = "sent"
FAILED = "failed"  # a dead letter: refused by the platform
UNREACHABLE = "unreachable"  # a dead letter: the recipient blocked the bot or left


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    sent: Sent | None = None
    error: str | None = None
    attempts: int = 1


@dataclass(eq=False)
class Job:
    chat_id: str
    message: OutboundMessage
    key: str  # the idempotency key (Matrix transaction ids derive from it)
    done: Callable[[Job, Outcome], None]
    priority: int = REPLY
    group: bool = False
    tag: Any = None  # the owner's handle (an outbox id, a delivery row)


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0-based): base·2^attempt, at most cap."""
        return min(self.cap, self.base * 2 ** min(attempt, 30))


@dataclass
class LaneStats:
    sent: int = 0
    retries: int = 0  # transient failures retried
    throttled: int = 0  # 429 answers
    throttled_seconds: float = 0.0
    dead: int = 0  # permanent failures and unreachable recipients
    unreachable: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lanes_max: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class Lanes:
    def __init__(
        self,
        channel: Channel,
        pacer: AccountPacer,
        gate: PriorityGate,
        *,
        chat_interval: float = 1.0,
        group_interval: float = 3.0,
        chat_burst: float = 8.0,
        group_burst: float = 3.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.channel = channel
        self.pacer, self.gate = pacer, gate
        self.chat_interval, self.group_interval = chat_interval, group_interval
        self.chat_burst, self.group_burst = chat_burst, group_burst
        self.backoff = backoff or Backoff()
        self.clock, self.sleep = clock, sleep
        self.stats = LaneStats()
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ the owners' side

    def submit(self, job: Job) -> None:
        """Queue a message at the end of its chat's lane."""
        if self._stopping.is_set():
            raise RuntimeError("the lanes are stopping")
        queue = self._queues.get(job.chat_id)
        if queue is None:
            queue = self._queues[job.chat_id] = deque()
        queue.append(job)
        self._idle.clear()
        if job.chat_id not in self._tasks:
            self._tasks[job.chat_id] = asyncio.ensure_future(self._lane(job.chat_id))
            self.stats.lanes_max = max(self.stats.lanes_max, len(self._tasks))

    def queued(self, chat_id: str | None = None) -> int:
        if chat_id is not None:
            return len(self._queues.get(chat_id, ()))
        return sum(len(q) for q in self._queues.values())

    def busy(self) -> bool:
        return bool(self._tasks)

    async def drain(self) -> None:
        """Wait until every lane is empty."""
        while self._tasks:
            await self._idle.wait()

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking new sends: queued jobs stay with their owners (unsent), a message in
        flight finishes (within ``grace`` seconds, then it is cancelled)."""
        self._stopping.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ a lane

    async def _lane(self, chat_id: str) -> None:
        queue = self._queues[chat_id]
        try:
            while queue and not self._stopping.is_set():
                job = queue[0]
                try:
                    outcome = await self._deliver(job)
                except Exception:
                    # A bug around the send (not the send's own outcome): keep the lane and
                    # its order, try the same message again a little later.
                    log.exception("lane %s failed; retrying %s", chat_id, job.key)
                    if await self._nap(self.backoff.cap):
                        break
                    continue
                if outcome is None:
                    break  # stopping: the job stays unsent
                queue.popleft()
                self.stats.by_status[outcome.status] = (
                    self.stats.by_status.get(outcome.status, 0) + 1
                )
                try:
                    job.done(job, outcome)
                except Exception:
                    log.exception("delivery callback failed for %s", job.key)
        finally:
            self._tasks.pop(chat_id, None)
            if not queue or self._stopping.is_set():
                self._queues.pop(chat_id, None)
            if not self._tasks:
                self._idle.set()
            if len(self._buckets) > 50_000:
                now = self.clock()
                self._buckets = {
                    k: b for k, b in self._buckets.items() if b.delay(now) > 0 or k in self._tasks
                }

    def _bucket(self, job: Job) -> TokenBucket | None:
        """The chat's spacing: about one message per interval, short bursts tolerated."""
        interval = self.group_interval if job.group else self.chat_interval
        if interval <= 0:
            return None
        bucket = self._buckets.get(job.chat_id)
        if bucket is None:
            burst = self.group_burst if job.group else self.chat_burst
            bucket = self._buckets[job.chat_id] = TokenBucket(
                1.0 / interval, max(1.0, burst), stamp=self.clock()
            )
        return bucket

    async def _nap(self, seconds: float) -> bool:
        """Sleep unless stopping; True if the lanes are stopping."""
        if self._stopping.is_set():
            return True
        if seconds <= 0:
            return False
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()
        return self._stopping.is_set()

    async def _deliver(self, job: Job) -> Outcome | None:
        attempt = 0
        tries = 0
        bucket = self._bucket(job)
        while True:
            if bucket is not None:
                while (wait := bucket.delay(self.clock())) > 0:
                    if await self._nap(wait):
                        return None
            await self.gate.acquire(job.priority)
            delay = 0.0
            try:
                if self._stopping.is_set():
                    return None
                await self.pacer.acquire(job.priority)
                tries += 1
                self.stats.in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
                try:
                    with extra_parts_paced_by(lambda: self.pacer.acquire(job.priority)):
                        sent = await self.channel.send(job.message, key=job.key)
                finally:
                    self.stats.in_flight -= 1
            except RetryAfter as exc:
                self.stats.throttled += 1
                self.stats.throttled_seconds += exc.seconds
                delay = exc.seconds
                log.warning(
                    "%s throttled %s for %.2fs", self.channel.platform, job.key, exc.seconds
                )
                if job.priority == BROADCAST:
                    self.pacer.pause(BROADCAST, exc.seconds)
            except Unreachable as exc:
                self.stats.dead += 1
                self.stats.unreachable += 1
                return Outcome(UNREACHABLE, error=f"unreachable: {exc}", attempts=tries)
            except PermanentFailure as exc:
                self.stats.dead += 1
                log.error("%s refused %s: %s", self.channel.platform, job.key, exc)
                return Outcome(FAILED, error=str(exc) or type(exc).__name__, attempts=tries)
            except TemporaryFailure as exc:
                delay = self.backoff.delay(attempt)
                attempt += 1
                self.stats.retries += 1
                log.warning("%s: %s failed (%s); retry in %.2fs", job.key, job.chat_id, exc, delay)
            except Exception:
                # An adapter bug is not a reason to skip the message: retry it, capped.
                delay = self.backoff.delay(attempt)
                attempt += 1
                self.stats.retries += 1
                log.exception("%s: unexpected error sending; retry in %.2fs", job.key, delay)
            else:
                self.stats.sent += 1
                if bucket is not None:
                    bucket.delay(self.clock())
                    bucket.take()
                return Outcome(SENT, sent=sent, attempts=tries)
            finally:
                self.gate.release()
            if await self._nap(delay):
                return None
