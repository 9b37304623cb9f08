"""Shared fixtures: databases (SQLite and PostgreSQL, each test its own), the app, chats."""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from bot.app import App, build_app
from bot.settings import Settings
from storage.db import Database
from tests.support.harness import Chat, FakeClock

pytest_plugins = ["tests.support.matrix_fixtures", "tests.support.moderation"]

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "consultations" / "ville-intelligente.yaml"
PG_ADMIN_DSN = os.environ.get("PARLONS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# Inside the seed consultation: 12 days before it closed.
OPEN_TIME = datetime.fromisoformat("2019-08-19T10:00:00+02:00")


def _pg_database(template: str | None = None) -> str:
    name = f"parlons_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _pg_drop(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_url(name: str) -> str:
    return f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database built once by the migrations, copied for each test."""
    name = _pg_database()
    db = Database(_pg_url(name))
    db.upgrade()
    db.dispose()
    yield name
    _pg_drop(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file built once by the migrations, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "parlons.sqlite3"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    with sqlite3.connect(path) as conn:  # fold the WAL into the file before copying it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A PostgreSQL database of its own for this test (migrated), dropped afterwards."""
    name = _pg_database(template=pg_template)
    try:
        yield _pg_url(name)
    finally:
        _pg_drop(name)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A SQLite file of its own for this test (migrated)."""
    path = tmp_path / "parlons.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database (for migration tests)."""
    name = _pg_database()
    try:
        yield _pg_url(name)
    finally:
        _pg_drop(name)


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    name = "empty_sqlite_url" if request.param == "sqlite" else "empty_pg_url"
    return str(request.getfixturevalue(name))


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
