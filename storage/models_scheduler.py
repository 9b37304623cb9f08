"""Tables of the scheduler: subscriptions, announcement channels, the schedule, its runs, and
the broadcast outbox.

Integrity lives in constraints: one subscription per (citizen, consultation), one run per
(scheduled action, due time), one delivery per (broadcast, recipient chat).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def _json() -> Any:
    return Column(JSON, nullable=False)


def _bigint_pk() -> Any:
    return Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)


class Subscription(SQLModel, table=True):
    """A citizen's choice about news of one consultation (announcements, reminders, results).
    No row: the choice is still unknown (the bot offers it on /start)."""

    __tablename__ = "subscription"
    __table_args__ = (
        UniqueConstraint("citizen_id", "consultation_id"),
        Index("ix_subscription_consultation_news", "consultation_id", "news"),
    )
    id: int | None = Field(default=None, primary_key=True)
    citizen_id: int = Field(foreign_key="citizen.id")
    consultation_id: int = Field(foreign_key="consultation.id")
    news: bool
    created_at: datetime
    updated_at: datetime


class PrivateChat(SQLModel, table=True):
    """Where to reach a citizen privately (their private chat with the bot) and in which
    language; kept up to date by a middleware when they write to the bot in private."""

    __tablename__ = "private_chat"
    citizen_id: int = Field(primary_key=True, foreign_key="citizen.id")
    platform: str = Field(max_length=16)
    chat_id: str = Field(max_length=255)
    locale: str = Field(max_length=8)
    updated_at: datetime


class AnnouncementChannel(SQLModel, table=True):
    """A group or room where a moderator ran /announce_here for a consultation."""

    __tablename__ = "announcement_channel"
    __table_args__ = (UniqueConstraint("consultation_id", "platform", "chat_id"),)
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id", index=True)
    platform: str = Field(max_length=16)
    chat_id: str = Field(max_length=255)
    locale: str = Field(max_length=8)
    created_by: int | None = Field(default=None, foreign_key="citizen.id")
    created_at: datetime


class ScheduledAction(SQLModel, table=True):
    """One thing to do at one instant (UTC): open, close, results, reminder, announcement.

    Rows derived from the consultation (its dates and reminders policy) are kept in sync by
    ``bot.schedule``; announcements are added by moderators. ``key`` is stable per
    consultation (``open``, ``close``, ``remind:before:7d``, ``announce:<uuid>``)."""

    __tablename__ = "scheduled_action"
    __table_args__ = (
        UniqueConstraint("consultation_id", "key"),
        Index("ix_scheduled_action_status_due", "status", "due_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id")
    key: str = Field(max_length=64)
    # open | close | results | reminder | announce
    kind: str = Field(max_length=16)
    due_at: datetime
    # pending | done | skipped | cancelled
    status: str = Field(default="pending", max_length=16)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    created_by: int | None = Field(default=None, foreign_key="citizen.id")
    created_at: datetime
    updated_at: datetime
    ran_at: datetime | None = None
    note: str | None = Field(default=None, max_length=255)


class ActionRun(SQLModel, table=True):
    """The exactly-once guard: inserted in the same transaction as the action's effect."""

    __tablename__ = "action_run"
    __table_args__ = (UniqueConstraint("action", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    # "<consultation id>:<key>"
    action: str = Field(max_length=96)
    due_at: datetime
    ran_at: datetime
    # done | skipped
    outcome: str = Field(max_length=16)
    worker: str = Field(max_length=64)


class Broadcast(SQLModel, table=True):
    """One message to many recipients (an announcement, a reminder round, the results)."""

    __tablename__ = "broadcast"
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int | None = Field(default=None, foreign_key="consultation.id", index=True)
    # announcement | reminder | opening | extension | results
    kind: str = Field(max_length=16)
    # The scheduled action that created it, if any ("<consultation id>:<key>").
    action: str | None = Field(default=None, max_length=96)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    # Quiet hours ("21:00-09:00") and time zone during which the sender holds it.
    quiet_hours: str | None = Field(default=None, max_length=16)
    timezone: str | None = Field(default=None, max_length=64)
    # sending | done | cancelled
    status: str = Field(default="sending", max_length=16)
    total: int = 0
    created_by: int | None = Field(default=None, foreign_key="citizen.id")
    created_at: datetime
    finished_at: datetime | None = None


class BroadcastFile(SQLModel, table=True):
    """A file attached to a broadcast (the results' chart, CSV and JSON)."""

    __tablename__ = "broadcast_file"
    __table_args__ = (UniqueConstraint("broadcast_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    broadcast_id: int = Field(foreign_key="broadcast.id")
    name: str = Field(max_length=128)
    mime_type: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class BroadcastDelivery(SQLModel, table=True):
    """One recipient of a broadcast. ``status``: pending → sending (written before the send)
    → sent | failed | skipped. A message may have several parts (text, chart, files):
    ``parts_sent`` counts those already sent."""

    __tablename__ = "broadcast_delivery"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "platform", "chat_id"),
        Index("ix_broadcast_delivery_platform_status", "platform", "status", "id"),
        Index("ix_broadcast_delivery_citizen", "citizen_id"),
    )
    id: int | None = Field(default=None, sa_column=_bigint_pk())
    broadcast_id: int = Field(foreign_key="broadcast.id")
    platform: str = Field(max_length=16)
    chat_id: str = Field(max_length=255)
    citizen_id: int | None = Field(default=None, foreign_key="citizen.id")
    locale: str = Field(max_length=8)
    # citizen | channel (a group or room, or a moderator: gets the files)
    audience: str = Field(default="citizen", max_length=16)
    group_chat: bool = False
    # Personal parameters (reminders): rendered in the recipient's language when sent.
    params: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: str = Field(default="pending", max_length=16)
    parts_sent: int = 0
    attempts: int = 0
    error: str | None = Field(default=None, max_length=255)
    updated_at: datetime
