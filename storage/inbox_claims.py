# ruff: noqa: S608  (SQL built from this module's constants only)
"""Taking inbox rows for processing when several workers share a PostgreSQL database.

Every worker processes the inbox. Two rules make that safe:

- **Once**: an event is taken by the statement that marks it done (``UPDATE … SET status =
  'done' … WHERE status = 'pending' RETURNING event``), in the transaction that applies its
  effect and stores its replies. A second worker's UPDATE finds it done (READ COMMITTED
  re-checks the row after the first commits) or, if the first rolls back, pending again.
- **In order within a chat**: the same statement takes a transaction-scoped advisory lock on
  the event's chat (``pg_try_advisory_xact_lock``, two-int key space: it cannot collide with
  the scheduler's or the pollers' one-bigint keys). A worker holding a chat's lock processes
  its events in id order; another worker skips that chat's events until the commit, and once
  it skipped a chat it skips the rest of that chat's events in its transaction (the lock may
  be free again a moment later, while the skipped event is still pending), so a later event
  of a chat is never applied, nor answered, before an earlier one.

SQLite has one writer process (``parlons run`` refuses a second): the statement is the same
without the lock. One statement per event instead of a locking SELECT plus an UPDATE.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, bindparam, text, update
from sqlmodel import Session, col

from storage.models import InboxEvent
from storage.prepared import Prepared

# classid of the chat locks (the other half of the key is a hash of platform and chat).
CHAT_LOCK_CLASS = 0x5043  # "PC"
CHAT_LOCK = (
    f"pg_try_advisory_xact_lock({CHAT_LOCK_CLASS}, "
    "hashtext(inboxevent.platform || ':' || (inboxevent.event -> 'context' ->> 'chat_id')))"
)

CHAT_KEY = "inboxevent.platform || ':' || (inboxevent.event -> 'context' ->> 'chat_id')"
_TAKE_PG = Prepared(
    text(
        f"""
WITH target AS MATERIALIZED (
    SELECT inboxevent.id, {CHAT_KEY} AS chat,
        pg_try_advisory_xact_lock({CHAT_LOCK_CLASS}, hashtext({CHAT_KEY})) AS got
    FROM inboxevent
    WHERE inboxevent.id = :inbox_id AND inboxevent.status = 'pending'
        AND {CHAT_KEY} <> ALL(CAST(:skipped AS text[]))
), taken AS (
    UPDATE inboxevent SET status = 'done', processed_at = :at
    WHERE inboxevent.id = (SELECT id FROM target WHERE got) AND inboxevent.status = 'pending'
    RETURNING inboxevent.event
)
SELECT (SELECT chat FROM target), (SELECT event FROM taken)
"""
    ).columns(chat=String, event=JSON)
)
_TAKE_SQLITE = Prepared(
    update(InboxEvent)
    .where(col(InboxEvent.id) == bindparam("inbox_id"), col(InboxEvent.status) == "pending")
    .values(status="done", processed_at=bindparam("at"))
    .returning(col(InboxEvent.event))
)


def take(
    session: Session, inbox_id: int, now: datetime, skipped: list[str]
) -> tuple[str | None, dict[str, Any] | None]:
    """Mark a pending event done and return (its chat key, its JSON). The JSON is None if the
    event is not pending, or (PostgreSQL) another worker is processing its chat, or its chat
    is in ``skipped``; then the chat key, if known, must be added to ``skipped`` by the caller
    so that no later event of that chat is taken in this transaction (the chat's order). The
    caller's transaction applies the event's effect: if it rolls back, the event is pending
    again."""
    if session.get_bind().dialect.name == "sqlite":
        value = _TAKE_SQLITE.scalar(session, {"inbox_id": inbox_id, "at": now})
        return None, _json(value)
    row = _TAKE_PG.first(session, {"inbox_id": inbox_id, "at": now, "skipped": skipped})
    if row is None:
        return None, None
    return row[0], _json(row[1])


def _json(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = json.loads(value)
    return value
