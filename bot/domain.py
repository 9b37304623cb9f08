"""Domain values: consultation phases, what each phase allows, and the statistics rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.consultation_file import ConsultationDocument, ConsultationSettings, LocalizedContent


class Phase(StrEnum):
    DRAFT = "draft"
    UPCOMING = "upcoming"
    OPEN = "open"
    CLOSED = "closed"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class Permissions:
    """What a phase allows. The scheduler only moves phases; handlers only ask this."""

    contribute: bool
    support: bool
    comment: bool
    results: bool


PERMISSIONS = {
    Phase.DRAFT: Permissions(False, False, False, False),
    Phase.UPCOMING: Permissions(False, False, False, False),
    Phase.OPEN: Permissions(True, True, True, True),
    Phase.CLOSED: Permissions(False, False, False, True),
    Phase.ARCHIVED: Permissions(False, False, False, True),
}


@dataclass(frozen=True, slots=True)
class ArchivedQuestion:
    """A question a re-imported file left out (``--archive-missing``): no new contributions,
    its ideas stay listed and counted, marked archived."""

    id: int
    key: str
    texts: tuple[tuple[str, str], ...]  # (language, text) from the last file that had it

    def text(self, locale: str | None) -> str:
        texts = dict(self.texts)
        return texts.get(locale or "") or next(iter(texts.values()), self.key)


@dataclass(frozen=True)
class ConsultationInfo:
    """A consultation as the core sees it: its row's schedule plus its validated document."""

    id: int
    slug: str
    status: str
    opens_at: datetime
    closes_at: datetime
    timezone: str
    document: ConsultationDocument
    question_ids: tuple[int, ...]  # the file's questions, in its order
    archived: tuple[ArchivedQuestion, ...] = ()

    def phase(self, now: datetime) -> Phase:
        if self.status in (Phase.DRAFT, Phase.ARCHIVED, Phase.CLOSED):
            return Phase(self.status)
        if now < self.opens_at:
            return Phase.UPCOMING
        if now >= self.closes_at:
            return Phase.CLOSED
        return Phase.OPEN

    def allows(self, now: datetime) -> Permissions:
        return PERMISSIONS[self.phase(now)]

    def content(self, locale: str) -> LocalizedContent:
        return self.document.localized(locale)

    @property
    def settings(self) -> ConsultationSettings:
        return self.document.settings

    def question_index(self, question_id: int) -> int:
        return self.question_ids.index(question_id)

    def archived_question(self, question_id: int) -> ArchivedQuestion | None:
        return next((q for q in self.archived if q.id == question_id), None)


def consultation_days(opens_at: datetime, closes_at: datetime, now: datetime) -> int:
    """Days of consultation: full days elapsed from the opening to the closing (or to now while
    open). The seed's 23 Feb 2018 10:00 → 31 Aug 2019 00:00 (Europe/Paris) gives 553."""
    # In UTC: subtracting two datetimes of the same zone would count wall-clock time and
    # ignore a daylight-saving change in between.
    start, end = opens_at.astimezone(UTC), min(now, closes_at).astimezone(UTC)
    if end <= start:
        return 0
    return (end - start) // timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Statistics:
    """The five public counters of a consultation (as on the seed's page), plus comments."""

    days: int
    participants: int
    contributions: int
    supports: int
    visitors: int
    comments: int
