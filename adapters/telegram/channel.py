"""Portable outbound messages → Bot API calls through python-telegram-bot.

- Text in HTML parse mode (``bot.messages.render_html``: user text always escaped), link
  previews off; texts longer than 4096 characters are split on block (paragraph) boundaries,
  and a single oversized paragraph on line, then word boundaries. The keyboard goes on the last
  part. The parts already delivered are remembered per outbox key, so retrying a message whose
  second part failed does not send its first part again.
- The portable keyboard becomes an inline keyboard: ``callback_data`` is the core's action id
  (≤ 64 bytes, checked by ``bot.actions``), URL buttons stay links.
- ``message.edit`` edits that message in place (a support count going up). If Telegram refuses
  the edit (message too old, deleted, not a text message) a new message is sent instead; "not
  modified" means the message already shows this content and counts as done.
- ``message.answers`` answers the callback query (once per query), with ``message.notice``
  (≤ 200 characters) as its toast.
- Attachments go out as photos (PNG/JPEG images) or documents, with the text as caption when it
  fits in 1024 characters.
- Outcomes: 429 → ``RetryAfter``; 403 (blocked, kicked, deactivated) and "chat not found" →
  ``Unreachable``; 5xx, timeouts, network errors → ``TemporaryFailure``; any other 400 →
  ``PermanentFailure``. A group upgraded to a supergroup is followed to its new id once.
- Pacing is the delivery runtime's (``bot.delivery``): the account's pace, per-chat and
  per-group spacing (``is_group_chat`` tells groups apart); each extra part of a split message
  waits for one more slot of the account's pace (``pace_extra_part``).
"""

from __future__ import annotations

import html
import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
)
from telegram import error as tg_error
from telegram.constants import ParseMode

from adapters.telegram.translate import PLATFORM
from bot.channels import (
    ChannelError,
    Pace,
    PermanentFailure,
    RetryAfter,
    Sent,
    TemporaryFailure,
    Unreachable,
)
from bot.delivery import pace_extra_part
from bot.messages import Block, Keyboard, OutboundMessage, RichText, Span, render_html
from bot.router import Capabilities

log = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_NOTICE = 200
# Images Telegram shows inline (sendPhoto: up to 10 MB).
_PHOTO_TYPES = ("image/png", "image/jpeg")
_PHOTO_MAX_BYTES = 10 * 1024 * 1024
# Edits Telegram refuses for reasons where a new message is the right fallback.
_EDIT_FALLBACK = (
    "message to edit not found",
    "message can't be edited",
    "there is no text in the message to edit",
    "message_id_invalid",
    "message is too long",
)
_TAG = re.compile(r"<[^>]+>")
_ANSWERED_MEMORY = 2048
_PartSender = Callable[[int, RichText], Awaitable[Message]]


def capabilities(bot_username: str | None) -> Capabilities:
    deep_link = f"https://t.me/{bot_username}?start={{payload}}" if bot_username else None
    return Capabilities(buttons=True, edits=True, max_length=MAX_TEXT, deep_link=deep_link)


def telegram_pace() -> Pace:
    """About 30 messages a second overall (we stay below), 1 a second per chat, 20 a minute
    per group."""
    return Pace(per_second=25.0, per_chat_interval=1.0, per_group_per_minute=20.0)


# --------------------------------------------------------------------------- text


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def visible_length(rt: RichText) -> int:
    """Length of the text Telegram counts (after HTML parsing), in UTF-16 code units."""
    return _utf16_len(html.unescape(_TAG.sub("", render_html(rt))))


def _block_length(block: Block) -> int:
    return visible_length(RichText((block,)))


def split_text(rt: RichText, limit: int = MAX_TEXT) -> list[RichText]:
    """Split on block boundaries so each part renders to at most ``limit`` characters."""
    if visible_length(rt) <= limit:
        return [rt]
    parts: list[RichText] = []
    current: list[Block] = []
    for block in rt.blocks:
        for piece in _split_block(block, limit):
            candidate = RichText((*current, piece))
            if current and visible_length(candidate) > limit:
                parts.append(RichText(tuple(current)))
                current = [piece]
            else:
                current.append(piece)
    if current:
        parts.append(RichText(tuple(current)))
    return parts or [rt]


