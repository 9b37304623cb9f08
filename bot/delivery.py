"""Sending the outbox of interactive replies to one channel.

Replies go out at once, in order within a chat, paced per chat (a token bucket: about one
message a second with short bursts, as Telegram tolerates) and overall. A ``RetryAfter`` is
honoured for that message; temporary failures back off and stay pending; an unreachable
recipient is marked so and never retried in a loop. Broadcasts have their own lane
(``scheduler``), so a throttled broadcast never delays a citizen's reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from bot.channels import (
    Channel,
    Pace,
    PermanentFailure,
    RetryAfter,
    TemporaryFailure,
    Unreachable,
)
from bot.engine import Delivery
from bot.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class TokenBucket:
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


class Pacer:
    """Overall and per-chat token buckets; ``await pacer.wait(chat_id)`` before each send."""

    def __init__(self, pace: Pace, *, chat_burst: float = 8.0) -> None:
        self.pace = pace
        self.overall = TokenBucket(pace.per_second, max(1.0, pace.per_second))
        self.chat_burst = chat_burst
        self.chats: dict[str, TokenBucket] = {}

    def _chat(self, chat_id: str) -> TokenBucket:
        bucket = self.chats.get(chat_id)
        if bucket is None:
            rate = 1.0 / self.pace.per_chat_interval if self.pace.per_chat_interval else 1e9
            bucket = self.chats[chat_id] = TokenBucket(rate, self.chat_burst)
        return bucket

    async def wait(self, chat_id: str) -> None:
        chat = self._chat(chat_id)
        while True:
            delay = max(self.overall.delay(), chat.delay())
            if delay <= 0:
                self.overall.take()
                chat.take()
                return
            await asyncio.sleep(delay)


class OutboxSender:
    def __init__(
        self,
        runtime: Runtime,
        channel: Channel,
        pace: Pace | None = None,
        *,
        max_attempts: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self.runtime = runtime
        self.engine = runtime.app.engine
        self.channel = channel
        self.pacer = Pacer(pace or Pace())
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def flush(self, stop: asyncio.Event | None = None) -> int:
        """Send every pending reply of this channel (until ``stop`` is set: what is left stays
        in the outbox for the next start); returns how many were sent."""
        async with self._lock:
            sent = 0
            while stop is None or not stop.is_set():
                batch = await self.runtime.call(
                    self.engine.pending_deliveries, self.channel.platform, 200
                )
                if not batch:
                    return sent
                progressed = False
                for delivery in batch:
                    if stop is not None and stop.is_set():
                        return sent
                    outcome = await self._send(delivery)
                    progressed = progressed or outcome != "pending"
                    sent += outcome == "sent"
                if not progressed:
                    return sent  # only temporary failures left: try again on the next flush
            return sent

    async def _send(self, delivery: Delivery) -> str:
        message = delivery.message
        attempt = 0
        while True:
            await self.pacer.wait(message.chat_id)
            try:
                result = await self.channel.send(message, key=f"out-{delivery.outbox_id}")
            except RetryAfter as exc:
                log.warning("throttled by %s for %.1fs", self.channel.platform, exc.seconds)
                await asyncio.sleep(exc.seconds)
                continue
            except Unreachable as exc:
                await self.runtime.call(
                    self.engine.mark_unreachable, self.channel.platform, message.chat_id
                )
                await self.runtime.call(
                    self.engine.mark_failed, delivery.outbox_id, f"unreachable: {exc}"
                )
                return "failed"
            except PermanentFailure as exc:
                log.error(
                    "%s refused outbox %s: %s", self.channel.platform, delivery.outbox_id, exc
                )
                await self.runtime.call(self.engine.mark_failed, delivery.outbox_id, str(exc))
                return "failed"
            except TemporaryFailure as exc:
                attempt += 1
                if attempt >= self.max_attempts:
                    log.warning(
                        "outbox %s still failing (%s); left pending", delivery.outbox_id, exc
                    )
                    return "pending"
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            await self.runtime.call(self.engine.mark_sent, delivery.outbox_id, result.message_id)
            return "sent"

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Flush whenever woken (new replies) and every ``idle`` seconds (leftovers)."""
        while not stop.is_set():
            try:
                await self.flush(stop)
            except Exception:
                log.exception("outbox flush failed")
            self.wake.clear()
            waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
