"""Running totals of each consultation's public statistics, kept by database triggers.

``/stats`` used to recount every support, comment and contribution (0.55 s at 1M supports, on
the only database thread). The counters are now maintained by triggers on ``contribution``,
``support``, ``comment`` and ``visit`` (migration ``0011_counters``), in the same transaction as
the change, whatever code path makes it (a support, a withdrawal, moderation hiding or restoring
an idea, an erasure deleting a citizen's rows, a raw SQL fix):

- ``stat_participant``: per (consultation, citizen), how many things make them a participant
  (published contributions, supports on published contributions, published comments on
  published contributions); "participants" counts the rows above zero, so a citizen crossing
  zero moves the participants counter.
- ``stat_counter``: one row of totals per consultation.
- ``stat_delta``: PostgreSQL only. Several workers incrementing one totals row would queue
  behind its row lock until each commit; the triggers append a delta row instead (no lock),
  and ``StatsRepo.fold_counters`` folds the deltas into the totals now and then. A read sums
  the totals and the deltas not folded yet, in one statement (one snapshot), so it is exact at
  any moment.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer
from sqlmodel import Field, SQLModel


def _count() -> Column:
    return Column(BigInteger(), nullable=False)


class StatCounter(SQLModel, table=True):
    __tablename__ = "stat_counter"
    consultation_id: int = Field(
        sa_column=Column(Integer(), primary_key=True, autoincrement=False)
    )
    participants: int = Field(default=0, sa_column=_count())
    contributions: int = Field(default=0, sa_column=_count())
    supports: int = Field(default=0, sa_column=_count())
    visitors: int = Field(default=0, sa_column=_count())
    comments: int = Field(default=0, sa_column=_count())


class StatDelta(SQLModel, table=True):
    __tablename__ = "stat_delta"
    __table_args__ = (Index("ix_stat_delta_consultation", "consultation_id"),)
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    consultation_id: int
    participants: int = Field(default=0, sa_column=_count())
    contributions: int = Field(default=0, sa_column=_count())
    supports: int = Field(default=0, sa_column=_count())
    visitors: int = Field(default=0, sa_column=_count())
    comments: int = Field(default=0, sa_column=_count())


class StatParticipant(SQLModel, table=True):
    __tablename__ = "stat_participant"
    consultation_id: int = Field(
        sa_column=Column(Integer(), primary_key=True, autoincrement=False)
    )
    citizen_id: int = Field(sa_column=Column(Integer(), primary_key=True, autoincrement=False))
    weight: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))
