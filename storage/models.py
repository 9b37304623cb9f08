"""SQLModel tables. Integrity lives in constraints, not in application checks.

Timestamps are aware datetimes (sqlmodel's ``UTCDateTime``: ``timestamptz`` on PostgreSQL, UTC on
SQLite) and always come back in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, MetaData, UniqueConstraint
from sqlmodel import Field, SQLModel

# A naming convention so that Alembic migrations (and SQLite batch mode) get stable names.
SQLModel.metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _json_column() -> Any:
    return Column(JSON, nullable=False)


def _bigint_pk() -> Any:
    # BIGINT on PostgreSQL (high-volume queues); INTEGER on SQLite so it stays the rowid.
    return Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)


class Consultation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    # draft | scheduled | open | closed | archived; the effective phase also depends on dates.
    status: str = Field(default="scheduled", max_length=16)
    opens_at: datetime
    closes_at: datetime
    timezone: str = Field(max_length=64)
    # The validated consultation document (bot.consultation_file), re-validated on read.
    document: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    # Incremented whenever the document or the questions change: parsed documents are cached
    # by (id, revision).
    revision: int = 1
    created_at: datetime
    updated_at: datetime


class Question(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("consultation_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id", index=True)
    key: str = Field(max_length=64)
    position: int
    # Set when a re-imported file left the question out (``consultation import
    # --archive-missing``): its contributions stay listed, marked archived; the texts (language
    # -> text) are those of the last file that had it. A file that has it again revives it.
    archived_at: datetime | None = None
    archived_texts: dict[str, str] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )


class Citizen(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    # Immutable platform id (Telegram numeric id, Matrix user id); NULL once erased.
    platform_user_id: str | None = Field(default=None, max_length=255)
    display_name: str | None = Field(default=None, max_length=255)
    locale: str | None = Field(default=None, max_length=8)
    # A random public id, used in exports instead of any platform identity.
    pseudonym: str = Field(max_length=32, unique=True)
    reachable: bool = True
    created_at: datetime
    last_seen_at: datetime


class Visit(SQLModel, table=True):
    """A citizen opened a consultation; one row per citizen and consultation (first visit)."""

    __table_args__ = (UniqueConstraint("consultation_id", "citizen_id"),)
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id", index=True)
    citizen_id: int = Field(foreign_key="citizen.id")
    source: str | None = Field(default=None, max_length=64)
    created_at: datetime


class Contribution(SQLModel, table=True):
    __table_args__ = (
        Index("ix_contribution_question_status", "question_id", "status"),
        Index("ix_contribution_citizen", "citizen_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id", index=True)
    question_id: int = Field(foreign_key="question.id")
    citizen_id: int = Field(foreign_key="citizen.id")
    text: str
    # pending (pre-moderation) | published | withdrawn | hidden
    status: str = Field(default="published", max_length=16)
    created_at: datetime
    updated_at: datetime


class Support(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("contribution_id", "citizen_id"),)
    id: int | None = Field(default=None, primary_key=True)
    contribution_id: int = Field(foreign_key="contribution.id", index=True)
    citizen_id: int = Field(foreign_key="citizen.id", index=True)
    created_at: datetime


class Comment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    contribution_id: int = Field(foreign_key="contribution.id", index=True)
    citizen_id: int = Field(foreign_key="citizen.id", index=True)
    text: str
    # published | withdrawn | hidden
    status: str = Field(default="published", max_length=16)
    created_at: datetime


class Seen(SQLModel, table=True):
    """Which contributions a citizen has been shown (for the "discover" order)."""

    __table_args__ = (UniqueConstraint("citizen_id", "contribution_id"),)
    id: int | None = Field(default=None, primary_key=True)
    citizen_id: int = Field(foreign_key="citizen.id")
    contribution_id: int = Field(foreign_key="contribution.id", index=True)
    created_at: datetime


class Dialogue(SQLModel, table=True):
    """Conversation state keyed by (platform, chat, user): survives restarts."""

    __table_args__ = (UniqueConstraint("platform", "chat_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    chat_id: str = Field(max_length=255)
    user_id: str = Field(max_length=255)
    state: str = Field(default="idle", max_length=32)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    updated_at: datetime


class InboxEvent(SQLModel, table=True):
    """Every platform event, committed before it is acknowledged; processed exactly once."""

    __table_args__ = (
        UniqueConstraint("platform", "event_key"),
        Index("ix_inboxevent_status_id", "status", "id"),
        # Erasure finds a citizen's events by sender and by chat; retention by processing time.
        Index("ix_inboxevent_platform_user", "platform", "user_id"),
        Index("ix_inboxevent_platform_chat", "platform", "chat_id"),
        Index("ix_inboxevent_kind_id", "kind", "id"),
        Index("ix_inboxevent_processed_at", "processed_at"),
    )
    id: int | None = Field(default=None, sa_column=_bigint_pk())
    platform: str = Field(max_length=16)
    event_key: str = Field(max_length=255)
    # pending | done | failed
    status: str = Field(default="pending", max_length=16)
    event: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    received_at: datetime
    processed_at: datetime | None = None
    error: str | None = None
    # Copied from the event at ingest (bot.ingress): sender, chat, chat type and payload kind.
    user_id: str | None = Field(default=None, max_length=255)
    chat_id: str | None = Field(default=None, max_length=255)
    chat_type: str | None = Field(default=None, max_length=16)
    kind: str | None = Field(default=None, max_length=16)


class OutboxMessage(SQLModel, table=True):
    """A reply produced by processing an inbox event, committed with the event's effect."""

    __table_args__ = (
        Index("ix_outboxmessage_platform_status", "platform", "status", "id"),
        Index("ix_outboxmessage_platform_message", "platform", "platform_message_id"),
        # Erasure finds the messages sent to a chat; retention prunes by age.
        Index("ix_outboxmessage_platform_chat", "platform", "chat_id"),
        Index("ix_outboxmessage_created_at", "created_at"),
    )
    id: int | None = Field(default=None, sa_column=_bigint_pk())
    platform: str = Field(max_length=16)
    chat_id: str = Field(max_length=255)
    inbox_id: int | None = Field(default=None, index=True)
    message: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    # pending | sent | failed
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    platform_message_id: str | None = Field(default=None, max_length=255)
    created_at: datetime
    sent_at: datetime | None = None
    error: str | None = None
    # The message's subject ("contribution:12"), copied from it at insert: replies and
    # reactions map to it, so retention keeps rows that have one.
    subject: str | None = Field(default=None, max_length=64)
    # When retention emptied this row (kept for its subject only; bot.privacy.prune).
    trimmed_at: datetime | None = None
    # The delivery runtime's claim (bot.delivery): the worker sending this row and until when;
    # another worker takes the row only once the lease has expired.
    claimed_by: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None


class ChannelState(SQLModel, table=True):
    """Small per-channel cursors (Telegram update offset, Matrix next_batch)."""

    key: str = Field(primary_key=True, max_length=128)
    value: str
    updated_at: datetime


# Feature tables live in their own modules; importing them registers them on the metadata.
from storage import (  # noqa: E402, F401
    models_answers,
    models_chats,
    models_counters,
    models_legible,
    models_moderation,
    models_runtime,
    models_scheduler,
)
