"""Engine creation, migrations and transactions.

SQLite: WAL, foreign keys on, ``busy_timeout``, and ``BEGIN IMMEDIATE`` for every transaction so
concurrent writers queue instead of failing with "database is locked". PostgreSQL: psycopg 3.
The schema is always built by the Alembic migrations (never ``create_all``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

from storage.prepared import Prepared

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    """Aware UTC: every timestamp column is sqlmodel's UTCDateTime (aware in, aware UTC out)."""
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Database:
    def __init__(
        self, url: str, *, echo: bool = False, synchronous: str = "FULL", read_only: bool = False
    ) -> None:
        """``read_only``: nothing can be written (SQLite opened with ``mode=ro``, PostgreSQL
        transactions read-only), for the commands that only read (``parlons consultation
        list``...): they work on a read-only file and never migrate."""
        self.url = normalise_url(url)
        self.read_only = read_only
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            path = parsed.database
            if path and path != ":memory:" and not read_only:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if read_only and path and path != ":memory:":
                uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
                kwargs["creator"] = lambda: sqlite3.connect(
                    uri, uri=True, check_same_thread=False, timeout=30
                )
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
            if read_only:
                kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
        self.engine: Engine = create_engine(self.url, **kwargs)
        self._insert_ignore: dict[tuple[type[SQLModel], tuple[str, ...]], Prepared] = {}
        if self.is_sqlite:
            _configure_sqlite(self.engine, synchronous, read_only=read_only)

    # ------------------------------------------------------------------ schema

    def alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["engine"] = self.engine
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        command.upgrade(self.alembic_config(), revision)

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on any exception."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def insert_ignore(self, session: Session, model: type[SQLModel], **values: Any) -> Any:
        """INSERT … ON CONFLICT DO NOTHING: the new row's primary key (truthy), or None if a
        row with the same unique key was already there."""
        key = (model, tuple(sorted(values)))
        prepared = self._insert_ignore.get(key)
        if prepared is None:
            table = model.__table__  # type: ignore[attr-defined]
            first_column = next(iter(table.primary_key.columns))
            # RETURNING, not rowcount: psycopg reports -1 for a conflicting single-row insert.
            prepared = self._insert_ignore[key] = Prepared(
                (pg_insert if not self.is_sqlite else sqlite_insert)(table)
                .on_conflict_do_nothing()
                .returning(first_column),
                columns=key[1],
            )
        # Built once, run on the unit of work's connection (see storage.prepared).
        return prepared.scalar(session, values)


def _configure_sqlite(engine: Engine, synchronous: str, *, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions are deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not read_only:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
