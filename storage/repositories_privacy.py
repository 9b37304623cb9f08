"""Citizens' rights (bot.privacy): every SQL statement of the privacy notice, "download my
data", erasure, sweep, reapply, expiry and retention pruning.

bot.privacy keeps the rules (what is erased, what is kept, the order of the steps, the batch
sizes, what a redacted row looks like); this repository runs the statements. Searches for text
take LIKE patterns already escaped with ``!`` (``ESCAPE '!'``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlmodel import Session, SQLModel, col

from storage.db import Database
from storage.models import (
    Citizen,
    Comment,
    Contribution,
    Dialogue,
    InboxEvent,
    OutboxMessage,
    Support,
    Visit,
)
from storage.models_moderation import (
    AuditEntry,
    Ban,
    Erasure,
    Moderator,
    PrivacyConsent,
    Report,
)
from storage.prepared import Prepared

# Read on every participation step of a citizen not yet known (this process) to have accepted.
_ACCEPTED_AT = Prepared(
    select(col(PrivacyConsent.accepted_at)).where(
        col(PrivacyConsent.citizen_id) == bindparam("citizen"),
        col(PrivacyConsent.version) == bindparam("version"),
    )
)

# The rows of one citizen that "download my data" lists by name, each ordered by id.
_OWNED = {
    "privacy_consents": PrivacyConsent,
    "contributions": Contribution,
    "supports": Support,
    "comments": Comment,
    "reports": Report,
    "visits": Visit,
    "bans": Ban,
}

# One inbox row to redact: (id, platform, event_key, status, user_id).
InboxRow = tuple[int, str, str, str, str | None]


def _table(name: str) -> Table | None:
    return SQLModel.metadata.tables.get(name)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


class PrivacyRepo:
    """The privacy statements, bound to one unit of work."""

    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    # ------------------------------------------------------------------ notice

    def accept(self, citizen_id: int | None, version: str, now: datetime) -> bool:
        """Record an acceptance; False if this citizen had already accepted this version."""
        return (
            self.db.insert_ignore(
                self.s, PrivacyConsent, citizen_id=citizen_id, version=version, accepted_at=now
            )
            is not None
        )

    def consent_of(self, citizen_id: int | None, version: str) -> datetime | None:
        accepted: datetime | None = _ACCEPTED_AT.scalar(
            self.s, {"citizen": citizen_id, "version": version}
        )
        return accepted

    # ------------------------------------------------------------------ my data

    def owned(self, kind: str, citizen_id: int | None) -> list[Any]:
        """The rows of one kind (a key of ``_OWNED``: "contributions", "supports"...) that
        belong to a citizen, by id."""
        model: Any = _OWNED[kind]
        return self._rows(model, model.citizen_id == citizen_id)

    def dialogues_of(self, platform: str, user_id: str) -> list[Dialogue]:
        return self._rows(Dialogue, Dialogue.platform == platform, Dialogue.user_id == user_id)

    def moderator_roles_of(self, platform: str, user_id: str) -> list[Moderator]:
        return self._rows(
            Moderator, Moderator.platform == platform, Moderator.platform_user_id == user_id
        )

    def _rows(self, model: Any, *where: Any) -> list[Any]:
        return list(self.s.execute(select(model).where(*where).order_by(model.id)).scalars())

    def other_rows_of(
        self, citizen_id: int | None, skip: Collection[str]
    ) -> Iterable[tuple[str, Sequence[Mapping[str, Any]]]]:
        """(table name, rows as mappings) for every other table with a ``citizen_id`` column
        (tables in dependency order; those named in ``skip`` are left out)."""
        for table in SQLModel.metadata.sorted_tables:
            if table.name in skip or "citizen_id" not in table.c:
                continue
            found = self.s.execute(select(table).where(table.c.citizen_id == citizen_id))
            yield table.name, [dict(m) for m in found.mappings()]

    # ------------------------------------------------------------------ erasure: finding

    def private_chat_ids(self, citizen_id: int | None) -> list[str]:
        """The chats recorded as the citizen's private chat (private_chat rows), if any."""
        private_chat = _table("private_chat")
        if private_chat is None or "chat_id" not in private_chat.c:
            return []
        return list(
            self.s.execute(
                select(private_chat.c.chat_id).where(private_chat.c.citizen_id == citizen_id)
            ).scalars()
        )

    def inbox_chats_of(self, platform: str, user_id: str | None, chat_type: str) -> list[str]:
        """The distinct chats of one type in which this person sent events."""
        return list(
            self.s.execute(
                select(col(InboxEvent.chat_id))
                .where(
                    col(InboxEvent.platform) == platform,
                    col(InboxEvent.user_id) == user_id,
                    col(InboxEvent.chat_type) == chat_type,
                )
                .distinct()
            ).scalars()
        )

    # ------------------------------------------------------------------ erasure: inbox

    def inbox_of(
        self, platform: str, user_id: str, chats: Iterable[str], *, skip_kind: str, limit: int
    ) -> list[InboxRow]:
        """One batch of the inbox rows a person sent or that are in their chats (indexed sender
        and chat columns), not of kind ``skip_kind``, by id."""
        mine = (col(InboxEvent.platform) == platform) & or_(
            col(InboxEvent.user_id) == user_id, col(InboxEvent.chat_id).in_(sorted(chats))
        )
        return self._inbox_batch(mine, skip_kind, limit)

    def commands_naming(
        self, patterns: Sequence[str], *, skip_kind: str, limit: int
    ) -> list[InboxRow]:
        """One batch of the handled command events whose event contains one of ``patterns``,
        not of kind ``skip_kind``, by id."""
        event_text = cast(col(InboxEvent.event), Text)
        where = (
            (col(InboxEvent.kind) == "command")
            & (col(InboxEvent.status) != "pending")
            & or_(*(event_text.like(f"%{n}%", escape="!") for n in patterns))
        )
        return self._inbox_batch(where, skip_kind, limit)

    def _inbox_batch(
        self, where: ColumnElement[bool], skip_kind: str, limit: int
    ) -> list[InboxRow]:
        return [
            (row[0], row[1], row[2], row[3], row[4])
            for row in self.s.execute(
                select(
                    col(InboxEvent.id),
                    col(InboxEvent.platform),
                    col(InboxEvent.event_key),
                    col(InboxEvent.status),
                    col(InboxEvent.user_id),
                )
                .where(
                    where,
                    or_(col(InboxEvent.kind).is_(None), col(InboxEvent.kind) != skip_kind),
                )
                .order_by(col(InboxEvent.id))
                .limit(limit)
            )
        ]

    def set_inbox(self, inbox_id: int, values: Mapping[str, Any]) -> None:
        self.s.execute(update(InboxEvent).where(col(InboxEvent.id) == inbox_id).values(values))

    def clear_errors_naming(self, patterns: Sequence[str]) -> None:
        """Failed events keep their failure but lose an error text naming someone."""
        self.s.execute(
            update(InboxEvent)
            .where(
                col(InboxEvent.status) == "failed",
                or_(*(col(InboxEvent.error).like(f"%{n}%", escape="!") for n in patterns)),
            )
            .values(error=None)
        )

    def inbox_row(self, inbox_id: int) -> InboxEvent | None:
        return self.s.get(InboxEvent, inbox_id)

    # ------------------------------------------------------------------ erasure: outbox

    def outbox_ids_to(self, platform: str, chats: Iterable[str], limit: int) -> list[int]:
        """One batch of the outbox rows addressed to these chats (indexed chat column)."""
        return list(
            self.s.execute(
                select(col(OutboxMessage.id))
                .where(
                    col(OutboxMessage.platform) == platform,
                    col(OutboxMessage.chat_id).in_(sorted(chats)),
                )
                .limit(limit)
            ).scalars()
        )

    def delete_outbox(self, ids: Sequence[int]) -> None:
        self.s.execute(delete(OutboxMessage).where(col(OutboxMessage.id).in_(ids)))

    def outbox_naming(self, patterns: Sequence[str]) -> list[tuple[int, dict[str, Any]]]:
        """(id, message) of the outbox rows no longer pending, not emptied by retention, whose
        message contains one of ``patterns``."""
        named = or_(
            *(cast(col(OutboxMessage.message), Text).like(f"%{n}%", escape="!") for n in patterns)
        )
        return [
            (row[0], row[1])
            for row in self.s.execute(
                select(col(OutboxMessage.id), col(OutboxMessage.message)).where(
                    col(OutboxMessage.status) != "pending",
                    col(OutboxMessage.trimmed_at).is_(None),  # an emptied row names nobody
                    named,
                )
            ).all()
        ]

    def set_outbox(self, out_id: int, **values: Any) -> None:
        self.s.execute(
            update(OutboxMessage).where(col(OutboxMessage.id) == out_id).values(**values)
        )

    # ------------------------------------------------------------------ erasure: the rest

    def delete_dialogues_of(
        self, platform: str, user_id: str, chats: Collection[str], *, keep_id: int | None
    ) -> int:
        """Delete a person's dialogue rows (as sender or in their chats) but ``keep_id``."""
        return _rowcount(
            self.s.execute(
                delete(Dialogue).where(
                    col(Dialogue.platform) == platform,
                    or_(col(Dialogue.user_id) == user_id, col(Dialogue.chat_id).in_(chats)),
                    col(Dialogue.id) != (keep_id if keep_id is not None else -1),
                )
            )
        )

    def delete_rows_for(
        self, citizen_id: int | None, platform: str, chats: Iterable[str], skip: Collection[str]
    ) -> int:
        """Delete, in every table but those named in ``skip`` (dependents first), the rows with
        this ``citizen_id`` and those addressed to these chats (``platform`` and ``chat_id``
        columns). Returns how many rows were deleted."""
        deleted = 0
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name in skip:
                continue
            conditions = []
            if "citizen_id" in table.c:
                conditions.append(table.c.citizen_id == citizen_id)
            if "platform" in table.c and "chat_id" in table.c:
                conditions.append(
                    (table.c.platform == platform) & table.c.chat_id.in_(sorted(chats))
                )
            if conditions:
                deleted += _rowcount(self.s.execute(delete(table).where(or_(*conditions))))
        return deleted

    def delete_moderator_roles(self, platform: str, user_id: str) -> int:
        return _rowcount(
            self.s.execute(
                delete(Moderator).where(
                    col(Moderator.platform) == platform,
                    col(Moderator.platform_user_id) == user_id,
                )
            )
        )

    def scrub_audit(self, key: str, pattern: str, pseudonym: str, replacement: str) -> None:
        """Audit entries about this person (by one-way id, by an escaped ``pattern`` or by
        pseudonym, unescaped) get ``replacement`` as their target."""
        self.s.execute(
            update(AuditEntry)
            .where(
                or_(
                    col(AuditEntry.target_key) == key,
                    col(AuditEntry.target).like(f"%{pattern}%", escape="!"),
                    col(AuditEntry.target).like(f"%{pseudonym}%"),
                )
            )
            .values(target=replacement)
        )

    def erasure(self, key: str) -> Erasure | None:
        return self.s.execute(select(Erasure).where(col(Erasure.subject_key) == key)).scalar()

    def save(self, row: SQLModel) -> None:
        self.s.add(row)

    def flush(self) -> None:
        self.s.flush()

    # ------------------------------------------------------------------ sweep, reapply

    def erasures_with_residue(self, limit: int) -> list[Erasure]:
        return list(
            self.s.execute(
                select(Erasure).where(col(Erasure.residue_pending).is_(True)).limit(limit)
            ).scalars()
        )

    def purge_replies(self, inbox_id: int) -> int:
        """Delete the replies to an event that are no longer pending; how many are left."""
        self.s.execute(
            delete(OutboxMessage).where(
                col(OutboxMessage.inbox_id) == inbox_id,
                col(OutboxMessage.status) != "pending",
            )
        )
        left: int = self.s.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(col(OutboxMessage.inbox_id) == inbox_id)
        ).scalar_one()
        return left

    def delete_dialogues(self, ids: Sequence[int]) -> None:
        self.s.execute(delete(Dialogue).where(col(Dialogue.id).in_(ids)))

    def identified_citizens(self) -> list[Citizen]:
        """Every citizen not erased (with a platform id)."""
        return list(
            self.s.execute(
                select(Citizen).where(col(Citizen.platform_user_id).is_not(None))
            ).scalars()
        )

    def erasure_keys(self) -> set[str]:
        return set(self.s.execute(select(col(Erasure.subject_key))).scalars())

    # ------------------------------------------------------------------ expiry, retention

    def silent_since(self, since: datetime, limit: int | None) -> list[Citizen]:
        """Citizens not erased who were last seen before ``since``, oldest first (at most
        ``limit`` when given)."""
        stmt = (
            select(Citizen)
            .where(col(Citizen.platform_user_id).is_not(None), col(Citizen.last_seen_at) < since)
            .order_by(col(Citizen.last_seen_at), col(Citizen.id))
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(self.s.execute(stmt).scalars())

    def old_inbox_ids(
        self, before: datetime, statuses: Sequence[str], keep_kind: str, limit: int
    ) -> list[int]:
        """Inbox rows processed before ``before`` with one of ``statuses``, not of kind
        ``keep_kind``, oldest first."""
        return list(
            self.s.execute(
                select(col(InboxEvent.id))
                .where(
                    col(InboxEvent.processed_at) < before,
                    col(InboxEvent.status).in_(statuses),
                    or_(col(InboxEvent.kind).is_(None), col(InboxEvent.kind) != keep_kind),
                )
                .order_by(col(InboxEvent.processed_at))
                .limit(limit)
            ).scalars()
        )

    def delete_inbox(self, ids: Sequence[int]) -> None:
        self.s.execute(delete(InboxEvent).where(col(InboxEvent.id).in_(ids)))

    def old_outbox_ids(self, before: datetime, statuses: Sequence[str], limit: int) -> list[int]:
        """Outbox rows with no subject created before ``before`` with one of ``statuses``,
        oldest first."""
        return list(
            self.s.execute(
                select(col(OutboxMessage.id))
                .where(
                    col(OutboxMessage.created_at) < before,
                    col(OutboxMessage.status).in_(statuses),
                    col(OutboxMessage.subject).is_(None),
                )
                .order_by(col(OutboxMessage.created_at))
                .limit(limit)
            ).scalars()
        )

    def old_outbox_with_subject(
        self, before: datetime, statuses: Sequence[str], limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """(id, message) of the outbox rows with a subject, not emptied yet, created before
        ``before`` with one of ``statuses``, oldest first."""
        return [
            (row[0], row[1])
            for row in self.s.execute(
                select(col(OutboxMessage.id), col(OutboxMessage.message))
                .where(
                    col(OutboxMessage.created_at) < before,
                    col(OutboxMessage.status).in_(statuses),
                    col(OutboxMessage.subject).is_not(None),
                    col(OutboxMessage.trimmed_at).is_(None),
                )
                .order_by(col(OutboxMessage.created_at))
                .limit(limit)
            )
        ]