def _split_block(block: Block, limit: int) -> list[Block]:
    """A block longer than ``limit`` → several blocks of the same kind, cut at paragraph, line,
    then word boundaries (inside spans, keeping each span's style)."""
    if _block_length(block) <= limit:
        return [block]
    overhead = _block_length(Block((Span("x"),), block.kind)) - 1
    room_total = max(1, limit - overhead - 16)  # markup-free margin for the bullet & co
    pieces: list[Block] = []
    current: list[Span] = []
    size = 0
    for span in block.spans:
        rest = span.text
        while rest:
            room = room_total - size
            length = _utf16_len(rest)
            if length <= room:
                current.append(replace(span, text=rest))
                size += length
                break
            cut = _cut_point(rest, room)
            if cut <= 0:
                if current:
                    pieces.append(Block(tuple(current), block.kind))
                    current, size = [], 0
                    continue
                cut = max(1, _fit(rest, room_total))
            head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
            if head:
                current.append(replace(span, text=head))
            pieces.append(Block(tuple(current), block.kind))
            current, size = [], 0
    if current:
        pieces.append(Block(tuple(current), block.kind))
    return [p for p in pieces if p.spans]


def _fit(text: str, room: int) -> int:
    """The longest prefix of ``text`` within ``room`` UTF-16 units (in characters)."""
    total = 0
    for index, ch in enumerate(text):
        total += 2 if ord(ch) > 0xFFFF else 1
        if total > room:
            return index
    return len(text)


def _cut_point(text: str, room: int) -> int:
    """Where to cut ``text`` to fit ``room``: the last paragraph break, else line break, else
    space in the prefix (0 if none)."""
    prefix = text[: _fit(text, room)]
    for sep in ("\n\n", "\n", " "):
        at = prefix.rfind(sep)
        if at > 0:
            return at
    return 0


# --------------------------------------------------------------------------- keyboards


def inline_keyboard(keyboard: Keyboard) -> InlineKeyboardMarkup | None:
    rows = []
    for row in keyboard:
        buttons = []
        for button in row:
            label = button.label or "·"
            if button.url:
                buttons.append(InlineKeyboardButton(label, url=button.url))
            elif button.action:
                buttons.append(InlineKeyboardButton(label, callback_data=button.action))
        if buttons:
            rows.append(buttons)
    return InlineKeyboardMarkup(rows) if rows else None


# --------------------------------------------------------------------------- outcomes


def _retry_seconds(exc: tg_error.RetryAfter) -> float:
    """``retry_after`` in seconds, whichever form python-telegram-bot 22 gives (it warns about
    its next major version's timedelta unless asked process-wide; the warning is silenced
    here, for this read only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value: Any = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def outcome(exc: tg_error.TelegramError) -> ChannelError:
    """A python-telegram-bot error → the core's named outcome."""
    if isinstance(exc, tg_error.RetryAfter):
        return RetryAfter(_retry_seconds(exc))
    if isinstance(exc, tg_error.Forbidden):
        return Unreachable(exc.message)
    if isinstance(exc, tg_error.BadRequest):
        if "chat not found" in exc.message.lower():
            return Unreachable(exc.message)
        return PermanentFailure(exc.message)
    if isinstance(exc, tg_error.NetworkError | tg_error.Conflict | tg_error.InvalidToken):
        # 5xx, timeouts, connection errors; a revoked token is an operator problem: keep the
        # messages pending rather than failing them all.
        return TemporaryFailure(exc.message)
    return PermanentFailure(exc.message)


def is_group(chat_id: str) -> bool:
    return chat_id.startswith("-")


# --------------------------------------------------------------------------- the channel


