"""The open-data export of a consultation (docs/open-data-format.md): contributions, comments
and statistics, as CSV files and one JSON document.

- Authors appear by their pseudonym (``Citizen.pseudonym``, random), never by a platform
  identity. Who supported what is never exported: only counts.
- Exported: published and hidden contributions (a hidden one's text is left empty), and the
  published and hidden comments of published contributions. Pending (not yet moderated) and
  withdrawn content is not exported.
- Every text cell that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or
  a carriage return) gets a leading apostrophe, in the CSV files AND in the JSON (which open-data
  portals routinely turn into spreadsheets). One function does it: ``bot.results.neutralise``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from bot.answers import open_data
from bot.domain import ConsultationInfo
from bot.results import neutralise
from bot.services import Services
from bot.settings import Settings
from storage.models import Citizen, Comment, Contribution, Question, Support
from storage.repositories_sources import by_source

FORMAT = "parlons-open-data/1"
CONTRIBUTION_COLUMNS = (
    "contribution_id",
    "question",
    "question_key",
    "question_text",
    "author",
    "text",
    "status",
    "supports",
    "comments",
    "created_at",
    "updated_at",
)
COMMENT_COLUMNS = ("comment_id", "contribution_id", "author", "text", "status", "created_at")
ANSWER_COLUMNS = ("contribution_id", "status", "text", "answered_at")
# Deep-link sources: "" is direct (no source in the link the citizen first opened).
SOURCE_COLUMNS = ("source", "visitors", "participants", "contributions")
EXPORTED_CONTRIBUTIONS = ("published", "hidden")
EXPORTED_COMMENTS = ("published", "hidden")


def _cell(value: Any) -> Any:
    return neutralise(value) if isinstance(value, str) else value


def _iso(value: datetime) -> str:
    return value.isoformat()


@dataclass(frozen=True)
class OpenData:
    consultation: dict[str, Any]
    generated_at: datetime
    statistics: dict[str, int]
    questions: list[dict[str, Any]]
    contributions: list[dict[str, Any]]
    comments: list[dict[str, Any]]
    sources: list[dict[str, Any]] = field(default_factory=list)
    # Official answers, merged ideas and the opinion groups' matrix (bot.answers.open_data).
    answers: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ formats

    def to_json_data(self) -> dict[str, Any]:
        def clean(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: _cell(v) for k, v in row.items()} for row in rows]

        return {
            "format": FORMAT,
            "consultation": {k: _cell(v) for k, v in self.consultation.items()},
            "generated_at": _iso(self.generated_at),
            "statistics": dict(self.statistics),
            "questions": clean(self.questions),
            "contributions": clean(self.contributions),
            "comments": clean(self.comments),
            # Official answers, merged ideas and opinion groups (bot.answers.open_data).
            "answers": clean(self.answers.get("answers", [])),
            "merges": list(self.answers.get("merges", [])),
            "opinions": self.answers.get("opinions"),
            "sources": clean(self.sources),
        }

    def to_json(self) -> bytes:
        text = json.dumps(self.to_json_data(), ensure_ascii=False, indent=1)
        return (text + "\n").encode("utf-8")

    def _csv(self, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
        # A BOM so that spreadsheets open the UTF-8 file with its accents.
        return ("\ufeff" + out.getvalue()).encode("utf-8")

    def contributions_csv(self) -> bytes:
        return self._csv(CONTRIBUTION_COLUMNS, self.contributions)

    def comments_csv(self) -> bytes:
        return self._csv(COMMENT_COLUMNS, self.comments)

    def sources_csv(self) -> bytes:
        return self._csv(SOURCE_COLUMNS, self.sources)

    def statistics_csv(self) -> bytes:
        rows = [{"name": k, "value": v} for k, v in self.statistics.items()]
        return self._csv(("name", "value"), rows)

    def files(self) -> list[tuple[str, str, bytes]]:
        """(file name, MIME type, content) of every file of the export."""
        slug = self.consultation["slug"]
        return [
            (f"{slug}-contributions.csv", "text/csv", self.contributions_csv()),
            (f"{slug}-comments.csv", "text/csv", self.comments_csv()),
            (f"{slug}-statistics.csv", "text/csv", self.statistics_csv()),
            (f"{slug}-sources.csv", "text/csv", self.sources_csv()),
            (
                f"{slug}-answers.csv",
                "text/csv",
                self._csv(ANSWER_COLUMNS, self.answers.get("answers", [])),
            ),
            (f"{slug}.json", "application/json", self.to_json()),
        ]


def build_export(
    services: Services, info: ConsultationInfo, settings: Settings | None = None
) -> OpenData:
    s = services.repos.session
    doc = info.document
    questions = list(
        s.execute(
            select(Question)
            .where(col(Question.consultation_id) == info.id)
            .order_by(col(Question.position))
        ).scalars()
    )
    texts = {q.key: q.text for q in doc.questions}
    texts.update({a.key: a.text(doc.language) for a in info.archived})
    position = {q.id: (n, q.key) for n, q in enumerate(questions, 1)}
    supports = (
        select(func.count())
        .select_from(Support)
        .where(col(Support.contribution_id) == Contribution.id)
        .correlate(Contribution)
        .scalar_subquery()
    )
    comments = (
        select(func.count())
        .select_from(Comment)
        .where(col(Comment.contribution_id) == Contribution.id, col(Comment.status) == "published")
        .correlate(Contribution)
        .scalar_subquery()
    )
    contributions = []
    published: set[int] = set()
    for row, pseudonym, n_supports, n_comments in s.execute(
        select(Contribution, col(Citizen.pseudonym), supports, comments)
        .join(Citizen, col(Citizen.id) == Contribution.citizen_id)
        .where(
            col(Contribution.consultation_id) == info.id,
            col(Contribution.status).in_(EXPORTED_CONTRIBUTIONS),
        )
        .order_by(col(Contribution.id))
    ).all():
        number, key = position.get(row.question_id, (0, ""))
        if row.status == "published":
            published.add(row.id)
        contributions.append(
            {
                "contribution_id": row.id,
                "question": number,
                "question_key": key,
                "question_text": texts.get(key, ""),
                "author": pseudonym,
                "text": row.text if row.status == "published" else "",
                "status": row.status,
                "supports": n_supports,
                "comments": n_comments,
                "created_at": _iso(row.created_at),
                "updated_at": _iso(row.updated_at),
            }
        )
    comment_rows = []
    for comment, pseudonym in s.execute(
        select(Comment, col(Citizen.pseudonym))
        .join(Citizen, col(Citizen.id) == Comment.citizen_id)
        .where(
            col(Comment.contribution_id).in_(sorted(published)),
            col(Comment.status).in_(EXPORTED_COMMENTS),
        )
        .order_by(col(Comment.id))
    ).all():
        comment_rows.append(
            {
                "comment_id": comment.id,
                "contribution_id": comment.contribution_id,
                "author": pseudonym,
                "text": comment.text if comment.status == "published" else "",
                "status": comment.status,
                "created_at": _iso(comment.created_at),
            }
        )
    stats = services.consultations.statistics(info)
    return OpenData(
        consultation={
            "slug": info.slug,
            "title": doc.title,
            "language": doc.language,
            "timezone": info.timezone,
            "opens_at": _iso(info.opens_at),
            "closes_at": _iso(info.closes_at),
            "phase": str(info.phase(services.now)),
        },
        generated_at=services.now,
        statistics={
            "days": stats.days,
            "participants": stats.participants,
            "contributions": stats.contributions,
            "supports": stats.supports,
            "comments": stats.comments,
            "visitors": stats.visitors,
        },
        questions=[
            {
                "question": n,
                "question_key": q.key,
                "question_text": texts.get(q.key, ""),
                "contributions": sum(
                    1
                    for c in contributions
                    if c["question_key"] == q.key and c["status"] == "published"
                ),
            }
            for n, q in enumerate(questions, 1)
        ],
        contributions=contributions,
        comments=comment_rows,
        answers=open_data(services.repos, info, settings or Settings()),
        sources=[
            {
                "source": row.source or "",
                "visitors": row.visitors,
                "participants": row.participants,
                "contributions": row.contributions,
            }
            for row in by_source(s, info.id)
        ],
    )
