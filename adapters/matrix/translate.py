"""Matrix room events (raw dicts, as the homeserver sent them or as nio decrypted them) →
portable inbound events. Pure functions: no network, no database.

What becomes what:

- ``m.room.message`` ``m.text`` / ``m.emote`` → a command (``/name`` or ``!name``, optionally
  after a mention of the bot) or a ``TextMessage``; a Matrix reply carries ``reply_to`` and
  its quoted fallback (``> <@user> …`` lines) is stripped.
- ``m.reaction`` (an annotation) → ``ReactionAdded``; redacting it → ``ReactionAdded(removed)``
  (the caller resolves which reaction a redaction removes).
- images, files, audio, video, locations, stickers, polls → ``Unsupported`` (in private chats
  only: in group rooms they are none of the bot's business); edits (``m.replace``) →
  ``Unsupported("edit")``.
- ``m.notice`` (other bots), the bot's own events, state events and anything else → ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.messages import (
    ChatType,
    CommandMessage,
    EventContext,
    InboundEvent,
    MessageRef,
    Payload,
    ReactionAdded,
    TextMessage,
    Unsupported,
    parse_command,
)

PLATFORM = "matrix"

_UNSUPPORTED_MSGTYPES = {
    "m.image": "image",
    "m.file": "file",
    "m.audio": "audio",
    "m.video": "video",
    "m.location": "location",
}
_UNSUPPORTED_TYPES = {
    "m.sticker": "sticker",
    "m.poll.start": "poll",
    "org.matrix.msc3381.poll.start": "poll",
}
_BANG_COMMAND = re.compile(r"^![A-Za-z]")


@dataclass(frozen=True, slots=True)
class Room:
    """What the translation needs to know about the room an event comes from."""

    room_id: str
    chat_type: ChatType = ChatType.PRIVATE
    # Display names by user id (from the room's member events), when known.
    names: Callable[[str], str | None] = lambda _user: None


@dataclass(frozen=True, slots=True)
class Bot:
    user_id: str
    display_name: str | None = None

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


def strip_reply_fallback(body: str) -> str:
    """Drop the quoted original that clients put in front of a reply's body
    (``> <@alice:example.org> the original\\n> more\\n\\nthe reply``)."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith(">"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and lines[index] == "":
        index += 1
    return "\n".join(lines[index:])


def strip_mention(text: str, bot: Bot) -> str:
    """``Parlons: /start`` or ``@parlons:example.org /start`` → ``/start`` (a mention pill)."""
    stripped = text.lstrip()
    for name in (bot.user_id, bot.display_name, bot.localpart):
        if not name:
            continue
        if stripped.lower().startswith(name.lower()):
            rest = stripped[len(name) :]
            if rest[:1] in (":", ",", " ") or rest == "":
                return rest.lstrip(":, ").lstrip()
    return text


def parse_text(text: str, bot: Bot) -> CommandMessage | None:
    """A command typed as ``/name`` or, because Element intercepts unknown slash commands,
    ``!name``; optionally addressed to the bot with a mention."""
    candidate = strip_mention(text, bot).strip()
    if _BANG_COMMAND.match(candidate):
        candidate = "/" + candidate[1:]
    return parse_command(candidate, bot.localpart)


def reply_target(content: dict[str, Any]) -> str | None:
    """The event a message replies to (not a thread's fallback reply)."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict):
        return None
    in_reply_to = relates.get("m.in_reply_to")
    if not isinstance(in_reply_to, dict):
        return None
    if relates.get("rel_type") == "m.thread" and relates.get("is_falling_back"):
        return None
    target = in_reply_to.get("event_id")
    return target if isinstance(target, str) else None


def is_edit(content: dict[str, Any]) -> bool:
    relates = content.get("m.relates_to")
    return isinstance(relates, dict) and relates.get("rel_type") == "m.replace"


def redacted_event_id(source: dict[str, Any]) -> str | None:
    """``redacts`` sits at the top level before room version 11, in the content from v11."""
    redacts = source.get("redacts")
    if not isinstance(redacts, str):
        content = source.get("content")
        redacts = content.get("redacts") if isinstance(content, dict) else None
    return redacts if isinstance(redacts, str) else None


def context(source: dict[str, Any], room: Room, *, user_id: str | None = None) -> EventContext:
    sender = user_id or str(source["sender"])
    raw = {k: v for k, v in source.items() if k not in ("unsigned", "signatures", "hashes")}
    return EventContext(
        platform=PLATFORM,
        chat_id=room.room_id,
        user_id=sender,
        event_id=str(source["event_id"]),
        display_name=room.names(sender),
        language=None,  # Matrix tells nothing about a user's language
        chat_type=room.chat_type,
        raw=raw,
    )


def translate(source: dict[str, Any], room: Room, bot: Bot) -> InboundEvent | None:
    """One room event → a portable event, or ``None`` when the bot ignores it. Redactions are
    handled by :func:`translate_redaction`, which needs to know the redacted event."""
    sender = source.get("sender")
    if not isinstance(sender, str) or sender == bot.user_id or "event_id" not in source:
        return None
    if "state_key" in source:
        return None
    content = source.get("content")
    if not isinstance(content, dict) or not content:
        return None  # redacted before we saw it
    kind = source.get("type")
    private = room.chat_type == ChatType.PRIVATE
    payload: Payload | None = None
    if kind == "m.room.message":
        msgtype = content.get("msgtype")
        body = content.get("body")
        if is_edit(content):
            payload = Unsupported("edit") if private else None
        elif msgtype in ("m.text", "m.emote") and isinstance(body, str):
            target = reply_target(content)
            if target is not None:
                body = strip_reply_fallback(body)
            command = parse_text(body, bot)
            if command is not None:
                payload = command
            else:
                reply_to = MessageRef(room.room_id, target) if target else None
                payload = TextMessage(body, reply_to=reply_to)
        elif msgtype == "m.notice":
            payload = None  # other bots talk in notices; never answer them (no bot loops)
        elif private:
            payload = Unsupported(_UNSUPPORTED_MSGTYPES.get(str(msgtype), "message"))
    elif kind == "m.reaction":
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.annotation":
            target, key = relates.get("event_id"), relates.get("key")
            if isinstance(target, str) and isinstance(key, str):
                payload = ReactionAdded(MessageRef(room.room_id, target), key)
    elif kind in _UNSUPPORTED_TYPES and private:
        payload = Unsupported(_UNSUPPORTED_TYPES[kind])
    if payload is None:
        return None
    return InboundEvent(context(source, room), payload)


def translate_redaction(
    source: dict[str, Any], room: Room, bot: Bot, redacted: InboundEvent | None
) -> InboundEvent | None:
    """Redacting one's own reaction withdraws it: ``ReactionAdded(removed=True)``. A redaction
    by someone else (a room moderator) is not the reactor changing their mind: ignored."""
    sender = source.get("sender")
    if sender == bot.user_id or redacted is None or "event_id" not in source:
        return None
    payload = redacted.payload
    if not isinstance(payload, ReactionAdded) or payload.removed:
        return None
    if redacted.context.user_id != sender or redacted.context.chat_id != room.room_id:
        return None
    return InboundEvent(
        context(source, room), ReactionAdded(payload.target, payload.key, removed=True)
    )


def undecryptable(source: dict[str, Any], room: Room) -> InboundEvent:
    """An encrypted message whose keys never came: the citizen is told to send it again."""
    return InboundEvent(context(source, room), Unsupported("undecryptable"))
