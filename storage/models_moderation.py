"""Tables of moderation and citizens' rights: moderators per consultation, the moderators'
chats, the audit log, reports, bans, privacy consents, erasures and flood-control windows.

Integrity lives in constraints: one moderator row per (consultation, platform id), one report
per (target, citizen) so reporting twice counts once, one ban per (consultation, person), one
consent per (citizen, notice version), one flood window per (citizen, kind, start).

People are referred to by immutable platform ids (moderators) or by citizen rows; where a
person must survive their own erasure (a ban, an audit entry about them, the erasure log) a
one-way id is kept instead: HMAC-SHA256 of ``platform:user_id`` with the privacy secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel


def _json() -> Any:
    return Column(JSON, nullable=False)


def _bigint_pk() -> Any:
    return Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)


class Moderator(SQLModel, table=True):
    """A moderator of one consultation, by immutable platform id (never a display name)."""

    __tablename__ = "moderator"
    __table_args__ = (
        UniqueConstraint("consultation_id", "platform", "platform_user_id"),
        Index("ix_moderator_platform_user", "platform", "platform_user_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id")
    platform: str = Field(max_length=16)
    platform_user_id: str = Field(max_length=255)
    granted_by: int | None = Field(default=None, foreign_key="citizen.id")
    created_at: datetime


class ModeratorChat(SQLModel, table=True):
    """A chat or room where a consultation's moderation queue is posted (``/modchat``)."""

    __tablename__ = "moderator_chat"
    __table_args__ = (
        UniqueConstraint("consultation_id", "platform", "chat_id"),
        Index("ix_moderator_chat_platform_chat", "platform", "chat_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id")
    platform: str = Field(max_length=16)
    chat_id: str = Field(max_length=255)
    registered_by: int | None = Field(default=None, foreign_key="citizen.id")
    created_at: datetime


class AuditEntry(SQLModel, table=True):
    """Who did what, on what, when and why: every administrator and moderator action (and the
    system's automatic ones, e.g. hiding after N reports)."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_consultation_id", "consultation_id", "id"),)
    id: int | None = Field(default=None, sa_column=_bigint_pk())
    consultation_id: int | None = Field(default=None, foreign_key="consultation.id")
    # The citizen row of the administrator or moderator; NULL for the system.
    actor_id: int | None = Field(default=None, foreign_key="citizen.id")
    # admin | moderator | system
    actor_role: str = Field(max_length=16)
    # e.g. moderator.add, hide, restore, approve, ban, unban, import, open, close, extend,
    # settings, export, modchat.add
    action: str = Field(max_length=32)
    # What it was done on: "contribution:12", "comment:3", "consultation:slug", a platform id
    # for moderator grants, "citizen:<pseudonym>" for bans.
    target: str = Field(max_length=300)
    # One-way id of the person the target names, if any (scrubbed when they are erased).
    target_key: str | None = Field(default=None, max_length=64, index=True)
    reason: str | None = Field(default=None, max_length=500)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    created_at: datetime


class Report(SQLModel, table=True):
    """A citizen reported a contribution or a comment. One per (target, citizen)."""

    __tablename__ = "report"
    __table_args__ = (
        UniqueConstraint("target_type", "target_id", "citizen_id"),
        Index("ix_report_consultation_open", "consultation_id", "resolved_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id")
    # contribution | comment
    target_type: str = Field(max_length=16)
    target_id: int
    citizen_id: int = Field(foreign_key="citizen.id", index=True)
    # spam | offensive | offtopic | personal | other
    reason: str = Field(max_length=16)
    created_at: datetime
    # Set when a moderator decides on the target (approve, hide, restore).
    resolved_at: datetime | None = None


class Ban(SQLModel, table=True):
    """A person may not take part in one consultation. Keyed by a one-way id of their
    platform id so that a ban outlives their erasure (and their coming back)."""

    __tablename__ = "ban"
    __table_args__ = (UniqueConstraint("consultation_id", "subject_key"),)
    id: int | None = Field(default=None, primary_key=True)
    consultation_id: int = Field(foreign_key="consultation.id")
    citizen_id: int = Field(foreign_key="citizen.id", index=True)
    subject_key: str = Field(max_length=64)
    reason: str = Field(max_length=500)
    banned_by: int | None = Field(default=None, foreign_key="citizen.id")
    # What the ban hid ({"contribution": [ids], "comment": [ids]}), restored when it is lifted.
    hidden: dict[str, Any] = Field(default_factory=dict, sa_column=_json())
    created_at: datetime


class PrivacyConsent(SQLModel, table=True):
    """A citizen accepted a version of the privacy notice."""

    __tablename__ = "privacy_consent"
    __table_args__ = (UniqueConstraint("citizen_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    citizen_id: int = Field(foreign_key="citizen.id")
    version: str = Field(max_length=16)
    accepted_at: datetime


class Erasure(SQLModel, table=True):
    """The erasure log, by one-way id only (also appended to a file outside the database, so
    that ``parlons privacy reapply`` can re-apply erasures after a restore from a backup)."""

    __tablename__ = "erasure"
    id: int | None = Field(default=None, primary_key=True)
    subject_key: str = Field(max_length=64, unique=True)
    erased_at: datetime
    # What the /forget event itself could not remove while it was being handled, purged by the
    # next sweep: {"inbox_id": the event's inbox row, whose reply is deleted once delivered,
    # "dialogue_ids": [the dialogue row in use]}. NULL when nothing is left.
    residue: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    residue_pending: bool = Field(default=False, index=True)


class FloodWindow(SQLModel, table=True):
    """How many events a citizen sent in one fixed window, and whether they were warned."""

    __tablename__ = "flood_window"
    __table_args__ = (UniqueConstraint("citizen_id", "kind", "window_start"),)
    id: int | None = Field(default=None, sa_column=_bigint_pk())
    citizen_id: int = Field(foreign_key="citizen.id")
    # actions (per minute) | contributions (per hour)
    kind: str = Field(max_length=16)
    window_start: datetime
    count: int = 0
    warned: bool = False
