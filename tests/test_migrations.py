"""The schema is built by the Alembic migrations, and the migrated schema matches the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.db import Database
from storage.models_legible import UNMANAGED_NAMES, UNMANAGED_TABLES


def _managed(name, type_, _parents):
    """The ideas' text index (SQLite's FTS5 tables, PostgreSQL's expression index, see
    storage.models_legible) is created by the migration, not described by the models."""
    return name not in UNMANAGED_NAMES


def test_migrated_schema_matches_the_models(empty_db_url):
    db = Database(empty_db_url)
    db.upgrade()
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": _managed}
        )
        diff = compare_metadata(ctx, SQLModel.metadata)
    db.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_every_model_table_is_created_by_migrations(empty_db_url):
    db = Database(empty_db_url)
    db.upgrade()
    tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"} - UNMANAGED_TABLES
    db.dispose()
    assert tables == set(SQLModel.metadata.tables)


def test_migrations_are_reversible(empty_sqlite_url):
    db = Database(empty_sqlite_url)
    db.upgrade()
    script = ScriptDirectory.from_config(db.alembic_config())
    from alembic import command

    command.downgrade(db.alembic_config(), "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.upgrade()
    assert script.get_heads()
    db.dispose()


def test_one_head():
    """One history: a branch left open would make ``upgrade head`` ambiguous."""
    db = Database("sqlite://")
    script = ScriptDirectory.from_config(db.alembic_config())
    db.dispose()
    assert len(script.get_heads()) == 1, script.get_heads()


def test_downgrade_and_upgrade_again_on_both_databases(empty_db_url):
    from alembic import command

    db = Database(empty_db_url)
    db.upgrade()
    command.downgrade(db.alembic_config(), "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    db.upgrade()
    assert set(inspect(db.engine).get_table_names()) - {
        "alembic_version",
        *UNMANAGED_TABLES,
    } == set(SQLModel.metadata.tables)
    db.dispose()
