"""Official answers, merged duplicates and opinion groups (issue 15): all their SQL.

Merging moves the supports, disagreements and comments of one idea to another in a few
set-based statements; the statistics counters follow through their triggers (migration
0011_counters), so they stay equal to a recount.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session, col

from storage.db import Database
from storage.models import Contribution
from storage.models_answers import IdeaMerge, OfficialAnswer, OpinionGroups
from storage.repositories_scheduler import Recipient

PUBLISHED = "published"
MERGED = "merged"


@dataclass(frozen=True, slots=True)
class Moved:
    supports: int  # supports moved to the target (not counting those merged once)
    merged_once: int  # supports dropped because the citizen already supported the target
    comments: int


class AnswersRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    # ------------------------------------------------------------------ official answers

    def answer(self, contribution_id: int) -> OfficialAnswer | None:
        return self.s.get(OfficialAnswer, contribution_id)

    def set_answer(
        self, contribution_id: int, consultation_id: int, status: str, body: str, now: datetime
    ) -> OfficialAnswer:
        row = self.s.get(OfficialAnswer, contribution_id)
        if row is None:
            row = OfficialAnswer(
                contribution_id=contribution_id,
                consultation_id=consultation_id,
                status=status,
                text=body,
                created_at=now,
                updated_at=now,
            )
        else:
            row.status, row.text, row.updated_at = status, body, now
        self.s.add(row)
        self.s.flush()
        return row

    def answers(self, consultation_id: int) -> list[OfficialAnswer]:
        return list(
            self.s.execute(
                select(OfficialAnswer)
                .where(col(OfficialAnswer.consultation_id) == consultation_id)
                .order_by(col(OfficialAnswer.contribution_id))
            ).scalars()
        )

    def supporters_with_news(self, contribution_id: int, consultation_id: int) -> list[Recipient]:
        """The idea's supporters who accept the consultation's news and can be reached in
        private (never its author)."""
        rows = self.s.execute(
            text(
                "SELECT z.id, p.platform, p.chat_id, COALESCE(z.locale, p.locale) "
                "FROM support s "
                "JOIN contribution c ON c.id = s.contribution_id "
                "JOIN citizen z ON z.id = s.citizen_id "
                "JOIN subscription n ON n.citizen_id = z.id AND n.consultation_id = :cons "
                "JOIN private_chat p ON p.citizen_id = z.id "
                "WHERE s.contribution_id = :cid AND n.news AND z.reachable "
                "AND z.platform_user_id IS NOT NULL AND z.id <> c.citizen_id "
                "ORDER BY z.id"
            ),
            {"cid": contribution_id, "cons": consultation_id},
        ).all()
        return [Recipient(r[1], r[2], r[0], r[3]) for r in rows]

    # ------------------------------------------------------------------ merging

    def lock_ideas(self, *ids: int) -> dict[int, Contribution]:
        """The ideas, locked in id order (PostgreSQL) so two crossed merges cannot both pass."""
        rows = self.s.execute(
            select(Contribution)
            .where(col(Contribution.id).in_(sorted(ids)))
            .order_by(col(Contribution.id))
            .with_for_update()
            # Rows read before the lock was granted are read again (a crossed merge may have
            # changed them meanwhile).
            .execution_options(populate_existing=True)
        ).scalars()
        return {r.id: r for r in rows if r.id is not None}

    def merge(self, source: Contribution, target: Contribution, now: datetime) -> Moved:
        """Mark ``source`` merged into ``target`` and move its supports, disagreements and
        comments there. A citizen keeps one opinion on the target: their support or
        disagreement of the target wins over the source's; its author's own opinions on the
        source are dropped (nobody supports their own idea)."""
        assert source.id is not None and target.id is not None
        p = {"src": source.id, "dst": target.id, "author": target.citizen_id}
        source.status, source.updated_at = MERGED, now
        self.s.add(source)
        self.s.flush()
        # Supports: once per citizen.
        dropped = self.s.execute(
            text(
                "DELETE FROM support WHERE contribution_id = :src AND (citizen_id = :author "
                "OR citizen_id IN (SELECT citizen_id FROM support WHERE contribution_id = :dst) "
                "OR citizen_id IN "
                "(SELECT citizen_id FROM disagreement WHERE contribution_id = :dst))"
            ),
            p,
        ).rowcount  # type: ignore[attr-defined]
        moved = self.s.execute(
            text("UPDATE support SET contribution_id = :dst WHERE contribution_id = :src"), p
        ).rowcount  # type: ignore[attr-defined]
        self.s.execute(
            text(
                "DELETE FROM disagreement WHERE contribution_id = :src AND (citizen_id = :author "
                "OR citizen_id IN (SELECT citizen_id FROM support WHERE contribution_id = :dst) "
                "OR citizen_id IN "
                "(SELECT citizen_id FROM disagreement WHERE contribution_id = :dst))"
            ),
            p,
        )
        self.s.execute(
            text("UPDATE disagreement SET contribution_id = :dst WHERE contribution_id = :src"), p
        )
        comments = self.s.execute(
            text("UPDATE comment SET contribution_id = :dst WHERE contribution_id = :src"), p
        ).rowcount  # type: ignore[attr-defined]
        self.s.add(
            IdeaMerge(
                contribution_id=source.id,
                into_id=target.id,
                consultation_id=source.consultation_id,
                created_at=now,
            )
        )
        self.s.flush()
        return Moved(int(moved or 0), int(dropped or 0), int(comments or 0))

    def merged_into(self, contribution_id: int) -> int | None:
        row = self.s.get(IdeaMerge, contribution_id)
        return row.into_id if row is not None else None

    def merges(self, consultation_id: int) -> list[tuple[int, int]]:
        """(merged idea, target) pairs of a consultation."""
        rows = self.s.execute(
            select(col(IdeaMerge.contribution_id), col(IdeaMerge.into_id))
            .where(col(IdeaMerge.consultation_id) == consultation_id)
            .order_by(col(IdeaMerge.contribution_id))
        ).all()
        return [(int(a), int(b)) for a, b in rows]

    # ------------------------------------------------------------------ opinion groups

    def votes(self, consultation_id: int) -> list[tuple[int, int, int]]:
        """Every vote on the consultation's published ideas: (citizen, idea, +1 support or −1
        disagreement)."""
        rows = self.s.execute(
            text(
                "SELECT s.citizen_id, s.contribution_id, 1 FROM support s "
                "JOIN contribution c ON c.id = s.contribution_id "
                "WHERE c.consultation_id = :cons AND c.status = 'published' "
                "UNION ALL "
                "SELECT d.citizen_id, d.contribution_id, -1 FROM disagreement d "
                "JOIN contribution c ON c.id = d.contribution_id "
                "WHERE c.consultation_id = :cons AND c.status = 'published'"
            ),
            {"cons": consultation_id},
        ).all()
        return [(int(a), int(b), int(v)) for a, b, v in rows]

    def fingerprint(self, consultation_id: int, *salt: object) -> str:
        """A digest of the votes (counts and id sums of supports, disagreements and published
        ideas): it changes when a vote or an idea's status changes."""
        row = self.s.execute(
            text(
                "SELECT "
                "(SELECT count(*) FROM contribution c WHERE c.consultation_id = :cons "
                " AND c.status = 'published'), "
                "(SELECT COALESCE(sum(c.id), 0) FROM contribution c "
                " WHERE c.consultation_id = :cons AND c.status = 'published'), "
                "(SELECT count(*) FROM support s JOIN contribution c ON c.id = s.contribution_id"
                " WHERE c.consultation_id = :cons AND c.status = 'published'), "
                "(SELECT COALESCE(sum(s.id), 0) FROM support s "
                " JOIN contribution c ON c.id = s.contribution_id"
                " WHERE c.consultation_id = :cons AND c.status = 'published'), "
                "(SELECT count(*) FROM disagreement d "
                " JOIN contribution c ON c.id = d.contribution_id"
                " WHERE c.consultation_id = :cons AND c.status = 'published'), "
                "(SELECT COALESCE(sum(d.id), 0) FROM disagreement d "
                " JOIN contribution c ON c.id = d.contribution_id"
                " WHERE c.consultation_id = :cons AND c.status = 'published')"
            ),
            {"cons": consultation_id},
        ).one()
        parts = [str(int(x)) for x in row] + [str(x) for x in salt]
        return hashlib.sha256(":".join(parts).encode()).hexdigest()

    def cached_groups(self, consultation_id: int) -> OpinionGroups | None:
        return self.s.get(OpinionGroups, consultation_id)

    def request_groups(self, consultation_id: int, fingerprint: str, now: datetime) -> None:
        """Ask the worker to compute the groups for these votes (idempotent)."""
        row = self.s.get(OpinionGroups, consultation_id)
        if row is None:
            row = OpinionGroups(
                consultation_id=consultation_id,
                fingerprint=fingerprint,
                status="computing",
                requested_at=now,
            )
        elif row.fingerprint == fingerprint and row.status == "computing":
            return
        else:
            row.fingerprint, row.status, row.requested_at = fingerprint, "computing", now
        self.s.add(row)
        self.s.flush()

    def requested_groups(self) -> list[int]:
        return list(
            self.s.execute(
                select(col(OpinionGroups.consultation_id))
                .where(col(OpinionGroups.status) == "computing")
                .order_by(col(OpinionGroups.requested_at))
            ).scalars()
        )

    def store_groups(
        self, consultation_id: int, fingerprint: str, result: dict[str, Any], now: datetime
    ) -> None:
        row = self.s.get(OpinionGroups, consultation_id)
        if row is None:
            row = OpinionGroups(
                consultation_id=consultation_id,
                fingerprint=fingerprint,
                status="done",
                requested_at=now,
            )
        row.fingerprint, row.status, row.result, row.computed_at = fingerprint, "done", result, now
        self.s.add(row)
        self.s.flush()
