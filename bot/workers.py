"""Running several ``parlons run`` workers on one database.

- **PostgreSQL**: any number of workers. Every worker processes the inbox (each event once, in
  order within its chat: ``storage.inbox_claims``) and sends the outbox (``bot.delivery``
  claims). What must happen once per bot account runs on a leader: the Telegram ``getUpdates``
  poller (Telegram answers 409 to a second consumer) and the Matrix sync, each under a
  session advisory lock per (platform, account) (``storage.leader``). When the leader dies its
  database session ends and the lock is free; another worker takes it at its next try (every
  ``retry`` seconds) and starts polling ``1.5 × check`` seconds later (time for a leader cut
  off from the database, but alive, to notice and stop): failover in about 5 s by default.
  Webhook mode needs no leader: every worker serves the endpoint.
- **SQLite**: one worker. ``parlons run`` holds an exclusive lock on a file next to the
  database and refuses to start a second worker on the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.errors import sqlite_database
from storage.leader import FileLeader, Leadership, PostgresLeader, leadership_for

log = logging.getLogger(__name__)


class SecondWorker(RuntimeError):
    """Another ``parlons run`` already uses this SQLite database."""


def single_worker_lock(url: str) -> FileLeader | None:
    """SQLite: take the one-worker lock of this database file (None for PostgreSQL and
    in-memory databases); raises ``SecondWorker`` if another process holds it."""
    database = sqlite_database(url)
    if database is None:
        return None
    lock = FileLeader(Path(f"{database}.run.lock"))
    if not _acquire_now(lock):
        raise SecondWorker(
            f"another 'parlons run' already uses the SQLite database {database}: "
            "SQLite takes one worker; use PostgreSQL (PARLONS_DATABASE_URL) to run several"
        )
    return lock


def _acquire_now(lock: FileLeader) -> bool:
    # FileLeader.acquire never awaits: drive the coroutine to its end without an event loop.
    coro = lock.acquire()
    try:
        coro.send(None)
    except StopIteration as done:
        return bool(done.value)
    coro.close()
    raise RuntimeError("FileLeader.acquire awaited")  # pragma: no cover


@dataclass
class Leader:
    """One role led by at most one worker (``poll:telegram:<bot id>``, ``poll:matrix:<user>``).
    ``leading`` is what ``/metrics`` shows."""

    name: str
    leadership: Leadership
    retry: float = 2.0
    check: float = 2.0
    leading: bool = False
    terms: int = 0
    # Seconds between becoming the leader and starting the work (None: 1.5 × check when the
    # lock is a database session's, which can be cut without the old leader dying; a file
    # lock on SQLite dies with its process).
    grace: float | None = None

    def __post_init__(self) -> None:
        if self.grace is None:
            self.grace = self.check * 1.5 if isinstance(self.leadership, PostgresLeader) else 0.0

    @classmethod
    def for_account(
        cls, url: str, platform: str, account: str, *, retry: float = 2.0, check: float = 2.0
    ) -> Leader:
        name = f"poll:{platform}:{account}"
        return cls(name, leadership_for(url, name), retry=retry, check=check)

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("%s: %s", self.name, "leading" if leading else "not leading")

    async def run(
        self, stop: asyncio.Event, work: Callable[[asyncio.Event], Awaitable[None]]
    ) -> None:
        """Until ``stop``: become the leader (trying every ``retry`` seconds), then run
        ``work(halt)`` while leading; ``halt`` is set when ``stop`` is, or when the leadership
        is lost (the work must then return promptly), and the worker tries again."""
        while not stop.is_set():
            if not await self.leadership.acquire():
                await _sleep(stop, self.retry)
                continue
            # A leader that lost its lock without dying (its session cut) notices within
            # ``check`` seconds and stops its work: wait that long before starting ours, so
            # that two workers never poll at once.
            if self.grace:
                await _sleep(stop, self.grace)
                if stop.is_set() or not await self.leadership.check():
                    await self.leadership.release()
                    continue
            self.terms += 1
            self._set(True)
            halt = asyncio.Event()
            task = asyncio.ensure_future(work(halt))
            try:
                while not task.done():
                    stopping = asyncio.ensure_future(stop.wait())
                    await asyncio.wait(
                        {task, stopping}, timeout=self.check, return_when=asyncio.FIRST_COMPLETED
                    )
                    stopping.cancel()
                    if stop.is_set():
                        break
                    if not task.done() and not await self.leadership.check():
                        log.warning("%s: leadership lost; stopping", self.name)
                        break
            finally:
                halt.set()
                self._set(False)
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await asyncio.wait_for(asyncio.shield(task), 10)
                    except TimeoutError:
                        task.cancel()
                        await task
                    except Exception:
                        log.exception("%s: the leader's work failed", self.name)
                await self.leadership.release()
            if not stop.is_set():
                await _sleep(stop, self.retry)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class LedService:
    """A channel service that runs on one worker at a time (Matrix: one sync per account).

    It starts when this worker becomes the account's leader. Its logged-in client cannot be
    restarted in place, so if the leadership is lost (the database session died) the whole
    worker stops, for its supervisor to restart it; another worker has taken over meanwhile.
    """

    def __init__(self, service: Any, leader: Leader) -> None:
        self.service = service
        self.poll_leader = leader
        self.name = service.name
        self.channel = service.channel
        self._terms = 0

    @property
    def sender(self) -> Any:
        return getattr(self.service, "sender", None)

    async def run(self, stop: asyncio.Event) -> None:
        async def term(halt: asyncio.Event) -> None:
            self._terms += 1
            if self._terms > 1:
                log.error("%s: leadership lost earlier; stopping this worker", self.name)
                stop.set()
                return
            await self.service.run(halt)
            if not stop.is_set():
                log.error("%s stopped while leading; stopping this worker", self.name)
                stop.set()

        await self.poll_leader.run(stop, term)
