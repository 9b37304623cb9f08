"""Domain services: one verb per method, a value back or a named error raised.

They work inside one unit of work (``Repos``); the caller commits. They never build messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot import errors
from bot.consultation_file import ConsultationDocument
from bot.domain import (
    ArchivedQuestion,
    ConsultationInfo,
    Phase,
    Statistics,
    consultation_days,
)
from bot.i18n import fmt_date
from bot.ingress import is_blank
from bot.moderation import ensure_not_banned
from storage.models import Citizen, Comment, Consultation, Contribution, Question
from storage.repositories import ContributionRow, Repos

_Parsed = tuple[ConsultationDocument, tuple[int, ...], tuple[ArchivedQuestion, ...]]


class ConsultationCache:
    """Parsed consultation documents and question ids by (id, revision). Validating a
    document is the most expensive step of handling an event, and documents rarely change."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: dict[tuple[int, int], _Parsed] = {}

    def get(
        self, row: Consultation, load_questions: Callable[[int], Sequence[Question]]
    ) -> _Parsed:
        assert row.id is not None
        key = (row.id, row.revision)
        found = self._items.get(key)
        if found is None:
            if len(self._items) >= self.size:
                self._items.clear()
            document = ConsultationDocument.from_json(row.document)
            live, archived = _split_questions(document, load_questions(row.id))
            found = (document, live, archived)
            self._items[key] = found
        return found


def _split_questions(
    document: ConsultationDocument, rows: Sequence[Question]
) -> tuple[tuple[int, ...], tuple[ArchivedQuestion, ...]]:
    """The file's questions' ids in its order, and the questions it no longer has."""
    ids = {q.key: q.id for q in rows if q.id is not None}
    live = tuple(ids[q.key] for q in document.questions if q.key in ids)
    keys = {q.key for q in document.questions}
    archived = tuple(
        ArchivedQuestion(q.id, q.key, tuple((q.archived_texts or {}).items()))
        for q in rows
        if q.id is not None and q.key not in keys
    )
    return live, archived


@dataclass(frozen=True)
class DroppedQuestion:
    key: str
    contributions: int


@dataclass(frozen=True)
class ImportResult:
    """What an import did: ``outcome`` is created, updated, replaced or unchanged."""

    row: Consultation
    outcome: str
    archived: tuple[DroppedQuestion, ...] = field(default=())

    @property
    def slug(self) -> str:
        return self.row.slug

    @property
    def created(self) -> bool:
        return self.outcome == "created"


class Services:
    """The domain services bound to one unit of work and one instant."""

    def __init__(
        self, repos: Repos, now: datetime, cache: ConsultationCache | None = None
    ) -> None:
        self.repos = repos
        self.now = now
        self.consultations = ConsultationService(repos, now, cache or ConsultationCache())
        self.participation = ParticipationService(repos, now)
        self.supports = SupportService(repos, now)
        self.comments = CommentService(repos, now)


def require(info: ConsultationInfo, now: datetime, what: str) -> None:
    """Raise the translated reason if the consultation's phase does not allow ``what``
    (``contribute``, ``support``, ``comment``)."""
    allowed = info.allows(now)
    if getattr(allowed, what):
        return
    phase = info.phase(now)
    if phase in (Phase.UPCOMING, Phase.DRAFT):
        raise errors.ConsultationNotOpen(date=fmt_date(info.opens_at, info.timezone))
    raise errors.ConsultationClosed(date=fmt_date(info.closes_at, info.timezone))


def _clean_text(text: str, limit: int) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise errors.EmptyText()
    if is_blank(cleaned):
        raise errors.InvisibleText()
    if len(cleaned) > limit:
        raise errors.TextTooLong(length=len(cleaned), limit=limit)
    return cleaned


