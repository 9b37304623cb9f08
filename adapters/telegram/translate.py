"""Telegram updates (raw Bot API JSON) → portable inbound events.

The translation works on the raw update dictionaries exactly as the Bot API sends them, so an
update python-telegram-bot could not parse never blocks the channel, and the raw update is kept
on the event (``EventContext.raw``) as an escape hatch.

What becomes what:

=============================================  ==============================================
update                                         event
=============================================  ==============================================
``message`` with text                          ``TextMessage`` (with ``reply_to``) or, when it
                                               starts with ``/``, ``CommandMessage``
                                               (``/cmd@bot`` stripped; a command addressed to
                                               another bot is ignored)
``callback_query`` on a message                ``ActionPressed`` (query id; the message it was
                                               on as ``EventContext.message``)
``message`` with a small ``document``          ``FileReceived`` (from an administrator:
                                               downloaded first, at most ``MAX_FILE_BYTES``,
                                               bigger ones → Unsupported; from anyone else:
                                               name, type and size only)
sticker, photo, voice, video, audio, poll…     ``Unsupported`` (the core answers what it can
                                               read) — in private chats only
forwarded message                              ``Unsupported("forward")``: someone else's words
                                               are not taken as the citizen's
``edited_message`` (private chat)              ``Unsupported("edit")``: an edit is not a new
                                               contribution; the core asks for a new message
``channel_post``, ``edited_channel_post``,     ignored (see the README, "Run on Telegram"):
``my_chat_member``, service messages, inline   channels are not where participation happens
queries, edits in groups, anything else
messages from bots (and anonymous admins)      ignored
=============================================  ==============================================

Event ids are stable platform keys, never ``update_id`` (Telegram restarts update ids at a random
value after a week without updates): ``msg:<chat_id>:<message_id>``, ``cb:<query id>`` and
``edit:<chat_id>:<message_id>:<edit_date>``.
In groups only commands and replies/mentions arrive (privacy mode); they are passed with
``ChatType.GROUP`` and the core decides (it answers ``/start@bot`` with a deep link and stays
quiet on free text). Non-text content in groups is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.messages import (
    ActionPressed,
    ChatType,
    EventContext,
    FileReceived,
    InboundEvent,
    MessageRef,
    Payload,
    TextMessage,
    Unsupported,
    parse_command,
)

PLATFORM = "telegram"
# A document citizens (moderators) may send: a consultation YAML file is a few kilobytes.
MAX_FILE_BYTES = 512 * 1024

# Update types the bot asks Telegram for; everything else is ignored anyway.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")

# Message content a citizen may send that the bot does not read (answered in private chats).
UNSUPPORTED_CONTENT = (
    "sticker",
    "photo",
    "voice",
    "video",
    "video_note",
    "audio",
    "animation",
    "location",
    "venue",
    "contact",
    "poll",
    "dice",
    "game",
    "story",
    "paid_media",
)

_CHAT_TYPES = {
    "private": ChatType.PRIVATE,
    "group": ChatType.GROUP,
    "supergroup": ChatType.GROUP,
    "channel": ChatType.CHANNEL,
}


@dataclass(frozen=True, slots=True)
class PendingDocument:
    """A document message whose content must be downloaded before its event is committed."""

    context: EventContext
    file_id: str
    filename: str
    mime_type: str
    size: int | None

    def complete(self, data: bytes) -> InboundEvent:
        if len(data) > MAX_FILE_BYTES:
            return self.too_large()
        return InboundEvent(self.context, FileReceived(self.filename, self.mime_type, data))

    def metadata_only(self) -> InboundEvent:
        """A citizen's document: the bot does not read it, so its content is not fetched."""
        return InboundEvent(
            self.context, FileReceived(self.filename, self.mime_type, b"", size=self.size)
        )

    def too_large(self) -> InboundEvent:
        return InboundEvent(self.context, Unsupported("document"))


Translated = InboundEvent | PendingDocument | None


def translate(update: dict[str, Any], bot_username: str | None) -> Translated:
    """One raw update → an event, a document to download, or None (ignored)."""
    if not isinstance(update, dict):
        return None
    message = update.get("message")
    if isinstance(message, dict):
        return _message(update, message, bot_username)
    query = update.get("callback_query")
    if isinstance(query, dict):
        return _callback(update, query)
    edited = update.get("edited_message")
    if isinstance(edited, dict):
        return _edited(update, edited)
    # edited_message, channel_post, edited_channel_post, my_chat_member, chat_member,
    # inline_query, poll, message_reaction...: ignored on purpose (see the module docstring).
    return None


