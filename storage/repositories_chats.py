"""Queries of ``storage.models_chats`` (chat kinds). They run inside the caller's unit of work
and never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from storage.models_chats import ChatKind
from storage.models_scheduler import PrivateChat


class ChatKindRepo:
    def __init__(self, session: Session) -> None:
        self.s = session

    def all(self, platform: str) -> dict[str, str]:
        rows = self.s.exec(
            select(ChatKind.chat_id, ChatKind.kind).where(ChatKind.platform == platform)
        ).all()
        return {chat_id: kind for chat_id, kind in rows}

    def get(self, platform: str, chat_id: str) -> str | None:
        row = self.s.get(ChatKind, (platform, chat_id))
        return row.kind if row is not None else None

    def set(
        self, platform: str, chat_id: str, kind: str, members: int | None, now: datetime
    ) -> None:
        row = self.s.get(ChatKind, (platform, chat_id))
        if row is None:
            row = ChatKind(platform=platform, chat_id=chat_id, kind=kind, updated_at=now)
        row.kind, row.members, row.updated_at = kind, members, now
        self.s.add(row)
        if kind == "group":
            # A chat that became a group (a third member joined a DM) is nobody's private
            # chat any more: reminders and results must not be posted there.
            self.s.execute(
                delete(PrivateChat).where(
                    col(PrivateChat.platform) == platform, col(PrivateChat.chat_id) == chat_id
                )
            )

    def forget(self, platform: str, chat_id: str) -> None:
        self.s.execute(
            delete(ChatKind).where(
                col(ChatKind.platform) == platform, col(ChatKind.chat_id) == chat_id
            )
        )
