"""Tables of the delivery runtime (``bot.delivery``).

The outbox's claim columns (``claimed_by``, ``lease_until``) live on ``OutboxMessage`` itself;
this module holds the pace shared by every worker of one bot account: one row per account whose
``next_at`` is the next free send slot (Unix seconds). A worker takes a batch of slots with one
``UPDATE … RETURNING``, so replies and broadcasts of all workers share one rate.
"""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class SendPace(SQLModel, table=True):
    __tablename__ = "send_pace"
    account: str = Field(primary_key=True, max_length=128)
    next_at: float = 0.0
