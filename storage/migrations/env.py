"""Alembic environment: runs against the engine handed over by ``storage.db.Database``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.models_legible import UNMANAGED_NAMES

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    engine = config.attributes.get("engine") or create_engine(
        config.get_main_option("sqlalchemy.url") or ""
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            # The ideas' text index is made by migration 0010_legible, not by the models.
            include_name=lambda name, _type, _p: name not in UNMANAGED_NAMES,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit(
        "Offline (SQL script) migrations are not supported; run `parlons db upgrade`."
    )
run_migrations()