class TelegramChannel:
    """``bot.channels.Channel`` for Telegram (see the module documentation)."""

    platform = PLATFORM

    def __init__(self, bot: Bot, pace: Pace | None = None) -> None:
        self.bot = bot
        self.pace = pace or telegram_pace()
        self.capabilities = capabilities(None)
        self._answered: OrderedDict[str, None] = OrderedDict()
        # Parts of a split message already delivered, by outbox key: a retry after a failure
        # resumes with the part that failed instead of repeating what the citizen has.
        self._parts_sent: OrderedDict[str, int] = OrderedDict()

    @staticmethod
    def is_group_chat(chat_id: str) -> bool:
        """Groups, supergroups and channels have negative ids (spaced 20 a minute)."""
        return is_group(chat_id)

    def set_username(self, username: str | None) -> None:
        self.capabilities = capabilities(username)

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        try:
            sent = await self._send(message, key)
        except tg_error.ChatMigrated as exc:
            new_id = str(exc.new_chat_id)
            log.info("group %s moved to %s", message.chat_id, new_id)
            self._parts_sent.pop(key, None)  # a new chat: it has none of the parts
            try:
                sent = await self._send(replace(message, chat_id=new_id, edit=None), key)
            except tg_error.TelegramError as again:
                raise outcome(again) from again
        except tg_error.TelegramError as exc:
            raise outcome(exc) from exc
        self._parts_sent.pop(key, None)
        return sent

    async def _send_parts(
        self,
        key: str,
        parts: list[RichText],
        send_one: Callable[[int, RichText], Awaitable[Message]],
    ) -> Message | None:
        """Send the parts of a message in order, remembering how many went out."""
        last: Message | None = None
        first = self._parts_sent.get(key, 0)
        for index in range(first, len(parts)):
            if index > first:
                await pace_extra_part()
            last = await send_one(index, parts[index])
            self._parts_sent[key] = index + 1
            self._parts_sent.move_to_end(key)
            while len(self._parts_sent) > _ANSWERED_MEMORY:
                self._parts_sent.popitem(last=False)
        return last

    async def _send(self, message: OutboundMessage, key: str) -> Sent:
        if message.answers:
            await self._answer(message)
        has_text = bool(message.text.blocks)
        if not has_text and message.attachment is None:
            if message.notice and not message.answers:
                # A notice with nowhere else to go: show it as a message.
                message = replace(message, text=RichText().p(message.notice))
            else:
                return Sent(None)
        if message.attachment is not None:
            return await self._send_attachment(message, key)
        parts = split_text(message.text)
        if message.edit is not None and len(parts) == 1:
            edited = await self._edit(message)
            if edited is not None:
                return edited
        markup = inline_keyboard(message.keyboard)

        def send_one(index: int, part: RichText) -> Awaitable[Message]:
            return self.bot.send_message(
                chat_id=message.chat_id,
                text=render_html(part),
                parse_mode=ParseMode.HTML,
                reply_markup=markup if index == len(parts) - 1 else None,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_parameters=self._reply(message) if index == 0 else None,
            )

        last = await self._send_parts(key, parts, send_one)
        return Sent(str(last.message_id) if last is not None else None)

    def _reply(self, message: OutboundMessage) -> ReplyParameters | None:
        if message.reply_to is None or message.reply_to.chat_id != message.chat_id:
            return None
        return ReplyParameters(
            message_id=int(message.reply_to.message_id), allow_sending_without_reply=True
        )

    async def _answer(self, message: OutboundMessage) -> None:
        query_id = message.answers
        assert query_id is not None
        if query_id in self._answered:
            return
        notice = message.notice[:MAX_NOTICE] if message.notice else None
        try:
            await self.bot.answer_callback_query(query_id, text=notice)
        except tg_error.BadRequest as exc:
            # Too old (answered after ~15 s) or already answered: the spinner stopped anyway.
            log.debug("callback answer refused: %s", exc.message)
        self._answered[query_id] = None
        while len(self._answered) > _ANSWERED_MEMORY:
            self._answered.popitem(last=False)

    async def _edit(self, message: OutboundMessage) -> Sent | None:
        """Edit in place; None when Telegram refuses and a new message should go instead."""
        assert message.edit is not None
        try:
            await self.bot.edit_message_text(
                chat_id=message.edit.chat_id,
                message_id=int(message.edit.message_id),
                text=render_html(message.text),
                parse_mode=ParseMode.HTML,
                reply_markup=inline_keyboard(message.keyboard),
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except tg_error.BadRequest as exc:
            reason = exc.message.lower()
            if "not modified" in reason:
                return Sent(message.edit.message_id)
            if any(known in reason for known in _EDIT_FALLBACK):
                log.debug("edit refused (%s): sending a new message", exc.message)
                return None
            raise
        return Sent(message.edit.message_id)

    async def _send_attachment(self, message: OutboundMessage, key: str) -> Sent:
        attachment = message.attachment
        assert attachment is not None
        markup = inline_keyboard(message.keyboard)
        caption_rt = message.text
        if attachment.caption:
            caption_rt = (
                caption_rt.p(attachment.caption)
                if caption_rt.blocks
                else RichText().p(attachment.caption)
            )
        caption: str | None = render_html(caption_rt) if caption_rt.blocks else None
        if caption is not None and visible_length(caption_rt) > MAX_CAPTION:
            # Too long for a caption: the text first, then the file with the keyboard.

            def send_one(_index: int, part: RichText) -> Awaitable[Message]:
                return self.bot.send_message(
                    chat_id=message.chat_id,
                    text=render_html(part),
                    parse_mode=ParseMode.HTML,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )

            # If the file then fails, its retry does not repeat the text.
            await self._send_parts(key, split_text(message.text), send_one)
            caption = (
                html.escape(attachment.caption[:MAX_CAPTION], quote=False)
                if attachment.caption
                else None
            )
        upload = InputFile(attachment.data, filename=attachment.filename)
        common: dict[str, Any] = {
            "chat_id": message.chat_id,
            "caption": caption,
            "parse_mode": ParseMode.HTML if caption else None,
            "reply_markup": markup,
            "reply_parameters": self._reply(message),
        }
        if attachment.mime_type in _PHOTO_TYPES and len(attachment.data) <= _PHOTO_MAX_BYTES:
            sent = await self.bot.send_photo(photo=upload, **common)
        else:
            sent = await self.bot.send_document(document=upload, **common)
        return Sent(str(sent.message_id))
