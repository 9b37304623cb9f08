"""The results of a consultation, and the open data they are computed from. Pure: no database.

``compute_results`` turns plain figures (each published contribution with its support and
comment counts, the participants' pseudonyms, the number of visitors) into ``Results``: the five
statistics and, per question, the contributions ranked by supports. ``to_csv`` and ``to_json``
publish exactly the data the figures come from, so anyone can recompute them:

- contributions = the number of rows; supports and comments = the sums of their columns;
- participants = the number of distinct pseudonyms in ``participants`` (JSON: authors,
  supporters and commenters; who supported what is never published);
- days = full days from ``opens_at`` to ``closes_at`` (or to ``computed_at`` if earlier);
- visitors = a counter (``visitors`` in the JSON): a visit leaves no content to publish.

Ranking: most supports first, then most comments, then the earliest contribution.

CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a carriage
return) are neutralised with a leading apostrophe. The JSON keeps texts exactly as written: it is
data for programs, not a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain import Statistics, consultation_days

__all__ = [
    "ContributionFigures",
    "QuestionInfo",
    "QuestionResults",
    "RankedContribution",
    "Results",
    "compute_results",
    "neutralise",
]

CSV_COLUMNS = (
    "question",
    "question_key",
    "rank",
    "contribution_id",
    "supports",
    "comments",
    "author",
    "created_at",
    "text",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """A text cell that a spreadsheet cannot run as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


@dataclass(frozen=True, slots=True)
class QuestionInfo:
    position: int  # 1-based
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class ContributionFigures:
    """One published contribution with its counts (published comments only)."""

    id: int
    question_key: str
    author: str  # the author's pseudonym
    text: str
    created_at: datetime
    supports: int
    comments: int


@dataclass(frozen=True, slots=True)
class RankedContribution:
    rank: int
    id: int
    author: str
    text: str
    created_at: datetime
    supports: int
    comments: int


@dataclass(frozen=True, slots=True)
class QuestionResults:
    position: int
    key: str
    text: str
    contributions: tuple[RankedContribution, ...]
    # How many contributions the question has (``contributions`` may hold only the top).
    count: int = -1

    def __post_init__(self) -> None:
        if self.count < 0:
            object.__setattr__(self, "count", len(self.contributions))

    def top(self, n: int) -> tuple[RankedContribution, ...]:
        return self.contributions[:n]


@dataclass(frozen=True)
class Results:
    slug: str
    title: str
    timezone: str
    opens_at: datetime
    closes_at: datetime
    computed_at: datetime
    statistics: Statistics
    questions: tuple[QuestionResults, ...]
    # The pseudonyms of everyone who took part (published sorted, in the JSON).
    participants: frozenset[str]

    def ranked(self) -> list[tuple[QuestionResults, RankedContribution]]:
        """Every contribution of every question, most supported first (for the chart)."""
        rows = [(q, c) for q in self.questions for c in q.contributions]
        rows.sort(key=lambda qc: (-qc[1].supports, -qc[1].comments, qc[1].created_at, qc[1].id))
        return rows

    # ------------------------------------------------------------------ export

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for q in self.questions:
            for c in q.contributions:
                writer.writerow(
                    (
                        q.position,
                        neutralise(q.key),
                        c.rank,
                        c.id,
                        c.supports,
                        c.comments,
                        neutralise(c.author),
                        c.created_at.isoformat(),
                        neutralise(c.text),
                    )
                )
        return out.getvalue()

    def to_json_data(self, top: int | None = None) -> dict[str, Any]:
        """The published JSON. With ``top``, a summary for messages: only the first ``top``
        contributions per question, and no participants."""
        s = self.statistics
        return {
            "consultation": {
                "slug": self.slug,
                "title": self.title,
                "timezone": self.timezone,
                "opens_at": self.opens_at.isoformat(),
                "closes_at": self.closes_at.isoformat(),
            },
            "computed_at": self.computed_at.isoformat(),
            "statistics": {
                "days": s.days,
                "participants": s.participants,
                "contributions": s.contributions,
                "supports": s.supports,
                "visitors": s.visitors,
                "comments": s.comments,
            },
            "questions": [
                {
                    "position": q.position,
                    "key": q.key,
                    "text": q.text,
                    "count": q.count,
                    "contributions": [
                        {
                            "rank": c.rank,
                            "id": c.id,
                            "supports": c.supports,
                            "comments": c.comments,
                            "author": c.author,
                            "created_at": c.created_at.isoformat(),
                            "text": c.text,
                        }
                        for c in (q.contributions if top is None else q.contributions[:top])
                    ],
                }
                for q in self.questions
            ],
            "participants": sorted(self.participants) if top is None else [],
            "visitors": s.visitors,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_data(), ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Results:
        """Read back ``to_json`` (the figures are taken as published, not recomputed)."""
        return cls.from_json_data(json.loads(text))

    @classmethod
    def from_json_data(cls, data: dict[str, Any]) -> Results:
        c, s = data["consultation"], data["statistics"]
        return cls(
            slug=c["slug"],
            title=c["title"],
            timezone=c["timezone"],
            opens_at=datetime.fromisoformat(c["opens_at"]),
            closes_at=datetime.fromisoformat(c["closes_at"]),
            computed_at=datetime.fromisoformat(data["computed_at"]),
            statistics=Statistics(**s),
            questions=tuple(
                QuestionResults(
                    q["position"],
                    q["key"],
                    q["text"],
                    tuple(
                        RankedContribution(
                            r["rank"],
                            r["id"],
                            r["author"],
                            r["text"],
                            datetime.fromisoformat(r["created_at"]),
                            r["supports"],
                            r["comments"],
                        )
                        for r in q["contributions"]
                    ),
                    q.get("count", len(q["contributions"])),
                )
                for q in data["questions"]
            ),
            participants=frozenset(data["participants"]),
        )


def compute_results(
    *,
    slug: str,
    title: str,
    timezone: str,
    opens_at: datetime,
    closes_at: datetime,
    now: datetime,
    questions: Sequence[QuestionInfo],
    contributions: Iterable[ContributionFigures],
    participants: Iterable[str],
    visitors: int,
) -> Results:
    by_question: dict[str, list[ContributionFigures]] = {q.key: [] for q in questions}
    total = supports = comments = 0
    for c in contributions:
        by_question.setdefault(c.question_key, []).append(c)
        total += 1
        supports += c.supports
        comments += c.comments
    ranked_questions = []
    for q in questions:
        rows = sorted(
            by_question.get(q.key, ()),
            key=lambda c: (-c.supports, -c.comments, c.created_at, c.id),
        )
        ranked_questions.append(
            QuestionResults(
                q.position,
                q.key,
                q.text,
                tuple(
                    RankedContribution(
                        rank, c.id, c.author, c.text, c.created_at, c.supports, c.comments
                    )
                    for rank, c in enumerate(rows, 1)
                ),
            )
        )
    people = frozenset(participants)
    return Results(
        slug=slug,
        title=title,
        timezone=timezone,
        opens_at=opens_at,
        closes_at=closes_at,
        computed_at=now,
        statistics=Statistics(
            days=consultation_days(opens_at, closes_at, now),
            participants=len(people),
            contributions=total,
            supports=supports,
            visitors=visitors,
            comments=comments,
        ),
        questions=tuple(ranked_questions),
        participants=people,
    )
