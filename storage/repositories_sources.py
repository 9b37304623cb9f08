"""Deep-link sources (``/start <slug>-<source>``, a poster's QR code say): each citizen's first
visit records where they came from; these figures break the statistics down by that source.

A citizen counts under the source of their first visit to the consultation; citizens who came
without a source, or took part without a recorded visit, count under ``None`` (direct)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, select, union
from sqlmodel import Session, col

from storage.models import Comment, Contribution, Support, Visit

PUBLISHED = "published"


@dataclass(frozen=True, slots=True)
class SourceFigures:
    source: str | None  # None: direct (no source in the link, or no recorded visit)
    visitors: int
    participants: int
    contributions: int


def by_source(session: Session, consultation_id: int) -> list[SourceFigures]:
    """Visitors, participants and published contributions per source: the most visitors
    first, direct last. Participants and contributions follow the statistics' definitions
    (published contributions; supports and published comments on them)."""
    published = and_(
        col(Contribution.consultation_id) == consultation_id,
        col(Contribution.status) == PUBLISHED,
    )
    visit_source = (
        select(col(Visit.source))
        .where(col(Visit.consultation_id) == consultation_id)
        .where(col(Visit.citizen_id) == col(Contribution.citizen_id))
        .correlate(Contribution)
        .scalar_subquery()
    )
    contributions: dict[str | None, int] = dict(
        session.execute(
            select(visit_source.label("source"), func.count()).where(published).group_by("source")
        ).all()
    )
    people = union(
        select(col(Contribution.citizen_id).label("citizen_id")).where(published),
        select(col(Support.citizen_id).label("citizen_id"))
        .join(Contribution, col(Contribution.id) == Support.contribution_id)
        .where(published),
        select(col(Comment.citizen_id).label("citizen_id"))
        .join(Contribution, col(Contribution.id) == Comment.contribution_id)
        .where(published, col(Comment.status) == PUBLISHED),
    ).subquery()
    participants: dict[str | None, int] = dict(
        session.execute(
            select(col(Visit.source), func.count())
            .select_from(people)
            .outerjoin(
                Visit,
                and_(
                    col(Visit.citizen_id) == people.c.citizen_id,
                    col(Visit.consultation_id) == consultation_id,
                ),
            )
            .group_by(col(Visit.source))
        ).all()
    )
    visitors: dict[str | None, int] = dict(
        session.execute(
            select(col(Visit.source), func.count())
            .where(col(Visit.consultation_id) == consultation_id)
            .group_by(col(Visit.source))
        ).all()
    )
    names = set(visitors) | set(participants) | set(contributions)
    rows = [
        SourceFigures(
            name,
            int(visitors.get(name, 0)),
            int(participants.get(name, 0)),
            int(contributions.get(name, 0)),
        )
        for name in names
    ]
    return sorted(rows, key=lambda r: (r.source is None, -r.visitors, r.source or ""))
