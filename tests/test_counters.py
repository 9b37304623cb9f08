"""/stats reads counters kept by database triggers: after any mix of operations (supports,
withdrawals, hiding and restoring, comments, visits, erasures, rows moved to another citizen),
on both databases, the counters equal a full recount; with concurrent workers too."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from storage.db import Database
from storage.models import (
    Citizen,
    Comment,
    Consultation,
    Contribution,
    Question,
    Support,
    Visit,
)
from storage.models_counters import StatDelta
from storage.repositories import Repos

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CITIZENS = 6
STATUSES = ("published", "pending", "hidden", "withdrawn")


def _setup(db: Database) -> tuple[list[int], list[int], list[int]]:
    """Two consultations with a question each, and a few citizens."""
    with db.session() as s:
        consultations, questions, citizens = [], [], []
        for i in range(2):
            c = Consultation(
                slug=f"c{i}",
                opens_at=NOW,
                closes_at=NOW,
                timezone="UTC",
                document={},
                created_at=NOW,
                updated_at=NOW,
            )
            s.add(c)
            s.flush()
            q = Question(consultation_id=c.id, key="q", position=0)
            s.add(q)
            s.flush()
            consultations.append(c.id)
            questions.append(q.id)
        for i in range(CITIZENS):
            z = Citizen(
                platform="t",
                platform_user_id=str(i),
                pseudonym=f"p{i}",
                created_at=NOW,
                last_seen_at=NOW,
            )
            s.add(z)
            s.flush()
            citizens.append(z.id)
    return consultations, questions, citizens  # type: ignore[return-value]


def _check(db: Database, consultations: list[int], fold: bool = False) -> None:
    with db.session() as s:
        repos = Repos(db, s)
        if fold:
            repos.stats.fold_counters()
        for cid in consultations:
            assert repos.stats.counters(cid) == repos.stats.recount(cid), cid


def _pick(s: Session, model: type, n: int) -> object | None:
    rows = s.exec(select(model).order_by(model.id)).all()  # type: ignore[attr-defined]
    return rows[n % len(rows)] if rows else None


def _apply(db: Database, op: tuple, world: tuple[list[int], list[int], list[int]]) -> None:
    consultations, questions, citizens = world
    kind, a, b, c = op
    who = citizens[a % len(citizens)]
    with db.session() as s:
        if kind == "contribute":
            k = b % 2
            s.add(
                Contribution(
                    consultation_id=consultations[k],
                    question_id=questions[k],
                    citizen_id=who,
                    text="idea",
                    status=STATUSES[c % 2],  # published or pending
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
        elif kind == "moderate":  # publish, hide, restore, withdraw
            row = _pick(s, Contribution, b)
            if row is not None:
                s.add(row)
                row.status = STATUSES[c % len(STATUSES)]  # type: ignore[attr-defined]
        elif kind == "support":
            row = _pick(s, Contribution, b)
            if row is not None:
                db.insert_ignore(
                    s,
                    Support,
                    contribution_id=row.id,
                    citizen_id=who,
                    created_at=NOW,  # type: ignore[attr-defined]
                )
        elif kind == "withdraw":
            row = _pick(s, Support, b)
            if row is not None:
                s.execute(delete(Support).where(Support.id == row.id))  # type: ignore[arg-type,attr-defined]
        elif kind == "comment":
            row = _pick(s, Contribution, b)
            if row is not None:
                s.add(
                    Comment(
                        contribution_id=row.id,  # type: ignore[attr-defined]
                        citizen_id=who,
                        text="c",
                        status="published" if c % 3 else "hidden",
                        created_at=NOW,
                    )
                )
        elif kind == "moderate_comment":
            row = _pick(s, Comment, b)
            if row is not None:
                s.add(row)
                row.status = ("published", "hidden", "withdrawn")[c % 3]  # type: ignore[attr-defined]
        elif kind == "visit":
            db.insert_ignore(
                s,
                Visit,
                consultation_id=consultations[b % 2],
                citizen_id=who,
                source=None,
                created_at=NOW,
            )
        elif kind == "move":  # rows handed to another citizen (as a merge or an erasure may)
            other = citizens[b % len(citizens)]
            if (
                other != who
                and not s.exec(
                    select(func.count()).select_from(Support).where(Support.citizen_id == other)
                ).one()
            ):
                s.execute(
                    update(Support).where(Support.citizen_id == who).values(citizen_id=other)
                )  # type: ignore[arg-type]
            s.execute(update(Comment).where(Comment.citizen_id == who).values(citizen_id=other))  # type: ignore[arg-type]
            s.execute(
                update(Contribution)
                .where(Contribution.citizen_id == who)  # type: ignore[arg-type]
                .values(citizen_id=other)
            )
        elif kind == "erase":  # a citizen's supports, comments, visits and ideas deleted
            mine = select(Contribution.id).where(Contribution.citizen_id == who)
            for model, column in ((Support, Support.citizen_id), (Comment, Comment.citizen_id)):
                s.execute(delete(model).where(column == who))  # type: ignore[arg-type]
                s.execute(delete(model).where(model.contribution_id.in_(mine)))  # type: ignore[attr-defined]
            s.execute(delete(Visit).where(Visit.citizen_id == who))  # type: ignore[arg-type]
            s.execute(delete(Contribution).where(Contribution.citizen_id == who))  # type: ignore[arg-type]


KINDS = (
    ["contribute"] * 2
    + ["moderate"]
    + ["support"] * 3
    + ["withdraw", "comment", "moderate_comment", "visit", "move", "erase"]
)


def test_counters_equal_a_recount_after_any_mix_of_operations(db_url):
    """Random operations (seeded: a failure replays), checked against a recount after each
    one; on PostgreSQL the deltas are folded at random moments."""
    db = Database(db_url)
    world = _setup(db)
    rng = random.Random(20261205)
    for i in range(250):
        op = (rng.choice(KINDS), rng.randrange(50), rng.randrange(50), rng.randrange(50))
        _apply(db, op, world)
        _check(db, world[0], fold=rng.random() < 0.2)
        if i % 60 == 59:  # start again from nothing now and then: erase everyone
            for who in range(CITIZENS):
                _apply(db, ("erase", who, 0, 0), world)
            _check(db, world[0])
    db.dispose()


def test_counters_need_no_recount_and_deltas_fold(db_url):
    """The read is one statement over the counter tables (no recount of supports); on
    PostgreSQL the triggers append deltas, folded into the totals without changing a figure."""
    db = Database(db_url)
    consultations, questions, citizens = _setup(db)
    with db.session() as s:
        idea = Contribution(
            consultation_id=consultations[0],
            question_id=questions[0],
            citizen_id=citizens[0],
            text="idea",
            status="published",
            created_at=NOW,
            updated_at=NOW,
        )
        s.add(idea)
        s.flush()
        for z in citizens[1:]:
            db.insert_ignore(s, Support, contribution_id=idea.id, citizen_id=z, created_at=NOW)
    with db.session() as s:
        repos = Repos(db, s)
        before = repos.stats.counters(consultations[0])
        assert (before.participants, before.contributions, before.supports) == (CITIZENS, 1, 5)
        deltas = s.exec(select(func.count()).select_from(StatDelta)).one()
        assert deltas == (0 if db.is_sqlite else 6)  # one row per change: 1 idea, 5 supports
        folded = repos.stats.fold_counters()
        assert folded == (0 if db.is_sqlite else deltas)
    with db.session() as s:
        repos = Repos(db, s)
        assert s.exec(select(func.count()).select_from(StatDelta)).one() == 0
        assert repos.stats.counters(consultations[0]) == before
        # Hiding the idea takes its supports and its supporters out of the figures.
        s.execute(update(Contribution).values(status="hidden"))
        hidden = repos.stats.counters(consultations[0])
        assert (hidden.participants, hidden.contributions, hidden.supports) == (0, 0, 0)
    db.dispose()


@pytest.mark.postgres
def test_concurrent_supports_and_moderation_keep_counters_exact(pg_url):
    """Two workers: one records supports while the other hides and restores the same idea
    (the support trigger locks the idea FOR SHARE, so each support is counted on one side of
    every hide)."""
    db = Database(pg_url)
    consultations, questions, _ = _setup(db)
    with db.session() as s:
        idea = Contribution(
            consultation_id=consultations[0],
            question_id=questions[0],
            citizen_id=1,
            text="idea",
            status="published",
            created_at=NOW,
            updated_at=NOW,
        )
        s.add(idea)
        s.flush()
        idea_id = idea.id
        people = []
        for i in range(200):
            z = Citizen(
                platform="t",
                platform_user_id=f"x{i}",
                pseudonym=f"x{i}",
                created_at=NOW,
                last_seen_at=NOW,
            )
            s.add(z)
            s.flush()
            people.append(z.id)
    errors: list[BaseException] = []

    def supporters() -> None:
        try:
            for z in people:
                with db.session() as s:
                    db.insert_ignore(
                        s, Support, contribution_id=idea_id, citizen_id=z, created_at=NOW
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def moderator() -> None:
        try:
            for i in range(100):
                with db.session() as s:
                    s.execute(
                        update(Contribution)
                        .where(Contribution.id == idea_id)  # type: ignore[arg-type]
                        .values(status="hidden" if i % 2 == 0 else "published")
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=supporters), threading.Thread(target=moderator)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _check(db, consultations)
    _check(db, consultations, fold=True)
    with db.session() as s:
        assert Repos(db, s).stats.counters(consultations[0]).supports == 200
    db.dispose()
