"""The kind of each chat the bot is in (private or group), kept durably.

Telegram tells a chat's type with every update; Matrix does not: a room's kind follows from its
membership (a non-public room with the bot and one other member is private, anything else is a
group), which the homeserver only reports when it changes. The Matrix adapter records what it
learned here, in the same transaction as the sync batch that revealed it, and reads it back at
start, so a room stays a room after a restart. A chat with no row is treated as a group.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class ChatKind(SQLModel, table=True):
    __tablename__ = "chat_kind"
    platform: str = Field(primary_key=True, max_length=16)
    chat_id: str = Field(primary_key=True, max_length=255)
    # private | group (bot.messages.ChatType values)
    kind: str = Field(max_length=16)
    # Joined plus invited members (the bot included) when the kind was decided, if known.
    members: int | None = None
    updated_at: datetime
