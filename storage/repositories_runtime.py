"""Queries of the delivery runtime (``bot.delivery``): outbox claims and the shared send pace.

Like the other repositories they run inside the caller's unit of work and never commit.

Claims keep two promises across workers:

- a row is sent by one worker at a time: a worker claims rows (``claimed_by``, ``lease_until``)
  and another takes them only once the lease has expired (the worker died or stalled);
- a chat's order is kept: a worker claims the pending rows of a chat only as an unbroken run
  from the chat's oldest pending row (its head). If another worker holds the head (a lease, or a
  row lock while it claims), the chat is left alone until that worker is done with it.

On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED`` (workers claiming at the
same time skip each other's rows instead of waiting); on SQLite every transaction starts with
``BEGIN IMMEDIATE`` (``storage.db``), so claims are serialised anyway.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, text, update
from sqlmodel import Session, col

from storage.db import Database
from storage.models import OutboxMessage as O
from storage.models_runtime import SendPace


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    id: int
    chat_id: str
    message: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """What happened to one claimed row: ``sent`` (with the platform's message id) or
    ``failed`` (a dead letter, with the error)."""

    outbox_id: int
    status: str
    message_id: str | None = None
    error: str | None = None


BACKLOG = text(
    """
SELECT 'inbox', platform, 'pending', count(*), min(received_at) FROM inboxevent
    WHERE status = 'pending' GROUP BY platform
UNION ALL
SELECT 'outbox', platform, status, count(*), min(created_at) FROM outboxmessage
    WHERE status IN ('pending', 'failed') GROUP BY platform, status
"""
)


class RuntimeRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    # ------------------------------------------------------------------ outbox claims

    def claim(
        self,
        platform: str,
        worker: str,
        limit: int,
        now: datetime,
        until: datetime,
        exclude: Sequence[str] = (),
    ) -> list[ClaimedRow]:
        """Claim up to ``limit`` pending rows of ``platform`` that nobody holds (three
        statements), for ``worker`` until ``until``, oldest first. Rows this worker already
        holds are not returned again (``renew`` keeps them); chats in ``exclude`` (those the
        worker holds enough of) are left for later."""
        free = or_(col(O.lease_until).is_(None), col(O.lease_until) < now)
        candidates = (
            select(col(O.id), col(O.chat_id))
            .where(col(O.platform) == platform, col(O.status) == "pending", free)
            .order_by(col(O.id))
            .limit(limit)
        )
        if exclude:
            candidates = candidates.where(col(O.chat_id).not_in(list(exclude)))
        if not self.db.is_sqlite:
            candidates = candidates.with_for_update(skip_locked=True, of=O)
        got = self.s.execute(candidates).all()
        if not got:
            return []
        mine = {int(i) for i, _chat in got}
        chats = sorted({str(chat) for _i, chat in got})
        # Every pending row of those chats up to the last candidate: a chat is taken only as a
        # run from its head, so no row is sent before an older one of its chat.
        heads = self.s.execute(
            select(col(O.id), col(O.chat_id), col(O.claimed_by), col(O.lease_until))
            .where(
                col(O.platform) == platform,
                col(O.status) == "pending",
                col(O.chat_id).in_(chats),
                col(O.id) <= max(mine),
            )
            .order_by(col(O.id))
        ).all()
        broken: set[str] = set()
        take: list[int] = []
        for row_id, chat, holder, lease in heads:
            if chat in broken:
                continue
            if int(row_id) in mine:
                take.append(int(row_id))
            elif holder == worker and lease is not None and lease >= now:
                continue  # already ours: the run goes on after it
            else:
                broken.add(chat)  # held (or being claimed) by another worker: leave the chat
        if not take:
            return []
        rows = self.s.execute(
            update(O)
            .where(col(O.id).in_(take))
            .values(claimed_by=worker, lease_until=until)
            .returning(col(O.id), col(O.chat_id), col(O.message), col(O.attempts))
        ).all()
        out = [ClaimedRow(int(i), str(c), m, int(a or 0)) for i, c, m, a in rows]
        out.sort(key=lambda r: r.id)
        return out

    def renew(self, platform: str, worker: str, ids: Sequence[int], until: datetime) -> int:
        """Extend this worker's lease on rows it still holds; returns how many it kept."""
        if not ids:
            return 0
        result = self.s.execute(
            update(O)
            .where(
                col(O.id).in_(list(ids)),
                col(O.platform) == platform,
                col(O.status) == "pending",
                col(O.claimed_by) == worker,
            )
            .values(lease_until=until)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def release(self, platform: str, worker: str | None) -> int:
        """Give back every pending row this worker holds (on a clean stop); with ``worker``
        None, every pending row of the platform, whoever holds it."""
        query = update(O).where(col(O.platform) == platform, col(O.status) == "pending")
        if worker is not None:
            query = query.where(col(O.claimed_by) == worker)
        result = self.s.execute(query.values(claimed_by=None, lease_until=None))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def settle(self, settled: Sequence[Settlement], now: datetime) -> None:
        """Record what happened to sent or dead-lettered rows, in one executemany."""
        if not settled:
            return
        self.s.connection().execute(
            update(O)
            .where(col(O.id) == bindparam("oid"), col(O.status) == "pending")
            .values(
                status=bindparam("new_status"),
                sent_at=bindparam("at"),
                platform_message_id=bindparam("mid"),
                error=bindparam("err"),
                attempts=O.attempts + 1,
                lease_until=None,
            ),
            [
                {
                    "oid": s.outbox_id,
                    "new_status": s.status,
                    "at": now if s.status == "sent" else None,
                    "mid": s.message_id,
                    "err": s.error[:1000] if s.error else None,
                }
                for s in settled
            ],
        )

    def backlog(self) -> list[tuple[Any, ...]]:
        """(table, platform, status, count, oldest) of pending inbox events and pending or
        failed outbox rows: what the metrics show, in one statement."""
        return [tuple(r) for r in self.s.connection().execute(BACKLOG)]

    def counts(self, platform: str | None = None) -> dict[str, int]:
        """Outbox rows by status (``failed`` rows are the dead letters)."""
        query = select(col(O.status), func.count()).group_by(col(O.status))
        if platform is not None:
            query = query.where(col(O.platform) == platform)
        return {str(status): int(n) for status, n in self.s.execute(query).all()}

    def chats_in_order(self, platform: str, ids: Sequence[int]) -> dict[str, list[int]]:
        """Rows by chat (test helper and diagnostics)."""
        out: dict[str, list[int]] = defaultdict(list)
        for row_id, chat in self.s.execute(
            select(col(O.id), col(O.chat_id))
            .where(col(O.platform) == platform, col(O.id).in_(list(ids)))
            .order_by(col(O.id))
        ).all():
            out[str(chat)].append(int(row_id))
        return dict(out)

    # ------------------------------------------------------------------ shared pace

    def take_slots(self, account: str, span: float, now: float, max_ahead: float = 10.0) -> float:
        """Reserve ``span`` seconds of the account's send slots, from ``max(next_at, now)``;
        returns where the reserved span starts (one ``UPDATE … RETURNING``). A ``next_at``
        more than ``max_ahead`` seconds ahead (a worker whose clock was wrong) is not trusted:
        the span starts now."""
        ahead = col(SendPace.next_at)
        statement = (
            update(SendPace)
            .where(col(SendPace.account) == account)
            .values(
                next_at=case((and_(ahead > now, ahead < now + max_ahead), ahead), else_=now) + span
            )
            .returning(col(SendPace.next_at))
        )
        end = self.s.execute(statement).scalar()
        if end is None:
            self.db.insert_ignore(self.s, SendPace, account=account, next_at=0.0)
            end = self.s.execute(statement).scalar()
        if end is None:  # pragma: no cover - the row was just inserted
            self.s.execute(insert(SendPace).values(account=account, next_at=now + span))
            end = now + span
        return float(end) - span
