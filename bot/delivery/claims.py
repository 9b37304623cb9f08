"""The outbox as the delivery runtime sees it: claims with a lease, renewed while held,
settled in batches. Each call is its own short transaction (run it with ``Runtime.call``).

A worker claims rows before sending them; another worker takes a row only after its lease has
expired (the first one died or stalled), and a chat is only ever claimed as an unbroken run from
its oldest pending row, so two workers never send the same row nor reorder a chat (see
``storage.repositories_runtime``). Leases use the wall clock (``time.time``), not the app's
clock: they are an operational matter between processes, not a domain date.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.messages import OutboundMessage
from storage.db import Database
from storage.repositories import Repos
from storage.repositories_runtime import RuntimeRepo, Settlement

__all__ = ["Claim", "OutboxClaims", "Settlement", "worker_name"]


def worker_name() -> str:
    """A name unique to this process (host, pid, and a random suffix for pid reuse)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Claim:
    outbox_id: int
    message: OutboundMessage
    attempts: int = 0

    @property
    def key(self) -> str:
        """The idempotency key of this row (Matrix derives its transaction id from it)."""
        return f"out-{self.outbox_id}"


class OutboxClaims:
    def __init__(
        self,
        db: Database,
        *,
        worker: str | None = None,
        lease: float = 30.0,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.db = db
        self.worker = worker or worker_name()
        self.lease = lease
        self.clock = clock

    def claim(self, platform: str, limit: int = 200, exclude: Sequence[str] = ()) -> list[Claim]:
        """Claim up to ``limit`` free pending rows (3 statements, one transaction), skipping
        the chats in ``exclude``."""
        now = self.clock()
        with self.db.session() as session:
            rows = RuntimeRepo(self.db, session).claim(
                platform, self.worker, limit, now, now + timedelta(seconds=self.lease), exclude
            )
        return [Claim(r.id, OutboundMessage.from_json(r.message), r.attempts) for r in rows]

    def renew(self, platform: str, ids: Sequence[int]) -> int:
        """Extend the lease of rows still held; returns how many are still ours."""
        until = self.clock() + timedelta(seconds=self.lease)
        with self.db.session() as session:
            return RuntimeRepo(self.db, session).renew(platform, self.worker, ids, until)

    def release(self, platform: str) -> int:
        """Give back every row this worker holds (clean stop): others take them at once."""
        with self.db.session() as session:
            return RuntimeRepo(self.db, session).release(platform, self.worker)

    def take_over(self, platform: str) -> int:
        """Clear every lease of the platform: for the one worker of a SQLite database at its
        start, whose predecessor (killed) cannot be sending any more."""
        with self.db.session() as session:
            return RuntimeRepo(self.db, session).release(platform, None)

    def settle(
        self,
        platform: str,
        settled: Iterable[Settlement],
        unreachable: Iterable[str] = (),
    ) -> None:
        """Record sends and dead letters in one transaction; ``unreachable`` chats (blocked the
        bot, left) mark their citizen unreachable, so broadcasts skip them."""
        rows = list(settled)
        chats = sorted(set(unreachable))
        if not rows and not chats:
            return
        with self.db.session() as session:
            RuntimeRepo(self.db, session).settle(rows, self.clock())
            if chats:
                repos = Repos(self.db, session)
                for chat_id in chats:
                    citizen = repos.citizens.by_platform_id(platform, chat_id)
                    if citizen is not None and citizen.reachable:
                        citizen.reachable = False
                        session.add(citizen)

    def counts(self, platform: str | None = None) -> dict[str, int]:
        """Outbox rows by status; ``failed`` are the dead letters (kept, visible)."""
        with self.db.session() as session:
            return RuntimeRepo(self.db, session).counts(platform)