def _display_name(user: dict[str, Any]) -> str | None:
    name = " ".join(
        str(part) for part in (user.get("first_name"), user.get("last_name")) if part
    ).strip()
    return name[:255] or None


def _sender(container: dict[str, Any]) -> dict[str, Any] | None:
    user = container.get("from")
    if not isinstance(user, dict) or "id" not in user or user.get("is_bot"):
        return None
    return user


def _context(
    update: dict[str, Any],
    event_id: str,
    chat: dict[str, Any],
    user: dict[str, Any],
    message: MessageRef | None = None,
) -> EventContext:
    language = user.get("language_code")
    return EventContext(
        platform=PLATFORM,
        chat_id=str(chat["id"]),
        user_id=str(user["id"]),
        event_id=event_id,
        display_name=_display_name(user),
        language=language if isinstance(language, str) else None,
        chat_type=_CHAT_TYPES.get(str(chat.get("type")), ChatType.GROUP),
        message=message,
        raw=update,
    )


def _message(
    update: dict[str, Any], message: dict[str, Any], bot_username: str | None
) -> Translated:
    chat = message.get("chat")
    user = _sender(message)
    if not isinstance(chat, dict) or "id" not in chat or user is None:
        return None
    if message.get("sender_chat") or message.get("is_automatic_forward"):
        return None  # an anonymous admin or a linked channel speaking in a group
    if "message_id" not in message:
        return None
    chat_id = str(chat["id"])
    ctx = _context(update, f"msg:{chat_id}:{message['message_id']}", chat, user)
    private = ctx.chat_type == ChatType.PRIVATE
    forwarded = bool(
        message.get("forward_origin") or message.get("forward_from") or message.get("forward_date")
    )
    text = message.get("text")
    if isinstance(text, str) and not forwarded:
        payload = _text_payload(text, message, chat_id, bot_username)
        return InboundEvent(ctx, payload) if payload is not None else None
    if not private:
        return None  # privacy mode: in groups the bot only reads commands and replies
    if forwarded:
        return InboundEvent(ctx, Unsupported("forward"))
    document = message.get("document")
    if isinstance(document, dict) and document.get("file_id"):
        size = document.get("file_size")
        pending = PendingDocument(
            ctx,
            str(document["file_id"]),
            str(document.get("file_name") or "document"),
            str(document.get("mime_type") or "application/octet-stream"),
            int(size) if isinstance(size, int) else None,
        )
        if pending.size is not None and pending.size > MAX_FILE_BYTES:
            return pending.too_large()
        return pending
    for kind in UNSUPPORTED_CONTENT:
        if message.get(kind) is not None:
            return InboundEvent(ctx, Unsupported(kind))
    return None  # a service message (members joined, pinned message, ...)


def _edited(update: dict[str, Any], message: dict[str, Any]) -> Translated:
    chat = message.get("chat")
    user = _sender(message)
    if not isinstance(chat, dict) or "id" not in chat or user is None:
        return None
    if chat.get("type") != "private" or "message_id" not in message:
        return None  # in groups the bot stays quiet
    key = f"edit:{chat['id']}:{message['message_id']}:{message.get('edit_date', 0)}"
    return InboundEvent(_context(update, key, chat, user), Unsupported("edit"))


def _text_payload(
    text: str, message: dict[str, Any], chat_id: str, bot_username: str | None
) -> Payload | None:
    if text.startswith("/"):
        head = text[1:].split(maxsplit=1)[0] if text[1:].strip() else ""
        _name, at, target = head.partition("@")
        if at and bot_username and target.lower() != bot_username.lower():
            return None  # a command for another bot in the same group
        command = parse_command(text, bot_username)
        if command is not None:
            return command
    replied = message.get("reply_to_message")
    reply_to = None
    if isinstance(replied, dict) and "message_id" in replied:
        reply_to = MessageRef(chat_id, str(replied["message_id"]))
    return TextMessage(text, reply_to=reply_to)


def _callback(update: dict[str, Any], query: dict[str, Any]) -> Translated:
    user = _sender(query)
    message = query.get("message")
    data = query.get("data")
    if user is None or not isinstance(data, str) or not data or "id" not in query:
        return None  # game callbacks, or a user we cannot identify
    if not isinstance(message, dict) or "message_id" not in message:
        return None  # a button of an inline-mode message: the bot has none
    chat = message.get("chat")
    if not isinstance(chat, dict) or "id" not in chat:
        return None
    ref = MessageRef(str(chat["id"]), str(message["message_id"]))
    ctx = _context(update, f"cb:{query['id']}", chat, user, message=ref)
    return InboundEvent(ctx, ActionPressed(data, query_id=str(query["id"])))
