"""Reading thousands of ideas (issue 15): similar ideas, search, sorting and disagreements.

All the SQL of the feature lives here. The text index is PostgreSQL's full-text search (a GIN
index on the French and English tsvector of ``contribution.text``) or SQLite's FTS5 table
``idea_fts`` over ``contribution.text`` (kept in sync by triggers, migration 0010_legible),
queried with the French and English Snowball stems of the words as prefixes
(storage.text_index). Both indexes follow every write to ``contribution``, whoever makes it.
The database finds candidates; ``similar`` then keeps those that share enough words with the
draft (the same rule on both databases).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    bindparam,
    delete,
    func,
    literal,
    select,
    text,
)
from sqlmodel import Session, col

from storage import text_index
from storage.db import Database
from storage.models import Contribution, Seen, Support
from storage.models_legible import FTS_TABLE, Disagreement, SortDealt

PUBLISHED = "published"
# Keep in step with migration 0010_legible (the GIN index's expression).
PG_VECTOR = "(to_tsvector('french', c.text) || to_tsvector('english', c.text))"
CANDIDATES = 12  # ideas the database proposes before the word-overlap rule picks the best
PG_CANDIDATES = 2000  # PostgreSQL: every match (unranked), up to this many


@dataclass(frozen=True, slots=True)
class Found:
    """A page of search results: ids in rank order, and how many matched in all."""

    ids: list[int]
    total: int


class LegibleRepo:
    def __init__(self, db: Database, session: Session) -> None:
        self.db, self.s = db, session

    # ------------------------------------------------------------------ the text index

    def _match(
        self,
        consultation_id: int,
        query: str,
        *,
        any_term: bool,
        question_id: int | None,
        statuses: Sequence[str],
        exclude_citizen: int | None,
        offset: int,
        limit: int,
        count: bool,
    ) -> Found:
        params: dict[str, object] = {
            "k": consultation_id,
            "st": list(statuses),
            "q": question_id,
            "me": exclude_citizen,
            "lim": limit,
            "off": offset,
        }
        filters = "c.consultation_id = :k AND c.status IN :st"
        if question_id is not None:
            filters += " AND c.question_id = :q"
        if exclude_citizen is not None:
            filters += " AND c.citizen_id <> :me"
        prefix = ""
        if self.db.is_sqlite:
            match = text_index.Stemmer().fts_query(query, any_term=any_term)
            if match is None:
                return Found([], 0)
            params["m"] = match
            source = (
                f"FROM {FTS_TABLE} f JOIN contribution c ON c.id = f.rowid "
                f"WHERE {FTS_TABLE} MATCH :m AND {filters}"
            )
            rank = f"bm25({FTS_TABLE})"
        else:
            terms = text_index.query_words(query)
            if not terms:
                return Found([], 0)
            # Words are letters and digits only (storage.text_index), so they are safe in a
            # tsquery; a prefix match lets ``vélo`` find ``vélos`` (PostgreSQL's stemmers keep
            # the plural of words with accents).
            params["m"] = (" | " if any_term else " & ").join(f"{w}:*" for w in terms)
            tsquery = "(to_tsquery('french', :m) || to_tsquery('english', :m))"
            # The match once, alone (a materialized CTE), through the GIN index: joined to the
            # filters by the planner, with stale statistics it re-ran the match per idea.
            prefix = (
                "WITH m AS MATERIALIZED (SELECT c.id FROM contribution c "  # noqa: S608
                f"WHERE {PG_VECTOR} @@ {tsquery}) "
            )
            source = f"FROM m JOIN contribution c ON c.id = m.id WHERE {filters}"
            # Similar ideas: no ts_rank (it recomputes two vectors per matching idea, 250 ms at
            # 5,000 ideas); the word-overlap rule ranks all the candidates instead.
            rank = "c.id" if any_term else f"-ts_rank({PG_VECTOR}, {tsquery})"
        stmt = text(
            f"{prefix}SELECT c.id {source} ORDER BY {rank}, c.id DESC LIMIT :lim OFFSET :off"
        )
        stmt = stmt.bindparams(_expanding("st"))
        ids = [int(i) for i in self.s.execute(stmt, params).scalars()]
        total = len(ids) + offset
        if count and (len(ids) == limit or offset):
            counted = text(f"{prefix}SELECT count(*) {source}").bindparams(_expanding("st"))
            total = int(self.s.execute(counted, params).scalar_one())
        return Found(ids, total)

    # ------------------------------------------------------------------ similar ideas

    def similar(
        self,
        consultation_id: int,
        question_id: int,
        draft: str,
        *,
        exclude_citizen: int | None = None,
        limit: int = 3,
    ) -> list[int]:
        """Published ideas of the question closest to ``draft``, best first: the database's
        candidates (any shared stem), kept if they share at least two of the draft's words
        (one for a one-word draft), ordered by a cosine of shared words."""
        found = self._match(
            consultation_id,
            draft,
            any_term=True,
            question_id=question_id,
            statuses=(PUBLISHED,),
            exclude_citizen=exclude_citizen,
            offset=0,
            limit=CANDIDATES if self.db.is_sqlite else PG_CANDIDATES,
            count=False,
        )
        if not found.ids:
            return []
        texts = dict(
            self.s.execute(
                select(col(Contribution.id), col(Contribution.text)).where(
                    col(Contribution.id).in_(found.ids)
                )
            ).all()
        )
        return rank_similar(draft, [(cid, texts[cid]) for cid in found.ids if cid in texts])[
            :limit
        ]

    # ------------------------------------------------------------------ search

    def search(
        self,
        consultation_id: int,
        query: str,
        *,
        question_id: int | None,
        statuses: Sequence[str] = (PUBLISHED,),
        offset: int,
        limit: int,
    ) -> Found:
        """Ideas with every word of ``query`` (in any of its French or English forms), best
        match first."""
        return self._match(
            consultation_id,
            query,
            any_term=False,
            question_id=question_id,
            statuses=statuses,
            exclude_citizen=None,
            offset=offset,
            limit=limit,
            count=True,
        )

    # ------------------------------------------------------------------ sorting

    def next_unsorted(
        self, consultation_id: int, citizen_id: int, skip: Iterable[int] = ()
    ) -> int | None:
        """An idea to deal to this citizen: published, not theirs, never dealt to them, neither
        supported nor disagreed with; those they have not seen in lists first, then the least
        supported (each idea gets its turn)."""
        votes = (
            select(func.count())
            .select_from(Support)
            .where(col(Support.contribution_id) == col(Contribution.id))
            .correlate(Contribution)
            .scalar_subquery()
        )
        stmt = (
            select(col(Contribution.id))
            .where(*_unsorted(consultation_id, citizen_id))
            .order_by(_mine(Seen, citizen_id).asc(), votes.asc(), col(Contribution.id).asc())
            .limit(1)
        )
        skipped = list(skip)
        if skipped:
            stmt = stmt.where(col(Contribution.id).not_in(skipped))
        found = self.s.execute(stmt).scalar()
        return int(found) if found is not None else None

    def unsorted_count(self, consultation_id: int, citizen_id: int) -> int:
        """How many ideas are left to deal to this citizen."""
        stmt = select(func.count()).where(*_unsorted(consultation_id, citizen_id))
        return int(self.s.execute(stmt).scalar_one())

    def dealt(self, citizen_id: int, contribution_id: int, now: datetime) -> None:
        """Remember that this idea was dealt to this citizen (never dealt again)."""
        self.db.insert_ignore(
            self.s,
            SortDealt,
            citizen_id=citizen_id,
            contribution_id=contribution_id,
            created_at=now,
        )

    # ------------------------------------------------------------------ disagreements

    def disagree(self, contribution_id: int, citizen_id: int, now: datetime) -> bool:
        """Record the disagreement; False if it was already there (the unique constraint
        decides, also between concurrent requests)."""
        return (
            self.db.insert_ignore(
                self.s,
                Disagreement,
                contribution_id=contribution_id,
                citizen_id=citizen_id,
                created_at=now,
            )
            is not None
        )

    def withdraw(self, contribution_id: int, citizen_id: int) -> bool:
        result = self.s.connection().execute(
            delete(Disagreement)
            .where(
                col(Disagreement.contribution_id) == contribution_id,
                col(Disagreement.citizen_id) == citizen_id,
            )
            .returning(col(Disagreement.id))
        )
        return result.first() is not None

    def disagrees(self, contribution_id: int, citizen_id: int) -> bool:
        return (
            self.s.execute(
                select(col(Disagreement.id)).where(
                    col(Disagreement.contribution_id) == contribution_id,
                    col(Disagreement.citizen_id) == citizen_id,
                )
            ).first()
            is not None
        )

    def disagreements(self, contribution_id: int) -> int:
        """How many citizens disagree (a count: never who)."""
        return int(
            self.s.execute(
                select(func.count()).where(col(Disagreement.contribution_id) == contribution_id)
            ).scalar_one()
        )


def _mine(
    model: type[Seen] | type[Support] | type[Disagreement] | type[SortDealt], citizen_id: int
) -> ColumnElement[bool]:
    """The citizen has a ``model`` row for the idea (correlated to ``contribution``)."""
    return (
        select(literal(1))
        .select_from(model)
        .where(
            col(model.contribution_id) == col(Contribution.id),
            col(model.citizen_id) == citizen_id,
        )
        .correlate(Contribution)
        .exists()
    )


def _unsorted(consultation_id: int, citizen_id: int) -> list[ColumnElement[bool]]:
    """Published ideas of the consultation, not the citizen's, not dealt to them yet, not voted
    on (supported or disagreed with) by them."""
    return [
        col(Contribution.consultation_id) == consultation_id,
        col(Contribution.status) == PUBLISHED,
        col(Contribution.citizen_id) != citizen_id,
        ~_mine(SortDealt, citizen_id),
        ~_mine(Support, citizen_id),
        ~_mine(Disagreement, citizen_id),
    ]


def _expanding(name: str) -> BindParameter[object]:
    return bindparam(name, expanding=True)


def rank_similar(draft: str, candidates: Sequence[tuple[int, str]]) -> list[int]:
    """Keep the candidates containing at least two of the draft's words (one if the draft has
    one word), in any of their forms (storage.text_index.Forms), ordered by shared words /
    sqrt(words of each), the database's order breaking ties."""
    stemmer = text_index.Stemmer()
    mine = [stemmer.forms(w) for w in text_index.query_words(draft)]
    if not mine:
        return []
    needed = min(2, len(mine))
    scored: list[tuple[float, int, int]] = []
    for position, (cid, body) in enumerate(candidates):
        theirs = {text_index.fold(w) for w in text_index.words(body)}
        if not theirs:
            continue
        shared = sum(1 for forms in mine if forms.found_in(theirs))
        if shared < needed:
            continue
        scored.append((-shared / math.sqrt(len(mine) * len(theirs)), position, cid))
    scored.sort()
    return [cid for _score, _position, cid in scored]