class ConsultationService:
    def __init__(self, repos: Repos, now: datetime, cache: ConsultationCache) -> None:
        self.repos, self.now, self.cache = repos, now, cache

    def check_import(
        self, doc: ConsultationDocument, *, archive_missing: bool = False, replace: bool = False
    ) -> tuple[str, tuple[DroppedQuestion, ...]]:
        """What importing ``doc`` would do: (outcome, questions it would archive), or the
        named refusal: a different consultation under an existing slug (unless ``replace``),
        questions with contributions left out (unless ``archive_missing``)."""
        existing = self.repos.consultations.by_slug(doc.slug)
        if existing is None or existing.id is None:
            return "created", ()
        if existing.document == doc.to_json():
            return "unchanged", ()
        before = ConsultationDocument.from_json(existing.document)
        outcome = "updated"
        if _different(before, doc):
            if not replace:
                raise errors.SlugTaken(slug=doc.slug, title=before.title)
            outcome = "replaced"
        keys = {q.key for q in doc.questions}
        counts = self.repos.consultations.contribution_counts(existing.id)
        dropped = tuple(
            DroppedQuestion(q.key, counts.get(q.id or 0, 0))
            for q in self.repos.consultations.questions(existing.id)
            if q.key not in keys and q.archived_at is None
        )
        kept = [q for q in dropped if q.contributions]
        if kept and not archive_missing:
            raise errors.QuestionsWithContributionsLeftOut(
                questions=", ".join(f"“{q.key}” ({q.contributions})" for q in kept)
            )
        return outcome, dropped

    def import_document(
        self, doc: ConsultationDocument, *, archive_missing: bool = False, replace: bool = False
    ) -> ImportResult:
        """Create or update a consultation from its file (refusals: ``check_import``). A date
        the file does not change keeps what moderators did with it since (an extension of the
        closing date survives a re-import of the same file; a new date in the file wins).
        Questions the file leaves out are archived: their contributions stay listed."""
        outcome, dropped = self.check_import(doc, archive_missing=archive_missing, replace=replace)
        existing = self.repos.consultations.by_slug(doc.slug)
        if outcome == "unchanged" and existing is not None:
            return ImportResult(existing, outcome)
        opens_at, closes_at = doc.opens_at_utc, doc.closes_at_utc
        texts: dict[str, dict[str, str]] = {}
        if existing is not None:
            before = ConsultationDocument.from_json(existing.document)
            if before.opens_at_utc == opens_at:
                opens_at = existing.opens_at
            if before.closes_at_utc == closes_at:
                closes_at = existing.closes_at
            for lang in before.languages:
                for q in before.localized(lang).questions:
                    texts.setdefault(q.key, {})[lang] = q.text
        row, _created = self.repos.consultations.upsert(
            slug=doc.slug,
            opens_at=opens_at,
            closes_at=closes_at,
            timezone=doc.timezone,
            document=doc.to_json(),
            question_keys=[q.key for q in doc.questions],
            now=self.now,
            archived_texts=texts,
        )
        return ImportResult(row, outcome, dropped)

    def info(self, row: Consultation) -> ConsultationInfo:
        assert row.id is not None
        document, question_ids, archived = self.cache.get(row, self.repos.consultations.questions)
        return ConsultationInfo(
            id=row.id,
            slug=row.slug,
            status=row.status,
            opens_at=row.opens_at,
            closes_at=row.closes_at,
            timezone=row.timezone,
            document=document,
            question_ids=question_ids,
            archived=archived,
        )

    def get(self, consultation_id: int) -> ConsultationInfo:
        row = self.repos.consultations.get(consultation_id)
        if row is None:
            raise errors.NoConsultation()
        return self.info(row)

    def by_slug(self, slug: str) -> ConsultationInfo:
        row = self.repos.consultations.by_slug(slug)
        if row is None:
            raise errors.UnknownConsultation(slug=slug)
        return self.info(row)

    def default(self) -> ConsultationInfo:
        """The consultation to show when none is named: an open one (most recently opened),
        else an upcoming one, else the most recent."""
        rows = [r for r in self.repos.consultations.all() if r.status not in ("draft", "archived")]
        if not rows:
            raise errors.NoConsultation()
        infos = [self.info(r) for r in rows]
        for wanted in (Phase.OPEN, Phase.UPCOMING):
            for info in infos:
                if info.phase(self.now) == wanted:
                    return info
        return infos[0]

    def resolve_start_payload(self, payload: str) -> tuple[ConsultationInfo, str | None]:
        """``slug`` or ``slug-source`` (a deep link from a poster's QR code, say)."""
        payload = payload.strip().lower()
        row = self.repos.consultations.by_slug(payload)
        if row is not None:
            return self.info(row), None
        candidates = [
            r for r in self.repos.consultations.all() if payload.startswith(r.slug + "-")
        ]
        if candidates:
            best = max(candidates, key=lambda r: len(r.slug))
            source = payload[len(best.slug) + 1 :][:64] or None
            return self.info(best), source
        raise errors.UnknownConsultation(slug=payload[:64])

    def record_visit(self, info: ConsultationInfo, citizen: Citizen, source: str | None) -> bool:
        assert citizen.id is not None
        return self.repos.stats.record_visit(info.id, citizen.id, source, self.now)

    def statistics(self, info: ConsultationInfo) -> Statistics:
        c = self.repos.stats.counters(info.id)
        return Statistics(
            days=consultation_days(info.opens_at, info.closes_at, self.now),
            participants=c.participants,
            contributions=c.contributions,
            supports=c.supports,
            visitors=c.visitors,
            comments=c.comments,
        )


def _different(before: ConsultationDocument, after: ConsultationDocument) -> bool:
    """Another consultation, not a new version of the same: no question in common, or a new
    title and every common question reworded."""
    old = {q.key: q.text for q in before.questions}
    common = [q for q in after.questions if q.key in old]
    if not common:
        return True
    return before.title != after.title and all(old[q.key] != q.text for q in common)


