"""The reply sender of one channel: claims outbox rows, sends them through per-chat lanes,
settles them in batches.

1. ``claim``: free pending rows of the platform, oldest first, taken as runs from each chat's
   head (``OutboxClaims``); a chat this worker already holds ``per_chat`` rows of is skipped,
   so a flood never fills the claim batch and other chats keep being claimed.
2. Each row becomes a ``Job`` on its chat's lane (``Lanes``): ordered, one in flight per chat,
   many chats at once, transient failures retried on that lane only.
3. Outcomes are settled in one transaction per batch (every ``settle_every`` seconds at most):
   sent rows with their platform id, dead letters (``failed``) with their error, unreachable
   citizens marked so. While held, the rows' lease is renewed every third of its length.

A crash between a send and its settlement sends that message again on the next claim (after
the lease, or at once when the next process starts on SQLite, where there is one worker):
Matrix deduplicates it (transaction id from the outbox key); on Telegram it is at most the
messages in flight and those sent in the last ``settle_every`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from bot.channels import Channel, Pace
from bot.delivery.claims import Claim, OutboxClaims
from bot.delivery.lanes import SENT, UNREACHABLE, Backoff, Job, Lanes, Outcome
from bot.delivery.pacing import REPLY
from storage.repositories_runtime import Settlement

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)


class OutboxSender:
    def __init__(
        self,
        runtime: Runtime,
        channel: Channel,
        pace: Pace | None = None,
        *,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
        concurrency: int | None = None,
        batch: int = 200,
        per_chat: int = 50,
        hold: int = 5000,
        lease: float | None = None,
        settle_every: float = 0.02,
        claims: OutboxClaims | None = None,
        max_attempts: int | None = None,  # kept for callers; lanes never give a message up
    ) -> None:
        self.runtime = runtime
        self.channel = channel
        self.platform = channel.platform
        self.pace = pace or Pace()
        hub = runtime.delivery
        # A dead worker's rows wait for its lease to expire: 10 s (renewed every third of it).
        self.claims = claims or OutboxClaims(
            runtime.app.db, worker=hub.worker, lease=lease or 10.0
        )
        # SQLite has one worker process: at its start, the rows a killed predecessor held are
        # taken over at once instead of after their lease.
        self.take_over = not hub.shared
        self.pacer = hub.pacer(self.platform, self.pace.per_second)
        gate = (
            hub.gate(self.platform)
            if concurrency is None
            else hub.gate(self.platform, concurrency)
        )
        group_interval = (
            60.0 / self.pace.per_group_per_minute if self.pace.per_group_per_minute else 0.0
        )
        self.lanes = Lanes(
            channel,
            self.pacer,
            gate,
            chat_interval=self.pace.per_chat_interval,
            group_interval=group_interval,
            backoff=Backoff(backoff, backoff_cap),
        )
        self.is_group = getattr(channel, "is_group_chat", None)
        self.batch, self.per_chat, self.hold = batch, per_chat, hold
        self.settle_every = settle_every
        self.wake = asyncio.Event()
        self.held: dict[int, Claim] = {}
        self.sent = 0
        self._per_chat: Counter[str] = Counter()
        self._settled: list[Settlement] = []
        self._unreachable: set[str] = set()
        self._settle_wake = asyncio.Event()
        self._claim_lock = asyncio.Lock()
        self._renewed = time.monotonic()

    # ------------------------------------------------------------------ claiming

    async def claim(self) -> int:
        """Claim what is free now and queue it on the lanes; returns how many rows."""
        async with self._claim_lock:
            total = 0
            while len(self.held) < self.hold:
                full = [chat for chat, n in self._per_chat.items() if n >= self.per_chat]
                got = await self.runtime.call(
                    self.claims.claim, self.platform, self.batch, exclude=full
                )
                fresh = [c for c in got if c.outbox_id not in self.held]
                for claim in fresh:
                    self._queue(claim)
                total += len(fresh)
                if len(got) < self.batch:
                    break
            return total

    def _queue(self, claim: Claim) -> None:
        self.held[claim.outbox_id] = claim
        chat = claim.message.chat_id
        self._per_chat[chat] += 1
        self.lanes.submit(
            Job(
                chat_id=chat,
                message=claim.message,
                key=claim.key,
                done=self._done,
                priority=REPLY,
                group=bool(self.is_group(chat)) if self.is_group else False,
                tag=claim.outbox_id,
            )
        )

    def _done(self, job: Job, outcome: Outcome) -> None:
        outbox_id = int(job.tag)
        # The row stays held (its lease renewed) until its settlement is written.
        self._per_chat[job.chat_id] -= 1
        if self._per_chat[job.chat_id] <= 0:
            del self._per_chat[job.chat_id]
        if outcome.status == SENT:
            self.sent += 1
            mid = outcome.sent.message_id if outcome.sent is not None else None
            self._settled.append(Settlement(outbox_id, "sent", message_id=mid))
        else:
            self._settled.append(Settlement(outbox_id, "failed", error=outcome.error))
            if outcome.status == UNREACHABLE:
                self._unreachable.add(job.chat_id)
        self._settle_wake.set()

    # ------------------------------------------------------------------ settling

    async def settle(self) -> int:
        """Write the outcomes gathered so far (one transaction)."""
        if not self._settled and not self._unreachable:
            return 0
        rows, self._settled = self._settled, []
        chats, self._unreachable = self._unreachable, set()
        try:
            await self.runtime.call(self.claims.settle, self.platform, rows, chats)
        except Exception:
            self._settled[:0] = rows  # kept for the next round
            self._unreachable |= chats
            raise
        for row in rows:
            self.held.pop(row.outbox_id, None)
        return len(rows)

    async def _settle_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            waiters = [
                asyncio.ensure_future(self._settle_wake.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            self._settle_wake.clear()
            await asyncio.sleep(self.settle_every)  # gather a batch
            try:
                await self.settle()
                await self._renew()
            except Exception:
                log.exception("settling the %s outbox failed", self.platform)
                await asyncio.sleep(0.5)

    async def _renew(self) -> None:
        if time.monotonic() - self._renewed < self.claims.lease / 3 or not self.held:
            return
        self._renewed = time.monotonic()
        ids = list(self.held)
        kept = await self.runtime.call(self.claims.renew, self.platform, ids)
        if kept < len(ids):
            log.warning("%d %s outbox rows were no longer ours", len(ids) - kept, self.platform)

    # ------------------------------------------------------------------ entry points

    async def flush(self, stop: asyncio.Event | None = None) -> int:
        """Claim and send everything pending now, wait for it to be sent (or dead-lettered)
        and settled; returns how many messages were sent. A message that keeps failing
        transiently keeps its lane (and this call) waiting."""
        before = self.sent
        while stop is None or not stop.is_set():
            await self.claim()
            if not self.lanes.busy():
                break
            await self.lanes.drain()
        await self.settle()
        return self.sent - before

    async def run(self, stop: asyncio.Event, *, idle: float = 1.0) -> None:
        """Claim whenever woken (new replies) and every ``idle`` seconds (leftovers, rows
        whose lease expired); settle continuously; on stop, let the messages in flight finish,
        settle, and give the rest back."""
        if self.take_over:
            try:
                await self.runtime.call(self.claims.take_over, self.platform)
            except Exception:
                log.exception("taking over the %s outbox failed", self.platform)
            self.take_over = False
        settler = asyncio.ensure_future(self._settle_loop(stop))
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    await self.claim()
                except Exception:
                    log.exception("claiming the %s outbox failed", self.platform)
                waiters = [
                    asyncio.ensure_future(self.wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
        finally:
            await self.shutdown(grace=5.0)
            settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settler

    async def shutdown(self, grace: float | None = None) -> None:
        try:
            await asyncio.shield(self.lanes.stop(grace))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.settle())
            with contextlib.suppress(Exception):
                await asyncio.shield(self.runtime.call(self.claims.release, self.platform))
            self.held.clear()
            self._per_chat.clear()
