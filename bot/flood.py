"""Flood control: per-citizen quotas kept in the database, so that they hold with concurrent
senders and several workers.

- Actions: every event a citizen sends (in groups, only commands and button presses) counts in
  a fixed one-minute window (``flood_window`` rows, incremented by one atomic upsert).
- Comments: counted in the ``comment`` table over the last hour (routes declare the quota).
  Contributions answer the consultation's own questions and are never throttled.
- Citizens who arrived less than ``flood_newcomer_minutes`` ago have stricter quotas.
- Over a quota, the event is ignored; the citizen is warned once per window (the ``warned``
  flag is set by one conditional update, so concurrent events warn once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col

from bot.settings import Settings
from storage.models import Citizen, Comment
from storage.models_moderation import FloodWindow
from storage.prepared import Prepared
from storage.repositories import Repos

ACTIONS = "actions"
# Per-hour quotas a route may declare, by name: the table of what it publishes.
_QUOTAS = {"comment": Comment}


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    warn: bool = False
    limit: int = 0


class FloodService:
    def __init__(self, repos: Repos, now: datetime, settings: Settings) -> None:
        self.repos, self.now, self.settings = repos, now, settings
        self.s = repos.session

    def newcomer(self, citizen: Citizen) -> bool:
        return self.now - citizen.created_at < timedelta(
            minutes=self.settings.flood_newcomer_minutes
        )

    def action_limit(self, citizen: Citizen) -> int:
        s = self.settings
        return (
            s.flood_newcomer_actions_per_minute
            if self.newcomer(citizen)
            else s.flood_actions_per_minute
        )

    def comment_limit(self, citizen: Citizen) -> int:
        s = self.settings
        return (
            s.flood_newcomer_comments_per_hour
            if self.newcomer(citizen)
            else s.flood_comments_per_hour
        )

    def _bump(self, citizen_id: int, kind: str, start: datetime, by: int) -> tuple[int, int]:
        """Atomically add ``by`` to a window's count (creating it); returns (row id, count)."""
        stmt = _bump_statement(self.repos.db.is_sqlite)
        row = stmt.first(
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
                    col(FloodWindow.window_start) < self.now - timedelta(hours=2),
                )
            )
        return row_id, count

    def _first_warning(self, row_id: int) -> bool:
        """True for exactly one caller per window."""
        result = self.s.execute(
            update(FloodWindow)
            .where(col(FloodWindow.id) == row_id, col(FloodWindow.warned).is_(False))
            .values(warned=True)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def count_action(self, citizen: Citizen) -> Verdict:
        assert citizen.id is not None
        start = self.now.replace(second=0, microsecond=0)
        row_id, count = self._bump(citizen.id, ACTIONS, start, 1)
        limit = self.action_limit(citizen)
        if count <= limit:
            return Verdict(True, limit=limit)
        return Verdict(False, self._first_warning(row_id), limit)

    def check_quota(self, citizen: Citizen, quota: str) -> Verdict:
        """May this citizen publish one more text of this kind now? (``comment``: comments.
        Contributions answer the consultation's own questions, one per question: never
        throttled.)"""
        assert citizen.id is not None
        model = _QUOTAS[quota]
        limit = self.comment_limit(citizen)
        recent = self.s.execute(
            select(func.count())
            .select_from(model)
            .where(
                col(model.citizen_id) == citizen.id,
                col(model.created_at) > self.now - timedelta(hours=1),
            )
        ).scalar_one()
        if recent < limit:
            return Verdict(True, limit=limit)
        start = self.now.replace(minute=0, second=0, microsecond=0)
        row_id, _count = self._bump(citizen.id, quota, start, 0)
        return Verdict(False, self._first_warning(row_id), limit)


_BUMP: dict[bool, Prepared] = {}


def _bump_statement(sqlite: bool) -> Prepared:
    """The window upsert, built once per dialect (it runs on every event)."""
    stmt = _BUMP.get(sqlite)
    if stmt is None:
        table = FloodWindow.__table__  # type: ignore[attr-defined]
        insert = sqlite_insert if sqlite else pg_insert
        stmt = _BUMP[sqlite] = Prepared(
            insert(table)
            .on_conflict_do_update(
                index_elements=["citizen_id", "kind", "window_start"],
                set_={"count": table.c.count + bindparam("by")},
            )
            .returning(table.c.id, table.c.count),
            columns=("citizen_id", "kind", "window_start", "count", "warned"),
        )
    return stmt
