"""Shared fixtures: databases (SQLite and PostgreSQL, each test its own), the app, chats."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from bot.app import App, build_app
from bot.settings import Settings
from tests.support.harness import Chat, FakeClock

pytest_plugins = ["tests.support.matrix_fixtures", "tests.support.moderation"]

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "consultations" / "ville-intelligente.yaml"
PG_ADMIN_DSN = os.environ.get("PARLONS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# Inside the seed consultation: 12 days before it closed.
OPEN_TIME = datetime.fromisoformat("2019-08-19T10:00:00+02:00")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    name = f"parlons_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'parlons.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(OPEN_TIME)


def make_app(url: str, clock: FakeClock, **settings: object) -> App:
    app = build_app(Settings(database_url=url, **settings), clock=clock)  # type: ignore[arg-type]
    app.import_consultation(SEED)
    return app


@pytest.fixture
def app(sqlite_url: str, clock: FakeClock) -> Iterator[App]:
    application = make_app(sqlite_url, clock)
    yield application
    application.close()


@pytest.fixture
def any_app(db_url: str, clock: FakeClock) -> Iterator[App]:
    """The app on SQLite and on PostgreSQL."""
    application = make_app(db_url, clock)
    yield application
    application.close()


@pytest.fixture
def chat(app: App) -> Callable[..., Chat]:
    def factory(user: str = "alice", **kw: object) -> Chat:
        return Chat(app.engine, user=user, **kw)  # type: ignore[arg-type]

    return factory
