"""Reading thousands of ideas (issue 15): disagreements recorded by sorting, and the lexical
index of the ideas' texts used by similar ideas and search.

A disagreement is personal data (who disagrees with what): one per citizen and idea, withdrawn
by deleting it; erased with the citizen by ``/forget`` (bot.privacy erases every row with a
``citizen_id`` that is not kept for statistics) and listed by ``/mydata``. Only counts are ever
shown.

The text index is not a model: on PostgreSQL it is a GIN index on the ideas' French and English
``tsvector`` (an expression index on ``contribution``); on SQLite it is the external-content
FTS5 table ``idea_fts`` over ``contribution.text``, kept in sync by triggers. Both are created by
migration 0010_legible. ``UNMANAGED_TABLES`` names the SQLite tables FTS5 creates, which the
models do not describe; ``UNMANAGED_NAMES`` adds the PostgreSQL index.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

FTS_TABLE = "idea_fts"
# The FTS5 virtual table and its shadow tables (SQLite only).
UNMANAGED_TABLES = frozenset(
    {FTS_TABLE, *(f"{FTS_TABLE}_{s}" for s in ("data", "idx", "content", "docsize", "config"))}
)
# The PostgreSQL expression index (the models cannot declare it portably).
PG_TEXT_INDEX = "ix_contribution_text_search"
UNMANAGED_NAMES = UNMANAGED_TABLES | {PG_TEXT_INDEX}


class Disagreement(SQLModel, table=True):
    """A citizen disagrees with an idea (👎 while sorting); never shown as a list of names."""

    __table_args__ = (UniqueConstraint("contribution_id", "citizen_id"),)
    id: int | None = Field(default=None, primary_key=True)
    contribution_id: int = Field(foreign_key="contribution.id", index=True)
    citizen_id: int = Field(foreign_key="citizen.id", index=True)
    created_at: datetime


class SortDealt(SQLModel, table=True):
    """An idea dealt to a citizen by ``/sort`` (whatever they answered, passing included): it
    is not dealt to them again. Personal data, erased with the citizen."""

    __tablename__ = "sort_dealt"
    __table_args__ = (UniqueConstraint("citizen_id", "contribution_id"),)
    id: int | None = Field(default=None, primary_key=True)
    citizen_id: int = Field(foreign_key="citizen.id")
    contribution_id: int = Field(foreign_key="contribution.id", index=True)
    created_at: datetime
