"""Queries of the scheduler's tables (see ``storage.models_scheduler``). Like the core's
repositories they run inside the caller's unit of work and never commit; domain rules live in
``bot.schedule`` and ``bot.broadcasts``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, literal, select, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from storage.db import Database
from storage.models import Citizen, Comment, Contribution, Question, Support, Visit
from storage.models_scheduler import (
    ActionRun,
    AnnouncementChannel,
    Broadcast,
    BroadcastDelivery,
    BroadcastFile,
    PrivateChat,
    ScheduledAction,
    Subscription,
)
from storage.prepared import Prepared

PUBLISHED = "published"


@dataclass(frozen=True, slots=True)
class Recipient:
    platform: str
    chat_id: str
    citizen_id: int | None
    locale: str
    audience: str = "citizen"  # citizen | channel
    group_chat: bool = False
    params: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    broadcast_id: int
    total: int
    sent: int
    failed: int
    pending: int

    @property
    def done(self) -> bool:
        return self.pending == 0


class SchedulerRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def _insert(self, table: Any) -> Any:
        return (sqlite_insert if self.db.is_sqlite else pg_insert)(table)

    # ------------------------------------------------------------------ subscriptions

    def subscription(self, citizen_id: int, consultation_id: int) -> Subscription | None:
        return self.s.execute(
            select(Subscription).where(
                col(Subscription.citizen_id) == citizen_id,
                col(Subscription.consultation_id) == consultation_id,
            )
        ).scalar_one_or_none()

    def set_subscription(
        self, citizen_id: int, consultation_id: int, news: bool, now: datetime
    ) -> None:
        stmt = self._insert(Subscription.__table__).values(  # type: ignore[attr-defined]
            citizen_id=citizen_id,
            consultation_id=consultation_id,
            news=news,
            created_at=now,
            updated_at=now,
        )
        self.s.execute(
            stmt.on_conflict_do_update(
                index_elements=["citizen_id", "consultation_id"],
                set_={"news": news, "updated_at": now},
            )
        )

    def unsubscribe_all(self, citizen_id: int, now: datetime) -> int:
        result = self.s.execute(
            update(Subscription)
            .where(col(Subscription.citizen_id) == citizen_id, col(Subscription.news).is_(True))
            .values(news=False, updated_at=now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ private chats

    def private_chat(self, citizen_id: int) -> PrivateChat | None:
        return self.s.get(PrivateChat, citizen_id)

    def private_chat_key(self, citizen_id: int) -> tuple[str, str, str] | None:
        """(platform, chat id, locale) of a citizen's private chat: one row read on every
        private event, so a statement built once and no ORM object."""
        row = _PRIVATE_CHAT_KEY.first(self.s, {"citizen": citizen_id})
        return (row[0], row[1], row[2]) if row else None

    def remember_chat(
        self, citizen_id: int, platform: str, chat_id: str, locale: str, now: datetime
    ) -> None:
        stmt = self._insert(PrivateChat.__table__).values(  # type: ignore[attr-defined]
            citizen_id=citizen_id,
            platform=platform,
            chat_id=chat_id,
            locale=locale,
            updated_at=now,
        )
        self.s.execute(
            stmt.on_conflict_do_update(
                index_elements=["citizen_id"],
                set_={
                    "platform": platform,
                    "chat_id": chat_id,
                    "locale": locale,
                    "updated_at": now,
                },
            )
        )

    # ------------------------------------------------------------------ announcement channels

    def add_channel(
        self,
        consultation_id: int,
        platform: str,
        chat_id: str,
        locale: str,
        created_by: int | None,
        now: datetime,
    ) -> bool:
        """True if the chat became an announcement channel (False: it already was; its
        language is updated)."""
        existing = self.s.execute(
            select(AnnouncementChannel).where(
                col(AnnouncementChannel.consultation_id) == consultation_id,
                col(AnnouncementChannel.platform) == platform,
                col(AnnouncementChannel.chat_id) == chat_id,
            )
        ).scalar_one_or_none()
        if existing is not None:
            existing.locale = locale
            self.s.add(existing)
            return False
        return self.db.insert_ignore(
            self.s,
            AnnouncementChannel,
            consultation_id=consultation_id,
            platform=platform,
            chat_id=chat_id,
            locale=locale,
            created_by=created_by,
            created_at=now,
        )

    def remove_channel(self, platform: str, chat_id: str, consultation_id: int | None) -> int:
        stmt = delete(AnnouncementChannel).where(
            col(AnnouncementChannel.platform) == platform,
            col(AnnouncementChannel.chat_id) == chat_id,
        )
        if consultation_id is not None:
            stmt = stmt.where(col(AnnouncementChannel.consultation_id) == consultation_id)
        return int(self.s.execute(stmt).rowcount)  # type: ignore[attr-defined]

    def channels(self, consultation_id: int) -> Sequence[AnnouncementChannel]:
        return (
            self.s.execute(
                select(AnnouncementChannel)
                .where(col(AnnouncementChannel.consultation_id) == consultation_id)
                .order_by(col(AnnouncementChannel.id))
            )
            .scalars()
            .all()
        )

    # ------------------------------------------------------------------ audiences

    def subscribers(self, consultation_id: int) -> list[Recipient]:
        rows = self.s.execute(
            select(
                col(Citizen.id),
                col(PrivateChat.platform),
                col(PrivateChat.chat_id),
                func.coalesce(col(Citizen.locale), col(PrivateChat.locale)),
            )
            .select_from(Subscription)
            .join(Citizen, col(Citizen.id) == col(Subscription.citizen_id))
            .join(PrivateChat, col(PrivateChat.citizen_id) == col(Citizen.id))
            .where(
                col(Subscription.consultation_id) == consultation_id,
                col(Subscription.news).is_(True),
                col(Citizen.reachable).is_(True),
                col(Citizen.platform_user_id).is_not(None),
            )
            .order_by(col(Citizen.id))
        ).all()
        return [Recipient(r[1], r[2], r[0], r[3]) for r in rows]

    def participant_ids(self, consultation_id: int) -> Any:
        """A selectable of the ids of everyone who took part (as the statistics count them):
        authors of published contributions, their supporters and commenters."""
        published = and_(
            col(Contribution.consultation_id) == consultation_id,
            col(Contribution.status) == PUBLISHED,
        )
        authors: Any = select(col(Contribution.citizen_id).label("cid")).where(published)
        supporters: Any = (
            select(col(Support.citizen_id).label("cid"))
            .join(Contribution, col(Contribution.id) == col(Support.contribution_id))
            .where(published)
        )
        commenters: Any = (
            select(col(Comment.citizen_id).label("cid"))
            .join(Contribution, col(Contribution.id) == col(Comment.contribution_id))
            .where(published, col(Comment.status) == PUBLISHED)
        )
        return union(authors, supporters, commenters).subquery()

    def participants(self, consultation_id: int) -> list[Recipient]:
        """Participants who can be reached in private and did not opt out of the news."""
        ids = self.participant_ids(consultation_id)
        opted_out = (
            select(literal(1))
            .select_from(Subscription)
            .where(
                col(Subscription.citizen_id) == col(Citizen.id),
                col(Subscription.consultation_id) == consultation_id,
                col(Subscription.news).is_(False),
            )
            .exists()
        )
        rows = self.s.execute(
            select(
                col(Citizen.id),
                col(PrivateChat.platform),
                col(PrivateChat.chat_id),
                func.coalesce(col(Citizen.locale), col(PrivateChat.locale)),
            )
            .select_from(Citizen)
            .join(ids, ids.c.cid == col(Citizen.id))
            .join(PrivateChat, col(PrivateChat.citizen_id) == col(Citizen.id))
            .where(
                col(Citizen.reachable).is_(True),
                col(Citizen.platform_user_id).is_not(None),
                ~opted_out,
            )
            .order_by(col(Citizen.id))
        ).all()
        return [Recipient(r[1], r[2], r[0], r[3]) for r in rows]

    def citizen_address(self, platform: str, user_id: str) -> tuple[int, PrivateChat] | None:
        row = self.s.execute(
            select(Citizen, PrivateChat)
            .join(PrivateChat, col(PrivateChat.citizen_id) == col(Citizen.id))
            .where(col(Citizen.platform) == platform, col(Citizen.platform_user_id) == user_id)
        ).first()
        if row is None:
            return None
        citizen, chat = row
        assert citizen.id is not None
        return citizen.id, chat

    # ------------------------------------------------------------------ reminders' figures

    def reminders_received(self, since: datetime) -> dict[int, int]:
        """Reminders delivered (or on their way) per citizen since ``since``."""
        rows = self.s.execute(
            select(col(BroadcastDelivery.citizen_id), func.count())
            .join(Broadcast, col(Broadcast.id) == col(BroadcastDelivery.broadcast_id))
            .where(
                col(Broadcast.kind) == "reminder",
                col(Broadcast.created_at) > since,
                col(BroadcastDelivery.citizen_id).is_not(None),
                col(BroadcastDelivery.status).not_in(("failed", "skipped")),
            )
            .group_by(col(BroadcastDelivery.citizen_id))
        ).all()
        return {int(r[0]): int(r[1]) for r in rows}

    def answered(self, consultation_id: int) -> dict[int, set[int]]:
        """citizen id → question ids they answered (published or awaiting moderation)."""
        out: dict[int, set[int]] = {}
        rows = self.s.execute(
            select(col(Contribution.citizen_id), col(Contribution.question_id))
            .where(
                col(Contribution.consultation_id) == consultation_id,
                col(Contribution.status).in_(("published", "pending")),
            )
            .distinct()
        ).all()
        for citizen_id, question_id in rows:
            out.setdefault(int(citizen_id), set()).add(int(question_id))
        return out

    def supports_received(self, consultation_id: int) -> dict[int, int]:
        """citizen id → supports received by their published contributions."""
        rows = self.s.execute(
            select(col(Contribution.citizen_id), func.count())
            .select_from(Support)
            .join(Contribution, col(Contribution.id) == col(Support.contribution_id))
            .where(
                col(Contribution.consultation_id) == consultation_id,
                col(Contribution.status) == PUBLISHED,
            )
            .group_by(col(Contribution.citizen_id))
        ).all()
        return {int(r[0]): int(r[1]) for r in rows}

    def published_count_by_author(self, consultation_id: int) -> tuple[int, dict[int, int]]:
        rows = self.s.execute(
            select(col(Contribution.citizen_id), func.count())
            .where(
                col(Contribution.consultation_id) == consultation_id,
                col(Contribution.status) == PUBLISHED,
            )
            .group_by(col(Contribution.citizen_id))
        ).all()
        by_author = {int(r[0]): int(r[1]) for r in rows}
        return sum(by_author.values()), by_author

    def seen_or_supported(self, consultation_id: int) -> dict[int, int]:
        """citizen id → published contributions of others they have seen or supported."""
        from storage.models import Seen

        published = and_(
            col(Contribution.consultation_id) == consultation_id,
            col(Contribution.status) == PUBLISHED,
        )
        seen: Any = (
            select(col(Seen.citizen_id).label("cid"), col(Seen.contribution_id).label("kid"))
            .join(Contribution, col(Contribution.id) == col(Seen.contribution_id))
            .where(published, col(Contribution.citizen_id) != col(Seen.citizen_id))
        )
        supported: Any = (
            select(col(Support.citizen_id).label("cid"), col(Support.contribution_id).label("kid"))
            .join(Contribution, col(Contribution.id) == col(Support.contribution_id))
            .where(published)
        )
        both = union(seen, supported).subquery()
        rows = self.s.execute(select(both.c.cid, func.count()).group_by(both.c.cid)).all()
        return {int(r[0]): int(r[1]) for r in rows}

    # ------------------------------------------------------------------ schedule

    def actions(
        self,
        *,
        consultation_id: int | None = None,
        statuses: Iterable[str] | None = ("pending",),
    ) -> Sequence[ScheduledAction]:
        stmt = select(ScheduledAction)
        if consultation_id is not None:
            stmt = stmt.where(col(ScheduledAction.consultation_id) == consultation_id)
        if statuses is not None:
            stmt = stmt.where(col(ScheduledAction.status).in_(tuple(statuses)))
        stmt = stmt.order_by(col(ScheduledAction.due_at), col(ScheduledAction.id))
        return self.s.execute(stmt).scalars().all()

    def action(self, action_id: int, *, lock: bool = False) -> ScheduledAction | None:
        stmt = select(ScheduledAction).where(col(ScheduledAction.id) == action_id)
        if lock and not self.db.is_sqlite:
            stmt = stmt.with_for_update()
        return self.s.execute(stmt).scalar_one_or_none()

    def set_run_outcome(self, action: str, due_at: datetime, outcome: str) -> None:
        self.s.execute(
            update(ActionRun)
            .where(col(ActionRun.action) == action, col(ActionRun.due_at) == due_at)
            .values(outcome=outcome)
        )

    def signature(self) -> tuple[int, datetime | None, int]:
        """Changes when any scheduled action is added, changed or run."""
        count, latest, top = self.s.execute(
            select(
                func.count(),
                func.max(col(ScheduledAction.updated_at)),
                func.max(ScheduledAction.id),
            )
        ).one()
        return int(count), latest, int(top or 0)

    def insert_run(
        self, action: str, due_at: datetime, now: datetime, outcome: str, worker: str
    ) -> bool:
        """The exactly-once guard: False if this (action, due time) already ran."""
        return self.db.insert_ignore(
            self.s,
            ActionRun,
            action=action,
            due_at=due_at,
            ran_at=now,
            outcome=outcome,
            worker=worker[:64],
        )

    def runs(self) -> Sequence[ActionRun]:
        return self.s.execute(select(ActionRun).order_by(col(ActionRun.id))).scalars().all()

    # ------------------------------------------------------------------ broadcasts

    def add_broadcast(self, row: Broadcast) -> Broadcast:
        self.s.add(row)
        self.s.flush()
        return row

    def add_file(self, broadcast_id: int, name: str, mime_type: str, data: bytes) -> None:
        self.s.add(
            BroadcastFile(broadcast_id=broadcast_id, name=name, mime_type=mime_type, data=data)
        )

    def files(self, broadcast_id: int) -> Sequence[BroadcastFile]:
        return (
            self.s.execute(
                select(BroadcastFile)
                .where(col(BroadcastFile.broadcast_id) == broadcast_id)
                .order_by(col(BroadcastFile.id))
            )
            .scalars()
            .all()
        )

    def add_deliveries(
        self, broadcast_id: int, recipients: Iterable[Recipient], now: datetime
    ) -> int:
        """One row per recipient chat (the first wins when a chat comes twice); returns the
        number of rows of the broadcast."""
        seen: set[tuple[str, str]] = set()
        rows = []
        for r in recipients:
            if (r.platform, r.chat_id) in seen:
                continue
            seen.add((r.platform, r.chat_id))
            rows.append(
                {
                    "broadcast_id": broadcast_id,
                    "platform": r.platform,
                    "chat_id": r.chat_id,
                    "citizen_id": r.citizen_id,
                    "locale": r.locale,
                    "audience": r.audience,
                    "group_chat": r.group_chat,
                    "params": r.params,
                    "status": "pending",
                    "parts_sent": 0,
                    "attempts": 0,
                    "updated_at": now,
                }
            )
        table = BroadcastDelivery.__table__  # type: ignore[attr-defined]
        for start in range(0, len(rows), 5000):
            self.s.execute(insert(table), rows[start : start + 5000])
        return len(rows)

    def active_broadcasts(self) -> Sequence[Broadcast]:
        return (
            self.s.execute(
                select(Broadcast)
                .where(col(Broadcast.status) == "sending")
                .order_by(col(Broadcast.id))
            )
            .scalars()
            .all()
        )

    def pending_deliveries(
        self, platform: str, broadcast_ids: Sequence[int], limit: int, after_id: int = 0
    ) -> Sequence[BroadcastDelivery]:
        if not broadcast_ids:
            return []
        return (
            self.s.execute(
                select(BroadcastDelivery)
                .where(
                    col(BroadcastDelivery.platform) == platform,
                    col(BroadcastDelivery.status) == "pending",
                    col(BroadcastDelivery.broadcast_id).in_(tuple(broadcast_ids)),
                    col(BroadcastDelivery.id) > after_id,
                )
                .order_by(col(BroadcastDelivery.id))
                .limit(limit)
            )
            .scalars()
            .all()
        )

    def recover(self, platform: str, now: datetime) -> int:
        """Deliveries left 'sending' by a crash go back to 'pending': the part in flight will
        be sent again (with the same idempotency key)."""
        result = self.s.execute(
            update(BroadcastDelivery)
            .where(
                col(BroadcastDelivery.platform) == platform,
                col(BroadcastDelivery.status) == "sending",
            )
            .values(status="pending", updated_at=now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def finish_part(self, delivery_id: int, part: int, last: bool, now: datetime) -> None:
        self.s.execute(
            update(BroadcastDelivery)
            .where(col(BroadcastDelivery.id) == delivery_id)
            .values(
                status="sent" if last else "pending",
                parts_sent=part + 1,
                attempts=0 if not last else col(BroadcastDelivery.attempts),
                error=None,
                updated_at=now,
            )
        )

    def set_delivery(
        self, delivery_id: int, status: str, error: str | None, now: datetime
    ) -> None:
        self.s.execute(
            update(BroadcastDelivery)
            .where(col(BroadcastDelivery.id) == delivery_id)
            .values(status=status, error=error[:255] if error else None, updated_at=now)
        )

    def skip_chat(self, platform: str, chat_id: str, reason: str, now: datetime) -> int:
        result = self.s.execute(
            update(BroadcastDelivery)
            .where(
                col(BroadcastDelivery.platform) == platform,
                col(BroadcastDelivery.chat_id) == chat_id,
                col(BroadcastDelivery.status).in_(("pending", "sending")),
            )
            .values(status="skipped", error=reason[:255], updated_at=now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def counts(self, broadcast_ids: Sequence[int]) -> dict[int, DeliveryCounts]:
        if not broadcast_ids:
            return {}
        rows = self.s.execute(
            select(
                col(BroadcastDelivery.broadcast_id), col(BroadcastDelivery.status), func.count()
            )
            .where(col(BroadcastDelivery.broadcast_id).in_(tuple(broadcast_ids)))
            .group_by(col(BroadcastDelivery.broadcast_id), col(BroadcastDelivery.status))
        ).all()
        tally: dict[int, dict[str, int]] = {b: {} for b in broadcast_ids}
        for broadcast_id, status, n in rows:
            tally[int(broadcast_id)][str(status)] = int(n)
        out = {}
        for broadcast_id, t in tally.items():
            out[broadcast_id] = DeliveryCounts(
                broadcast_id,
                total=sum(t.values()),
                sent=t.get("sent", 0),
                failed=t.get("failed", 0) + t.get("skipped", 0),
                pending=t.get("pending", 0) + t.get("sending", 0),
            )
        return out

    def recent_broadcasts(
        self, limit: int, consultation_id: int | None = None
    ) -> Sequence[Broadcast]:
        stmt = select(Broadcast)
        if consultation_id is not None:
            stmt = stmt.where(col(Broadcast.consultation_id) == consultation_id)
        return self.s.execute(stmt.order_by(col(Broadcast.id).desc()).limit(limit)).scalars().all()

    # ------------------------------------------------------------------ results' figures

    def contribution_figures(self, consultation_id: int) -> list[tuple[Any, ...]]:
        """(id, question key, author pseudonym, text, created_at, supports, published
        comments) of every published contribution."""
        published = and_(
            col(Contribution.consultation_id) == consultation_id,
            col(Contribution.status) == PUBLISHED,
        )
        supports = (
            select(col(Support.contribution_id).label("kid"), func.count().label("n"))
            .join(Contribution, col(Contribution.id) == col(Support.contribution_id))
            .where(published)
            .group_by(col(Support.contribution_id))
            .subquery()
        )
        comments = (
            select(col(Comment.contribution_id).label("kid"), func.count().label("n"))
            .join(Contribution, col(Contribution.id) == col(Comment.contribution_id))
            .where(published, col(Comment.status) == PUBLISHED)
            .group_by(col(Comment.contribution_id))
            .subquery()
        )
        # Core rows on the session's connection: no ORM row processing for 20,000 rows.
        rows = (
            self.s.connection()
            .execute(
                select(
                    col(Contribution.id),
                    col(Question.key),
                    col(Citizen.pseudonym),
                    col(Contribution.text),
                    col(Contribution.created_at),
                    func.coalesce(supports.c.n, 0),
                    func.coalesce(comments.c.n, 0),
                )
                .join(Question, col(Question.id) == col(Contribution.question_id))
                .join(Citizen, col(Citizen.id) == col(Contribution.citizen_id))
                .outerjoin(supports, supports.c.kid == col(Contribution.id))
                .outerjoin(comments, comments.c.kid == col(Contribution.id))
                .where(published)
            )
            .all()
        )
        return [tuple(r) for r in rows]

    def participant_pseudonyms_apart(self, consultation_id: int) -> list[str]:
        """The same, read on a connection of its own (outside the caller's transaction, which
        may hold SQLite's write lock): the results run it in a thread, alongside the other
        queries. Only for data that no longer changes (a closed consultation)."""
        ids = self.participant_ids(consultation_id)
        stmt = select(col(Citizen.pseudonym)).join(ids, ids.c.cid == col(Citizen.id))
        compiled = stmt.compile(dialect=self.db.engine.dialect)
        params: Any = compiled.params
        if compiled.positiontup is not None:
            params = [compiled.params[name] for name in compiled.positiontup]
        raw = self.db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(str(compiled), params)
            return [row[0] for row in cursor.fetchall()]
        finally:
            raw.close()

    def participant_pseudonyms(self, consultation_id: int) -> list[str]:
        """The pseudonyms of everyone who took part (distinct: one per citizen)."""
        ids = self.participant_ids(consultation_id)
        return list(
            self.s.connection()
            .execute(select(col(Citizen.pseudonym)).join(ids, ids.c.cid == col(Citizen.id)))
            .scalars()
        )

    def visitors(self, consultation_id: int) -> int:
        return int(
            self.s.execute(
                select(func.count())
                .select_from(Visit)
                .where(col(Visit.consultation_id) == consultation_id)
            ).scalar_one()
        )


_PRIVATE_CHAT_KEY = Prepared(
    select(col(PrivateChat.platform), col(PrivateChat.chat_id), col(PrivateChat.locale)).where(
        col(PrivateChat.citizen_id) == bindparam("citizen")
    )
)
