"""Flood windows: per-citizen counters in fixed windows, incremented by one atomic upsert, so
quotas hold with concurrent senders and several workers (bot.flood decides what they mean)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from storage.db import Database
from storage.models import Comment
from storage.models_moderation import FloodWindow
from storage.prepared import Prepared

# What a per-hour quota counts, by name: the table of what it publishes.
_PUBLISHED = {"comment": Comment}


class FloodRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    def bump(
        self, citizen_id: int, kind: str, start: datetime, by: int, now: datetime
    ) -> tuple[int, int]:
        """Atomically add ``by`` to a window's count (creating it); returns (row id, count)."""
        row = _bump_statement(self.db.is_sqlite).first(
            self.s,
            {
                "citizen_id": citizen_id,
                "kind": kind,
                "window_start": start,
                "count": by,
                "warned": False,
                "by": by,
            },
        )
        assert row is not None  # an upsert returns its row
        row_id, count = row
        if count == by:
            # A new window: forget this citizen's old ones.
            self.s.execute(
                delete(FloodWindow).where(
                    col(FloodWindow.citizen_id) == citizen_id,
                    col(FloodWindow.window_start) < now - timedelta(hours=2),
                )
            )
        return row_id, count

    def first_warning(self, row_id: int) -> bool:
        """True for exactly one caller per window."""
        result = self.s.execute(
            update(FloodWindow)
            .where(col(FloodWindow.id) == row_id, col(FloodWindow.warned).is_(False))
            .values(warned=True)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def published_since(self, quota: str, citizen_id: int, since: datetime) -> int:
        model = _PUBLISHED[quota]
        return int(
            self.s.execute(
                select(func.count())
                .select_from(model)
                .where(col(model.citizen_id) == citizen_id, col(model.created_at) > since)
            ).scalar_one()
        )


@cache
def _bump_statement(sqlite: bool) -> Prepared:
    """The window upsert, built once per dialect (it runs on every event)."""
    table = FloodWindow.__table__  # type: ignore[attr-defined]
    insert = sqlite_insert if sqlite else pg_insert
    return Prepared(
        insert(table)
        .on_conflict_do_update(
            index_elements=["citizen_id", "kind", "window_start"],
            set_={"count": table.c.count + bindparam("by")},
        )
        .returning(table.c.id, table.c.count),
        columns=("citizen_id", "kind", "window_start", "count", "warned"),
    )
