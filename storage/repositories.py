"""One repository per aggregate. Repositories run queries inside the caller's unit of work
(a ``Session``); they never commit. Domain rules live in ``bot.services``."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, literal, or_, text, update
from sqlmodel import Session, col, select

from storage import counters as stat_counters
from storage import inbox_claims
from storage.db import Database
from storage.models import (
    ChannelState,
    Citizen,
    Comment,
    Consultation,
    Contribution,
    Dialogue,
    InboxEvent,
    OutboxMessage,
    Question,
    Seen,
    Support,
    Visit,
)
from storage.prepared import Prepared, in_session, persistent, pinned
from storage.repositories_answers import AnswersRepo
from storage.repositories_legible import LegibleRepo

PUBLISHED = "published"
LAST_SEEN_RESOLUTION = timedelta(minutes=5)


class Repos:
    """All repositories bound to one unit of work."""

    def __init__(self, db: Database, session: Session) -> None:
        self.db = db
        self.session = session
        self.consultations = ConsultationRepo(session)
        self.citizens = CitizenRepo(db, session)
        self.contributions = ContributionRepo(db, session)
        self.supports = SupportRepo(db, session)
        self.comments = CommentRepo(session)
        self.dialogues = DialogueRepo(db, session)
        self.inbox = InboxRepo(db, session)
        self.outbox = OutboxRepo(session)
        self.channel_state = ChannelStateRepo(session)
        self.stats = StatsRepo(db, session)
        self.legible = LegibleRepo(db, session)  # similar ideas, search, sorting (issue 15)
        self.answers = AnswersRepo(db, session)  # answers, merges, opinion groups (issue 15)


# --------------------------------------------------------------------------- consultations


class ConsultationRepo:
    def __init__(self, session: Session) -> None:
        self.s = session

    def by_slug(self, slug: str) -> Consultation | None:
        return self.s.exec(select(Consultation).where(Consultation.slug == slug)).first()

    def signature(self) -> tuple[int, datetime | None]:
        """Changes whenever a consultation is added or changed."""
        count, latest = self.s.execute(
            select(func.count(), func.max(col(Consultation.updated_at)))
        ).one()
        return int(count), latest

    def get(self, consultation_id: int) -> Consultation | None:
        found = in_session(self.s, Consultation, consultation_id)
        return found or pinned(self.s, self.s.get(Consultation, consultation_id))

    def all(self) -> Sequence[Consultation]:
        return self.s.exec(select(Consultation).order_by(col(Consultation.opens_at).desc())).all()

    def questions(self, consultation_id: int) -> Sequence[Question]:
        return self.s.exec(
            select(Question)
            .where(Question.consultation_id == consultation_id)
            .order_by(col(Question.position))
        ).all()

    def question(self, question_id: int) -> Question | None:
        return self.s.get(Question, question_id)

    def upsert(
        self,
        *,
        slug: str,
        opens_at: datetime,
        closes_at: datetime,
        timezone: str,
        document: dict[str, Any],
        question_keys: list[str],
        now: datetime,
        archived_texts: dict[str, dict[str, str]] | None = None,
    ) -> tuple[Consultation, bool]:
        """Create or update by slug. Questions are matched by key: existing ones keep their id
        (and their contributions); new keys are added; keys left out are archived (with their
        texts from ``archived_texts``), keys back in the file revive. Returns (consultation,
        created)."""
        row = self.by_slug(slug)
        created = row is None
        if row is None:
            row = Consultation(
                slug=slug,
                opens_at=opens_at,
                closes_at=closes_at,
                timezone=timezone,
                document=document,
                created_at=now,
                updated_at=now,
            )
        else:
            row.opens_at, row.closes_at, row.timezone = opens_at, closes_at, timezone
            row.document, row.updated_at = document, now
            row.revision += 1
        self.s.add(row)
        self.s.flush()
        assert row.id is not None
        existing = {q.key: q for q in self.questions(row.id)}
        # Park current positions out of the way, then assign the new order.
        for q in existing.values():
            q.position += 10_000
            self.s.add(q)
        self.s.flush()
        for position, key in enumerate(question_keys):
            q = existing.get(key) or Question(consultation_id=row.id, key=key, position=position)
            q.position = position
            q.archived_at, q.archived_texts = None, None
            self.s.add(q)
        for key, q in existing.items():
            if key not in question_keys and q.archived_at is None:
                q.archived_at = now
                q.archived_texts = (archived_texts or {}).get(key)
                self.s.add(q)
        self.s.flush()
        return row, created

    def contribution_counts(self, consultation_id: int) -> dict[int, int]:
        """Contributions per question id, whatever their status."""
        rows = self.s.exec(
            select(Contribution.question_id, func.count())
            .where(Contribution.consultation_id == consultation_id)
            .group_by(col(Contribution.question_id))
        ).all()
        return {int(question_id): int(n) for question_id, n in rows}


# --------------------------------------------------------------------------- citizens


class CitizenRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def get(self, citizen_id: int) -> Citizen | None:
        return self.s.get(Citizen, citizen_id)

    def by_platform_id(self, platform: str, user_id: str) -> Citizen | None:
        row = _CITIZEN.first(self.s, {"platform": platform, "user": user_id})
        return persistent(self.s, Citizen, row)

    def resolve(
        self, platform: str, user_id: str, display_name: str | None, now: datetime
    ) -> tuple[Citizen, bool]:
        """Find or create the citizen for an immutable platform id. Returns (citizen, new)."""
        found = self.by_platform_id(platform, user_id)
        if found is not None:
            if display_name and found.display_name != display_name:
                found.display_name = display_name
            if not found.reachable:
                found.reachable = True  # they wrote to us again
            if now - found.last_seen_at > LAST_SEEN_RESOLUTION:
                found.last_seen_at = now  # not on every event: it would make each one a write
            return found, False
        inserted = self.db.insert_ignore(
            self.s,
            Citizen,
            platform=platform,
            platform_user_id=user_id,
            display_name=display_name,
            pseudonym=secrets.token_hex(8),
            reachable=True,
            created_at=now,
            last_seen_at=now,
        )
        citizen = self.by_platform_id(platform, user_id)
        assert citizen is not None
        return citizen, inserted


# --------------------------------------------------------------------------- contributions


@dataclass(frozen=True, slots=True)
class ContributionRow:
    id: int
    question_id: int
    citizen_id: int
    text: str
    status: str
    created_at: datetime
    supports: int
    comments: int


class ContributionRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def pending_created(self, citizen_id: int, at: datetime) -> list[int]:
        """The contributions awaiting moderation that this citizen created at ``at`` (the
        event being handled)."""
        return list(
            self.s.execute(
                select(col(Contribution.id)).where(
                    col(Contribution.citizen_id) == citizen_id,
                    col(Contribution.status) == "pending",
                    col(Contribution.created_at) == at,
                )
            ).scalars()
        )

    def get(self, contribution_id: int) -> Contribution | None:
        found = in_session(self.s, Contribution, contribution_id)
        return found or persistent(
            self.s, Contribution, _CONTRIBUTION.first(self.s, {"cid": contribution_id})
        )

    def add(self, row: Contribution) -> Contribution:
        self.s.add(row)
        self.s.flush()
        return row

    def with_counts(self, contribution_id: int) -> ContributionRow | None:
        row = _WITH_COUNTS.first(self.s, {"cid": contribution_id})
        return ContributionRow(*row) if row else None

    def count_published(self, question_id: int, upto: int | None = None) -> int:
        """Published contributions of a question (with ``upto``: those numbered up to it)."""
        stmt = (
            select(func.count())
            .select_from(Contribution)
            .where(Contribution.question_id == question_id, Contribution.status == PUBLISHED)
        )
        if upto is not None:
            stmt = stmt.where(col(Contribution.id) <= upto)
        return self.s.exec(stmt).one()

    def browse_snapshot(self) -> BrowseSnapshot:
        """The highest seen, support and contribution ids now: "discover" pages of one browse
        are ordered as of this moment, so page 2 neither repeats page 1 nor skips ideas."""
        row = self.s.exec(
            select(
                select(func.coalesce(func.max(Seen.id), 0)).scalar_subquery(),
                select(func.coalesce(func.max(Support.id), 0)).scalar_subquery(),
                select(func.coalesce(func.max(Contribution.id), 0)).scalar_subquery(),
            )
        ).one()
        return BrowseSnapshot(int(row[0]), int(row[1]), int(row[2]))

    def browse(
        self,
        question_id: int,
        order: str,
        offset: int,
        limit: int,
        viewer_id: int,
        snapshot: BrowseSnapshot | None = None,
    ) -> list[ContributionRow]:
        """Published contributions of a question.

        ``top``: most supported first; ``new``: newest first; ``discover``: the ones this viewer
        has not been shown yet first (fewest supports first among them, so early ideas do not
        take all the attention), then the rest by fewest supports. With a ``snapshot``, the
        discover order is the one of that moment (what was seen, the supports, the ideas then
        published), so that paging through it shows each idea once."""
        supports, comments = _counts()
        stmt = select(Contribution, supports, comments).where(
            Contribution.question_id == question_id, Contribution.status == PUBLISHED
        )
        if order == "top":
            stmt = stmt.order_by(supports.desc(), col(Contribution.id).desc())
        elif order == "new":
            stmt = stmt.order_by(col(Contribution.id).desc())
        else:
            seen_where: list[Any] = [
                Seen.contribution_id == Contribution.id,
                Seen.citizen_id == viewer_id,
            ]
            rank = supports
            if snapshot is not None:
                seen_where.append(col(Seen.id) <= snapshot.seen)
                stmt = stmt.where(col(Contribution.id) <= snapshot.contribution)
                rank = (
                    select(func.count())
                    .select_from(Support)
                    .where(
                        Support.contribution_id == Contribution.id,
                        col(Support.id) <= snapshot.support,
                    )
                    .correlate(Contribution)
                    .scalar_subquery()
                )
            seen = (
                select(literal(1))
                .select_from(Seen)
                .where(*seen_where)
                .correlate(Contribution)
                .exists()
            )
            stmt = stmt.order_by(seen.asc(), rank.asc(), col(Contribution.id).asc())
        return [_row(r) for r in self.s.exec(stmt.offset(offset).limit(limit)).all()]

    def mark_seen(self, citizen_id: int, contribution_ids: list[int], now: datetime) -> None:
        for cid in contribution_ids:
            self.db.insert_ignore(
                self.s, Seen, citizen_id=citizen_id, contribution_id=cid, created_at=now
            )

    def of_citizen(self, citizen_id: int, consultation_id: int) -> list[ContributionRow]:
        supports, comments = _counts()
        rows = self.s.exec(
            select(Contribution, supports, comments)
            .where(
                Contribution.citizen_id == citizen_id,
                Contribution.consultation_id == consultation_id,
                # "merged": a duplicate merged into another idea (issue 15), still shown.
                col(Contribution.status).in_(("published", "pending", "hidden", "merged")),
            )
            .order_by(col(Contribution.id))
        ).all()
        return [_row(r) for r in rows]

    def answered_questions(self, citizen_id: int, consultation_id: int) -> set[int]:
        rows = _ANSWERED.rows(self.s, {"citizen": citizen_id, "consultation": consultation_id})
        return {question_id for (question_id,) in rows}


@dataclass(frozen=True, slots=True)
class BrowseSnapshot:
    """Highest ids at the first page of a "discover" browse (see ContributionRepo.browse)."""

    seen: int
    support: int
    contribution: int


def _counts() -> tuple[Any, Any]:
    supports = (
        select(func.count())
        .select_from(Support)
        .where(Support.contribution_id == Contribution.id)
        .correlate(Contribution)
        .scalar_subquery()
    )
    comments = (
        select(func.count())
        .select_from(Comment)
        .where(Comment.contribution_id == Contribution.id, Comment.status == PUBLISHED)
        .correlate(Contribution)
        .scalar_subquery()
    )
    return supports.label("supports"), comments.label("comments")


# One contribution with its counts, as plain columns (no ORM object): the hot path of a support.
_WITH_COUNTS = Prepared(
    select(  # type: ignore[call-overload]
        Contribution.id,
        Contribution.question_id,
        Contribution.citizen_id,
        Contribution.text,
        Contribution.status,
        Contribution.created_at,
        *_counts(),
    ).where(Contribution.id == bindparam("cid"))
)


def _row(r: Any) -> ContributionRow:
    c, supports, comments = r
    assert c.id is not None
    return ContributionRow(
        c.id, c.question_id, c.citizen_id, c.text, c.status, c.created_at, supports, comments
    )


# --------------------------------------------------------------------------- supports


class SupportRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def add(self, contribution_id: int, citizen_id: int, now: datetime) -> bool:
        """Insert the support; False if this citizen already supports it. The unique
        constraint on (contribution, citizen) decides, also between concurrent requests."""
        return (
            self.db.insert_ignore(
                self.s,
                Support,
                contribution_id=contribution_id,
                citizen_id=citizen_id,
                created_at=now,
            )
            is not None
        )

    def remove(self, contribution_id: int, citizen_id: int) -> bool:
        result = self.s.connection().execute(
            delete(Support)
            .where(
                col(Support.contribution_id) == contribution_id,
                col(Support.citizen_id) == citizen_id,
            )
            .returning(col(Support.id))
        )
        return result.first() is not None

    def supported_ids(self, citizen_id: int, contribution_ids: list[int]) -> set[int]:
        if not contribution_ids:
            return set()
        return set(
            self.s.connection()
            .execute(_SUPPORTED_IDS, {"citizen": citizen_id, "ids": list(contribution_ids)})
            .scalars()
        )


# Hot statements: built once, compiled once per dialect and run on the unit of work's DBAPI
# connection (storage.prepared) — SQLAlchemy's per-execution overhead is larger than these
# statements on SQLite.
_INBOX_MARK = Prepared(
    update(InboxEvent)
    .where(col(InboxEvent.id) == bindparam("inbox_id"))
    .values(status=bindparam("new_status"), processed_at=bindparam("at"), error=bindparam("err"))
)
_OUTBOX_MARK = Prepared(
    update(OutboxMessage)
    .where(col(OutboxMessage.id) == bindparam("outbox_id"))
    .values(
        status=bindparam("new_status"),
        sent_at=bindparam("at"),
        platform_message_id=bindparam("mid"),
        error=bindparam("err"),
        attempts=OutboxMessage.attempts + 1,
    )
)
_OUTBOX_INSERT = Prepared(
    insert(OutboxMessage).returning(col(OutboxMessage.id)),
    columns=("platform", "chat_id", "inbox_id", "message", "created_at", "subject"),
)
_CITIZEN = Prepared(
    select(Citizen).where(
        Citizen.platform == bindparam("platform"), Citizen.platform_user_id == bindparam("user")
    )
)
_DIALOGUE = Prepared(
    select(Dialogue)
    .where(
        Dialogue.platform == bindparam("platform"),
        Dialogue.chat_id == bindparam("chat"),
        Dialogue.user_id == bindparam("user"),
    )
    .with_for_update()
)
_CONTRIBUTION = Prepared(select(Contribution).where(Contribution.id == bindparam("cid")))
# The questions a citizen has answered (read at each step of participating).
_ANSWERED = Prepared(
    select(Contribution.question_id).where(
        Contribution.citizen_id == bindparam("citizen"),
        Contribution.consultation_id == bindparam("consultation"),
        # Not IN (…): a prepared statement takes no expanding parameter.
        or_(col(Contribution.status) == "published", col(Contribution.status) == "pending"),
    )
)
_SUPPORTED_IDS = select(Support.contribution_id).where(
    Support.citizen_id == bindparam("citizen"),
    col(Support.contribution_id).in_(bindparam("ids", expanding=True)),
)


# --------------------------------------------------------------------------- comments


class CommentRepo:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, row: Comment) -> Comment:
        self.s.add(row)
        self.s.flush()
        return row

    def published(self, contribution_id: int, offset: int, limit: int) -> Sequence[Comment]:
        return self.s.exec(
            select(Comment)
            .where(Comment.contribution_id == contribution_id, Comment.status == PUBLISHED)
            .order_by(col(Comment.id))
            .offset(offset)
            .limit(limit)
        ).all()

    def count(self, contribution_id: int) -> int:
        return self.s.exec(
            select(func.count())
            .select_from(Comment)
            .where(Comment.contribution_id == contribution_id, Comment.status == PUBLISHED)
        ).one()


# --------------------------------------------------------------------------- dialogue


class DialogueRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def load(self, platform: str, chat_id: str, user_id: str, now: datetime) -> Dialogue:
        """The dialogue row, created if missing, locked for this unit of work on PostgreSQL."""
        key = {"platform": platform, "chat": chat_id, "user": user_id}
        row = persistent(self.s, Dialogue, _DIALOGUE.first(self.s, key))
        if row is None:
            self.db.insert_ignore(
                self.s,
                Dialogue,
                platform=platform,
                chat_id=chat_id,
                user_id=user_id,
                state="idle",
                data={},
                updated_at=now,
            )
            row = persistent(self.s, Dialogue, _DIALOGUE.first(self.s, key))
            assert row is not None
        return row

    def save(self, row: Dialogue, now: datetime) -> None:
        if self.s.is_modified(row):
            row.updated_at = now
            self.s.add(row)


# --------------------------------------------------------------------------- inbox / outbox


class InboxRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def add(
        self, platform: str, event_key: str, event: dict[str, Any], now: datetime
    ) -> int | None:
        """Record an event; its inbox id, or None if this platform event was already recorded."""
        return self.db.insert_ignore(
            self.s,
            InboxEvent,
            platform=platform,
            event_key=event_key,
            status="pending",
            event=event,
            received_at=now,
        )

    def add_event(self, event: dict[str, Any], now: datetime) -> int | None:
        """Record an event (``InboundEvent.to_json()``, normalized by bot.ingress) with the
        columns erasure and retention search by; None if it was already recorded."""
        ctx = event["context"]
        return self.db.insert_ignore(
            self.s,
            InboxEvent,
            platform=ctx["platform"],
            event_key=ctx["event_id"],
            status="pending",
            event=event,
            received_at=now,
            user_id=ctx["user_id"],
            chat_id=ctx["chat_id"],
            chat_type=ctx["chat_type"],
            kind=event["payload"]["kind"],
        )

    def pending_ids(self, platform: str | None, limit: int) -> list[int]:
        stmt = select(InboxEvent.id).where(InboxEvent.status == "pending")
        if platform:
            stmt = stmt.where(InboxEvent.platform == platform)
        return [i for i in self.s.exec(stmt.order_by(col(InboxEvent.id)).limit(limit)).all() if i]

    def claim(self, inbox_id: int) -> InboxEvent | None:
        """Lock a pending row for processing (skip it if another worker holds it)."""
        stmt = select(InboxEvent).where(InboxEvent.id == inbox_id, InboxEvent.status == "pending")
        if not self.db.is_sqlite:
            # And its chat (storage.inbox_claims): events of a chat are processed in order.
            stmt = stmt.where(text(inbox_claims.CHAT_LOCK)).with_for_update(skip_locked=True)
        return self.s.exec(stmt).first()

    def take(
        self, inbox_id: int, now: datetime, skipped: list[str]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """Mark a pending event done and return (its chat key, its JSON), in one statement;
        the JSON is None if it is not pending, or its chat is busy elsewhere or in
        ``skipped``: storage.inbox_claims."""
        return inbox_claims.take(self.s, inbox_id, now, skipped)

    def mark(self, inbox_id: int, status: str, now: datetime, error: str | None = None) -> None:
        _INBOX_MARK.run(
            self.s, {"inbox_id": inbox_id, "new_status": status, "at": now, "err": error}
        )

    def by_key(self, platform: str, event_key: str) -> InboxEvent | None:
        return self.s.exec(
            select(InboxEvent).where(
                InboxEvent.platform == platform, InboxEvent.event_key == event_key
            )
        ).first()


def subject_key(message: dict[str, Any]) -> str | None:
    """``"contribution:12"`` for a stored message whose subject is ("contribution", 12)."""
    subject = message.get("subject")
    return f"{subject[0]}:{subject[1]}"[:64] if subject else None


class OutboxRepo:
    def __init__(self, session: Session) -> None:
        self.s = session

    def add(self, row: OutboxMessage) -> OutboxMessage:
        row.subject = subject_key(row.message)
        self.s.add(row)
        self.s.flush()
        return row

    def add_many(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert replies in one statement; their ids, in order."""
        if not rows:
            return []
        # One statement per reply (an event has one or two): a multi-row INSERT … RETURNING
        # does not promise the order of the ids it returns on every database.
        return [
            int(_OUTBOX_INSERT.scalar(self.s, {**row, "subject": subject_key(row["message"])}))
            for row in rows
        ]

    def pending(self, platform: str, limit: int = 100) -> Sequence[OutboxMessage]:
        return self.s.exec(
            select(OutboxMessage)
            .where(OutboxMessage.platform == platform, OutboxMessage.status == "pending")
            .order_by(col(OutboxMessage.id))
            .limit(limit)
        ).all()

    def subject_of(self, platform: str, chat_id: str, message_id: str) -> tuple[str, int] | None:
        """What a sent message showed (e.g. ("contribution", 12)), from its platform id."""
        row = self.s.exec(
            select(OutboxMessage).where(
                OutboxMessage.platform == platform,
                OutboxMessage.chat_id == chat_id,
                OutboxMessage.platform_message_id == message_id,
            )
        ).first()
        subject = row.message.get("subject") if row else None
        return (str(subject[0]), int(subject[1])) if subject else None

    def mark(
        self,
        outbox_id: int,
        status: str,
        now: datetime,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        self.mark_many([(outbox_id, message_id)], status, now, error=error)

    def mark_many(
        self,
        rows: Sequence[tuple[int, str | None]],
        status: str,
        now: datetime,
        *,
        error: str | None = None,
    ) -> None:
        """Mark messages (outbox id, platform message id) in one executemany statement."""
        if not rows:
            return
        sent_at = now if status == "sent" else None
        _OUTBOX_MARK.run_many(
            self.s,
            [
                {"outbox_id": i, "new_status": status, "at": sent_at, "mid": m, "err": error}
                for i, m in rows
            ],
        )


def moderating_chats(session: Session, platform: str) -> list[str]:
    """The chats of a platform that moderate something: moderators' own (private) chats, which
    share their user id, and the moderators' chats registered with /modchat."""
    from storage.models_moderation import Moderator, ModeratorChat

    users = session.exec(select(Moderator.platform_user_id).where(Moderator.platform == platform))
    chats = session.exec(select(ModeratorChat.chat_id).where(ModeratorChat.platform == platform))
    return sorted({str(u) for u in users.all()} | {str(c) for c in chats.all()})


class ChannelStateRepo:
    def __init__(self, session: Session) -> None:
        self.s = session

    def get(self, key: str) -> str | None:
        row = self.s.get(ChannelState, key)
        return row.value if row else None

    def set(self, key: str, value: str, now: datetime) -> None:
        row = self.s.get(ChannelState, key) or ChannelState(key=key, value=value, updated_at=now)
        row.value, row.updated_at = value, now
        self.s.add(row)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class Counters:
    participants: int
    contributions: int
    supports: int
    visitors: int
    comments: int


class StatsRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def counters(self, consultation_id: int) -> Counters:
        """The statistics, from the counters the database's triggers keep (one statement)."""
        return Counters(*stat_counters.read(self.s, consultation_id))

    def fold_counters(self) -> int:
        """Fold the counters' pending deltas (PostgreSQL); reads are exact either way."""
        return stat_counters.fold(self.s)

    def recount(self, consultation_id: int) -> Counters:
        """The statistics counted from the rows (the definition the counters must match)."""
        published = and_(
            col(Contribution.consultation_id) == consultation_id,
            col(Contribution.status) == PUBLISHED,
        )
        contributions = self.s.exec(
            select(func.count()).select_from(Contribution).where(published)
        ).one()
        supports = self.s.exec(
            select(func.count())
            .select_from(Support)
            .join(Contribution, col(Contribution.id) == Support.contribution_id)
            .where(published)
        ).one()
        comments = self.s.exec(
            select(func.count())
            .select_from(Comment)
            .join(Contribution, col(Contribution.id) == Comment.contribution_id)
            .where(published, Comment.status == PUBLISHED)
        ).one()
        authors = select(Contribution.citizen_id).where(published)
        supporters = (
            select(Support.citizen_id)
            .join(Contribution, col(Contribution.id) == Support.contribution_id)
            .where(published)
        )
        commenters = (
            select(Comment.citizen_id)
            .join(Contribution, col(Contribution.id) == Comment.contribution_id)
            .where(published, Comment.status == PUBLISHED)
        )
        union = authors.union(supporters, commenters).subquery()
        participants = self.s.exec(select(func.count()).select_from(union)).one()
        visitors = self.s.exec(
            select(func.count()).select_from(Visit).where(Visit.consultation_id == consultation_id)
        ).one()
        return Counters(participants, contributions, supports, visitors, comments)

    def record_visit(
        self, consultation_id: int, citizen_id: int, source: str | None, now: datetime
    ) -> bool:
        return self.db.insert_ignore(
            self.s,
            Visit,
            consultation_id=consultation_id,
            citizen_id=citizen_id,
            source=source,
            created_at=now,
        )
