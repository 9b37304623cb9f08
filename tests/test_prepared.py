"""storage.prepared on SQLite and PostgreSQL: a prepared statement returns what SQLAlchemy's
``Connection.execute`` returns, fills defaults as it does, raises its errors, runs inside the
session's transaction, and ``persistent`` gives the ORM's own objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from storage.db import Database
from storage.models import Citizen, Dialogue, InboxEvent, OutboxMessage
from storage.prepared import Prepared, PreparedError, persistent

NOW = datetime(2019, 8, 19, 8, 0, tzinfo=UTC)

_INSERT_INBOX = Prepared(
    insert(InboxEvent).returning(col(InboxEvent.id)),
    columns=("platform", "event_key", "event", "received_at"),
)
_INBOX_ROW = Prepared(select(InboxEvent).where(col(InboxEvent.id) == bindparam("id")))
_MARK = Prepared(
    update(OutboxMessage)
    .where(col(OutboxMessage.id) == bindparam("oid"))
    .values(status=bindparam("st"), attempts=OutboxMessage.attempts + 1)
)
_CITIZEN = Prepared(select(Citizen).where(col(Citizen.platform_user_id) == bindparam("user")))


@pytest.fixture
def db(db_url: str):  # type: ignore[no-untyped-def]
    database = Database(db_url)
    yield database
    database.dispose()


def _citizen(db: Database, user: str) -> int:
    with db.session() as s:
        return db.insert_ignore(
            s,
            Citizen,
            platform="test",
            platform_user_id=user,
            pseudonym=f"p-{user}",
            reachable=True,
            created_at=NOW,
            last_seen_at=NOW,
        )


def test_rows_are_what_sqlalchemy_returns(db: Database) -> None:
    payload = {"kind": "text", "text": "Énergie « locale » 👍", "n": [1, 2]}
    with db.session() as s:
        inbox_id = _INSERT_INBOX.scalar(
            s, {"platform": "t", "event_key": "e1", "event": payload, "received_at": NOW}
        )
        assert isinstance(inbox_id, int)
        ours = _INBOX_ROW.first(s, {"id": inbox_id})
        theirs = s.connection().execute(select(InboxEvent).where(col(InboxEvent.id) == inbox_id))
        assert ours == tuple(theirs.one())
    assert ours is not None
    # JSON decoded, aware UTC datetimes, the column default filled in ("pending").
    assert ours[4] == payload
    assert ours[5] == NOW and ours[5].tzinfo is not None
    assert ours[3] == "pending"


def test_literal_values_and_executemany(db: Database) -> None:
    with db.session() as s:
        ids = [
            s.connection()
            .execute(
                insert(OutboxMessage).returning(col(OutboxMessage.id)),
                {"platform": "t", "chat_id": str(n), "message": {}, "created_at": NOW},
            )
            .scalar_one()
            for n in range(3)
        ]
        _MARK.run_many(s, [{"oid": i, "st": "sent"} for i in ids[:2]])
        assert _MARK.run(s, {"oid": ids[0], "st": "sent"}) == 1
    with db.session() as s:
        rows = s.connection().execute(
            select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.attempts).order_by(
                col(OutboxMessage.id)
            )
        )
        assert [tuple(r) for r in rows] == [
            (ids[0], "sent", 2),
            (ids[1], "sent", 1),
            (ids[2], "pending", 0),
        ]


def test_runs_in_the_sessions_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        _INSERT_INBOX.scalar(
            s, {"platform": "t", "event_key": "gone", "event": {}, "received_at": NOW}
        )
        raise RuntimeError("roll back")
    with db.session() as s:
        # A new transaction: the statement finds its new connection, and nothing was kept.
        assert _INSERT_INBOX.scalar(
            s, {"platform": "t", "event_key": "gone", "event": {}, "received_at": NOW}
        )
        assert s.connection().execute(select(InboxEvent.event_key)).scalars().all() == ["gone"]


def test_driver_errors_are_sqlalchemy_errors(db: Database) -> None:
    params = {"platform": "t", "event_key": "twice", "event": {}, "received_at": NOW}
    with pytest.raises(IntegrityError), db.session() as s:
        _INSERT_INBOX.scalar(s, params)
        _INSERT_INBOX.scalar(s, params)


def test_missing_parameters_and_unsupported_statements_are_refused(db: Database) -> None:
    with db.session() as s:
        with pytest.raises(PreparedError, match="received_at"):
            _INSERT_INBOX.scalar(s, {"platform": "t", "event_key": "x", "event": {}})
        expanding = Prepared(
            select(InboxEvent.id).where(col(InboxEvent.id).in_(bindparam("ids", expanding=True)))
        )
        with pytest.raises(PreparedError, match="expanding"):
            expanding.rows(s, {"ids": [1, 2]})


def test_persistent_objects_are_the_orms(db: Database) -> None:
    _citizen(db, "alice")
    with db.session() as s:
        alice = persistent(s, Citizen, _CITIZEN.first(s, {"user": "alice"}))
        assert alice is not None
        assert not s.dirty and alice in s
        # The identity map's object is authoritative (it may hold unflushed changes).
        alice.locale = "en"
        again = persistent(s, Citizen, _CITIZEN.first(s, {"user": "alice"}))
        assert again is alice and again.locale == "en"
        assert s.get(Citizen, alice.id) is alice
        assert persistent(s, Citizen, _CITIZEN.first(s, {"user": "nobody"})) is None
    with db.session() as s:
        reread = s.exec(select(Citizen).where(col(Citizen.platform_user_id) == "alice")).one()
        assert reread[0].locale == "en"  # the change was flushed as an UPDATE
        assert reread[0].last_seen_at == NOW


def test_persistent_objects_flush_nothing_when_untouched(db: Database) -> None:
    _citizen(db, "bob")
    later = NOW + timedelta(days=1)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with db.session() as s:
        bob = persistent(s, Citizen, _CITIZEN.first(s, {"user": "bob"}))
        assert bob is not None
        s.flush()
        assert not any(q.lstrip().upper().startswith("UPDATE") for q in statements)
        bob.last_seen_at = later
    with db.session() as s:
        row = s.get(Citizen, bob.id)
        assert row is not None and row.last_seen_at == later


def test_a_dialogue_loaded_twice_in_one_unit_of_work_is_one_object(db: Database) -> None:
    from storage.repositories import Repos

    with db.session() as s:
        repos = Repos(db, s)
        first = repos.dialogues.load("t", "chat", "user", NOW)
        first.state = "answering"
        second = repos.dialogues.load("t", "chat", "user", NOW)
        assert second is first
    with db.session() as s:
        row = s.exec(select(Dialogue)).one()[0]
        assert row.state == "answering"


def test_statements_autoflush_pending_orm_changes(db: Database) -> None:
    """Like Session.execute: a citizen added (or changed) through the ORM and not flushed yet
    is seen by a prepared statement in the same unit of work."""
    read = Prepared(select(Citizen.display_name).where(col(Citizen.platform_user_id) == "af"))
    with db.session() as s:
        citizen = Citizen(
            platform="t", platform_user_id="af", display_name="Before", pseudonym="p-af",
            created_at=NOW, last_seen_at=NOW,
        )  # fmt: skip
        s.add(citizen)
        assert read.scalar(s) == "Before"
        citizen.display_name = "After"
        assert read.scalar(s) == "After"
