"""Official answers, merged duplicates and cached opinion groups (issue 15, second half).

- ``official_answer``: a moderator's answer to an idea (accepted / under study / rejected and a
  text), one per idea, replaced when answered again. Who answered is in the audit log, not here:
  these tables hold no personal data.
- ``idea_merge``: an idea merged into another one (its supports and comments moved there); the
  merged idea keeps the status ``merged`` and points to its target.
- ``opinion_groups``: the last opinion groups computed for a consultation, with the fingerprint
  of the votes they were computed from; ``status`` is ``computing`` while a worker computes
  them off the event path.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

ANSWER_STATUSES = ("accepted", "study", "rejected")


class OfficialAnswer(SQLModel, table=True):
    __tablename__ = "official_answer"
    contribution_id: int = Field(primary_key=True, foreign_key="contribution.id")
    consultation_id: int = Field(foreign_key="consultation.id", index=True)
    status: str = Field(max_length=16)  # accepted | study | rejected
    text: str
    created_at: datetime
    updated_at: datetime


class IdeaMerge(SQLModel, table=True):
    __tablename__ = "idea_merge"
    contribution_id: int = Field(primary_key=True, foreign_key="contribution.id")
    into_id: int = Field(foreign_key="contribution.id", index=True)
    consultation_id: int = Field(foreign_key="consultation.id", index=True)
    created_at: datetime


class OpinionGroups(SQLModel, table=True):
    __tablename__ = "opinion_groups"
    consultation_id: int = Field(primary_key=True, foreign_key="consultation.id")
    fingerprint: str = Field(max_length=64)
    status: str = Field(max_length=16)  # computing | done
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    requested_at: datetime
    computed_at: datetime | None = None