class ParticipationService:
    def __init__(self, repos: Repos, now: datetime) -> None:
        self.repos, self.now = repos, now

    def check_text(self, info: ConsultationInfo, text: str) -> str:
        return _clean_text(text, info.settings.max_contribution_length)

    def submit_contribution(
        self, info: ConsultationInfo, question_id: int, citizen: Citizen, text: str
    ) -> Contribution:
        require(info, self.now, "contribute")
        ensure_not_banned(self.repos, info.id, citizen)
        if question_id not in info.question_ids:
            raise errors.UnknownQuestion()
        assert citizen.id is not None
        status = "pending" if info.settings.premoderation else "published"
        return self.repos.contributions.add(
            Contribution(
                consultation_id=info.id,
                question_id=question_id,
                citizen_id=citizen.id,
                text=self.check_text(info, text),
                status=status,
                created_at=self.now,
                updated_at=self.now,
            )
        )

    def own(self, info: ConsultationInfo, contribution_id: int, citizen: Citizen) -> Contribution:
        row = self.repos.contributions.get(contribution_id)
        if row is None or row.consultation_id != info.id or row.status == "withdrawn":
            raise errors.UnknownContribution(id=contribution_id)
        if row.citizen_id != citizen.id:
            raise errors.NotYourContribution(id=contribution_id)
        if row.status == "merged":
            # A merged duplicate is neither edited nor withdrawn: its target carries it on.
            from bot.answers import merged_error

            raise merged_error(self.repos, contribution_id)
        return row

    def edit_contribution(
        self, info: ConsultationInfo, contribution_id: int, citizen: Citizen, text: str
    ) -> Contribution:
        require(info, self.now, "contribute")
        ensure_not_banned(self.repos, info.id, citizen)
        row = self.own(info, contribution_id, citizen)
        if row.status == "hidden":
            raise errors.ContributionNotAvailable(id=contribution_id)
        row.text = self.check_text(info, text)
        row.updated_at = self.now
        self.repos.session.add(row)
        return row

    def withdraw_contribution(
        self, info: ConsultationInfo, contribution_id: int, citizen: Citizen
    ) -> Contribution:
        require(info, self.now, "contribute")
        row = self.own(info, contribution_id, citizen)
        row.status = "withdrawn"
        row.updated_at = self.now
        self.repos.session.add(row)
        return row

    def mine(self, info: ConsultationInfo, citizen: Citizen) -> list[ContributionRow]:
        assert citizen.id is not None
        return self.repos.contributions.of_citizen(citizen.id, info.id)


def _visited(repos: Repos, info: ConsultationInfo, citizen: Citizen, now: datetime) -> None:
    """Whoever takes part has visited the consultation (even through a typed command)."""
    assert citizen.id is not None
    repos.stats.record_visit(info.id, citizen.id, None, now)


def published_contribution(
    repos: Repos, contribution_id: int, info: ConsultationInfo | None = None
) -> Contribution:
    row = repos.contributions.get(contribution_id)
    if row is None or (info is not None and row.consultation_id != info.id):
        raise errors.UnknownContribution(id=contribution_id)
    if row.status == "merged":
        from bot.answers import merged_error  # the target of a merged duplicate (issue 15)

        raise merged_error(repos, contribution_id)
    if row.status != "published":
        raise errors.ContributionNotAvailable(id=contribution_id)
    return row


class SupportService:
    def __init__(self, repos: Repos, now: datetime) -> None:
        self.repos, self.now = repos, now

    def support(self, info: ConsultationInfo, contribution_id: int, citizen: Citizen) -> None:
        """Support a published contribution (once: the database's unique constraint decides,
        also between concurrent requests)."""
        row = published_contribution(self.repos, contribution_id, info)
        require(info, self.now, "support")
        ensure_not_banned(self.repos, info.id, citizen)
        if row.citizen_id == citizen.id:
            raise errors.OwnContribution()
        assert citizen.id is not None
        if not self.repos.supports.add(contribution_id, citizen.id, self.now):
            raise errors.AlreadySupported(id=contribution_id)
        _visited(self.repos, info, citizen, self.now)

    def withdraw_support(
        self, info: ConsultationInfo, contribution_id: int, citizen: Citizen
    ) -> None:
        published_contribution(self.repos, contribution_id, info)
        require(info, self.now, "support")
        if not info.settings.support_withdrawal:
            raise errors.WithdrawalNotAllowed()
        assert citizen.id is not None
        if not self.repos.supports.remove(contribution_id, citizen.id):
            raise errors.NotSupported(id=contribution_id)


class CommentService:
    def __init__(self, repos: Repos, now: datetime) -> None:
        self.repos, self.now = repos, now

    def can_comment(self, info: ConsultationInfo, contribution_id: int) -> Contribution:
        row = published_contribution(self.repos, contribution_id, info)
        if not info.settings.comments:
            raise errors.CommentsDisabled()
        require(info, self.now, "comment")
        return row

    def comment(
        self, info: ConsultationInfo, contribution_id: int, citizen: Citizen, text: str
    ) -> Comment:
        self.can_comment(info, contribution_id)
        ensure_not_banned(self.repos, info.id, citizen)
        assert citizen.id is not None
        _visited(self.repos, info, citizen, self.now)
        return self.repos.comments.add(
            Comment(
                contribution_id=contribution_id,
                citizen_id=citizen.id,
                text=_clean_text(text, info.settings.max_comment_length),
                status="published",
                created_at=self.now,
            )
        )
