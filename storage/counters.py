"""Reading and folding the statistics counters kept by triggers (see storage/models_counters.py
and migration 0011_counters)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, select, text, union_all
from sqlmodel import Session, col

from storage.models_counters import StatCounter, StatDelta
from storage.prepared import Prepared

FIELDS = ("participants", "contributions", "supports", "visitors", "comments")


def _sums() -> Any:
    parts = union_all(
        select(*(getattr(StatCounter, f) for f in FIELDS)).where(
            col(StatCounter.consultation_id) == bindparam("cid")
        ),
        select(*(getattr(StatDelta, f) for f in FIELDS)).where(
            col(StatDelta.consultation_id) == bindparam("cid")
        ),
    ).subquery()
    return select(*(func.coalesce(func.sum(parts.c[f]), 0) for f in FIELDS))


# One statement, so one snapshot: the totals and the deltas not folded yet add up exactly.
_READ = Prepared(_sums())

# PostgreSQL: move the deltas into the totals in one statement (concurrent folds each take
# the rows they deleted; inserts going on meanwhile are folded next time).
_FOLD_PG = text(
    """
WITH d AS (
    DELETE FROM stat_delta
    WHERE id IN (SELECT id FROM stat_delta ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING consultation_id, participants, contributions, supports, visitors, comments
), s AS (
    SELECT consultation_id, sum(participants) AS participants,
        sum(contributions) AS contributions, sum(supports) AS supports,
        sum(visitors) AS visitors, sum(comments) AS comments, count(*) AS n
    FROM d GROUP BY consultation_id
), up AS (
    INSERT INTO stat_counter AS t (consultation_id, participants, contributions, supports,
                                   visitors, comments)
    SELECT consultation_id, participants, contributions, supports, visitors, comments FROM s
    ON CONFLICT (consultation_id) DO UPDATE SET
        participants = t.participants + EXCLUDED.participants,
        contributions = t.contributions + EXCLUDED.contributions,
        supports = t.supports + EXCLUDED.supports,
        visitors = t.visitors + EXCLUDED.visitors,
        comments = t.comments + EXCLUDED.comments
    RETURNING 1
)
SELECT coalesce(sum(n), 0) FROM s
"""
)


def read(session: Session, consultation_id: int) -> tuple[int, int, int, int, int]:
    """(participants, contributions, supports, visitors, comments), exact."""
    row = _READ.first(session, {"cid": consultation_id})
    assert row is not None
    participants, contributions, supports, visitors, comments = (int(v) for v in row)
    return participants, contributions, supports, visitors, comments


def fold(session: Session, limit: int = 50_000) -> int:
    """Fold pending deltas into the totals (PostgreSQL; SQLite's triggers update the totals
    directly); returns how many delta rows were folded."""
    if session.get_bind().dialect.name == "sqlite":
        return 0
    return int(session.connection().execute(_FOLD_PG, {"limit": limit}).scalar_one())
