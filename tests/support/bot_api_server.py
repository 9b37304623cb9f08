"""A Telegram Bot API server for tests: real HTTP, the real protocol, nothing beyond 127.0.0.1.

python-telegram-bot (or any client) talks to it exactly as it talks to ``api.telegram.org``::

    async with BotApiServer() as server:
        bot = Bot(server.token, base_url=server.base_url, base_file_url=server.base_file_url)
        async with bot:
            update_id = server.inject_message(42, "/start")
            (update,) = await bot.get_updates(timeout=1)
            await bot.send_message(42, "Bonjour", reply_markup=keyboard)
        (reply,) = await server.wait_for_messages(42, 1)
        assert reply.callback_data == ["vote:1"]

or, for a whole application::

    app = (Application.builder().token(server.token)
           .base_url(server.base_url).base_file_url(server.base_file_url).build())

What it does, like Telegram:

* ``/bot<token>/<method>`` (method names are case-insensitive); a wrong token answers 401.
  Parameters come from the query string, a form, a multipart body (files) or a JSON body;
  non-string parameters arrive JSON-encoded (``chat_id='42'``) and are decoded leniently.
* ``getUpdates`` with ``offset``/``limit``/``timeout``/``allowed_updates``: real long polling;
  an update is confirmed (and dropped) only by a later call with a higher offset, so every
  unconfirmed update is delivered again; a second concurrent ``getUpdates`` terminates the
  first one with 409, and ``getUpdates`` answers 409 while a webhook is set.
* Webhooks: ``setWebhook`` makes the server POST updates one at a time to the URL (with
  ``X-Telegram-Bot-Api-Secret-Token``), retrying with backoff until it gets a 2xx answer.
* Messages get per-chat ``message_id`` values shared with the injected user messages, are
  stored (so replies, edits and deletions are checked) and come back as real Message objects.
  HTML and MarkdownV2 are parsed into entities with Telegram's error messages.
* Validation: empty or too long text and captions, ``callback_data`` over 64 bytes, inline
  buttons without an action, unparsable entities, edits that change nothing, unknown or
  already answered callback queries, callback answers over 200 characters, and more.

Test controls: :meth:`BotApiServer.inject_message`, :meth:`~BotApiServer.inject_callback`,
:meth:`~BotApiServer.inject_update`; records in :attr:`~BotApiServer.sent`,
:attr:`~BotApiServer.callback_answers`, :attr:`~BotApiServer.commands`,
:attr:`~BotApiServer.requests`; waits with :meth:`~BotApiServer.wait_for`,
:meth:`~BotApiServer.wait_for_messages`, :meth:`~BotApiServer.wait_until`; faults with
:meth:`~BotApiServer.fail_next`, :meth:`~BotApiServer.block_chat` and :class:`RateLimits`.

Where the real server is lenient, this one is stricter on purpose (and says so): a bare ``&``
in HTML text is rejected unless ``strict_html=False`` (Telegram keeps it as text, but its
documentation requires ``&amp;``). Legacy ``parse_mode="Markdown"`` is accepted unparsed.

Standalone, for a bot process that is killed and restarted against a long-lived server::

    python -m tests.support.bot_api_server --port 8081 --token 123456:TEST

prints one JSON line (``{"base_url": ..., "base_file_url": ..., "port": ...}``) once it
listens, and also serves a small control API under ``/_test/`` (``inject_message``,
``inject_callback``, ``inject_update``, ``fail_next``, ``block_chat``, ``unblock_chat``,
``sent``, ``state``; POST bodies are JSON objects of the matching method's arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import mimetypes
import re
import signal
import string
import struct
import sys
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web

__all__ = [
    "ApiCall",
    "ApiError",
    "BotApiServer",
    "CallbackAnswer",
    "ChatAction",
    "EntityParseError",
    "Fault",
    "FaultKind",
    "RateLimits",
    "SentRecord",
    "ServerStats",
    "StoredFile",
    "UploadedFile",
    "WebhookDelivery",
    "parse_html",
    "parse_markdown_v2",
    "utf16_len",
]

T = TypeVar("T")
JSONDict = dict[str, Any]
ChatId = int | str
FaultKind = Literal["429", "403", "5xx", "timeout", "error"]
MethodHandler = Callable[["ApiCall"], Awaitable[Any]]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
_QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
_DEFAULT_EXCLUDED_UPDATES = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
# Parameters that are strings in the Bot API: never JSON-decoded, even when they look like JSON.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "url",
        "secret_token",
        "ip_address",
        "language_code",
        "description",
        "short_description",
        "name",
        "action",
        "business_connection_id",
        "message_effect_id",
        "emoji",
        "title",
        "file_id",
        "document",
        "photo",
        "audio",
        "video",
        "animation",
        "voice",
        "video_note",
        "sticker",
        "thumbnail",
    }
)
_CHAT_ID_PARAMS = frozenset({"chat_id", "from_chat_id", "user_id", "sender_chat_id"})


# --------------------------------------------------------------------------------------------
# Errors and small helpers
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answer of the Bot API: HTTP ``status`` with ``{"ok": false, ...}``.

    Raise it from a custom method handler (see :meth:`BotApiServer.add_method`).
    """

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str) -> ApiError:
    """``400 Bad Request: <detail>``, the shape of most validation errors."""
    return ApiError(400, f"Bad Request: {detail}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


class EntityParseError(ValueError):
    """Text that Telegram would refuse to parse (``can't parse entities: <message>``)."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets and lengths."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


def _now_date() -> int:
    return int(time.time())


# --------------------------------------------------------------------------------------------
# Formatting: HTML and MarkdownV2 into (text, entities), with Telegram's error messages
# --------------------------------------------------------------------------------------------

_SPACES = frozenset(" \t\r\n\v\f\0")
_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "span",
        "tg-spoiler",
        "tg-emoji",
        "pre",
        "code",
        "blockquote",
    }
)
_HTML_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_BARE_URL = re.compile(r"^(?:https?://)?[\w-]+(?:\.[\w-]+)+(?:[/?#]\S*)?$", re.IGNORECASE)


def _decode_html_entity(text: str, pos: int, strict: bool) -> tuple[str, int] | None:
    """Decode the character reference at ``text[pos] == '&'``: (character, next index)."""
    n = len(text)
    i = pos + 1
    if i < n and text[i] == "#":
        i += 1
        hexadecimal = i < n and text[i] in "xX"
        if hexadecimal:
            i += 1
        start = i
        digits = string.hexdigits if hexadecimal else string.digits
        while i < n and text[i] in digits:
            i += 1
        if i == start or i - start >= 10:
            return None
        code = int(text[start:i], 16 if hexadecimal else 10)
        if code == 0 or code >= 0x10FFFF:
            return None
        value = chr(code)
    else:
        start = i
        while i < n and text[i].isascii() and text[i].isalpha():
            i += 1
        named = _HTML_NAMED_ENTITIES.get(text[start:i])
        if named is None:
            return None
        value = named
    if i < n and text[i] == ";":
        i += 1
    elif strict:
        return None
    return value, i


@dataclass
class _OpenTag:
    name: str
    argument: str
    offset: int  # UTF-16 offset in the result
    out_index: int  # index in the output pieces, to recover the inner text


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[JSONDict]]:
    """Telegram's HTML parse mode: the plain text and its entities (UTF-16 offsets).

    Follows tdlib's parser and error messages. With ``strict`` (the default) a ``&`` that does
    not start ``&lt;``, ``&gt;``, ``&amp;``, ``&quot;`` or a numeric reference ending with ``;``
    is an error, as the Bot API documentation demands (the real server keeps it as text).
    Raises :class:`EntityParseError`.
    """
    out: list[str] = []
    entities: list[JSONDict] = []
    stack: list[_OpenTag] = []
    offset = 0
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_html_entity(text, i, strict)
            if decoded is not None:
                char, i = decoded
                out.append(char)
                offset += utf16_len(char)
                continue
            if strict:
                raise EntityParseError(
                    f"Character '&' at byte offset {_byte_offset(text, i)} must be escaped as "
                    "&amp; (strict test server; Telegram documents this rule)"
                )
        if c != "<":
            out.append(c)
            offset += utf16_len(c)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and text[i] == "/":
            # An end tag; "</>" closes the innermost open tag.
            if not stack:
                raise EntityParseError(
                    f"Unexpected end tag at byte offset {_byte_offset(text, begin)}"
                )
            i += 1
            while i < n and text[i] not in _SPACES and text[i] != ">":
                i += 1
            end_name = text[begin + 2 : i].lower()
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n or text[i] != ">":
                raise EntityParseError(
                    f"Unclosed end tag at byte offset {_byte_offset(text, begin)}"
                )
            i += 1
            tag = stack.pop()
            if end_name and end_name != tag.name:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{tag.name}>", found "</{end_name}>"'
                )
            if offset > tag.offset:
                _close_html_tag(tag, offset, "".join(out[tag.out_index :]), entities)
            continue

        # A start tag.
        while i < n and text[i] not in _SPACES and text[i] != ">":
            i += 1
        if i >= n:
            raise EntityParseError(
                f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
            )
        name = text[begin + 1 : i].lower()
        if name not in _HTML_TAGS:
            raise EntityParseError(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}'
            )
        argument = ""
        while True:
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n:
                raise EntityParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                )
            if text[i] == ">":
                break
            attribute_begin = i
            while i < n and text[i] not in _SPACES and text[i] not in "=>":
                i += 1
            attribute = text[attribute_begin:i].lower()
            if not attribute:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{name}" at byte offset '
                    f"{_byte_offset(text, begin)}"
                )
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n or text[i] != "=":
                # An attribute without a value, like <blockquote expandable>.
                if name == "blockquote" and attribute == "expandable":
                    argument = "expandable"
                continue
            i += 1
            while i < n and text[i] in _SPACES:
                i += 1
            if i >= n:
                raise EntityParseError(
                    f'Unclosed start tag "{name}" at byte offset {_byte_offset(text, begin)}'
                )
            if text[i] not in "'\"":
                token_begin = i
                while i < n and ((text[i].isascii() and text[i].isalnum()) or text[i] in ".-"):
                    i += 1
                value = text[token_begin:i].lower()
                if i < n and text[i] not in _SPACES and text[i] != ">":
                    raise EntityParseError(
                        f"Unexpected end of name token at byte offset "
                        f"{_byte_offset(text, token_begin)}"
                    )
            else:
                quote = text[i]
                i += 1
                pieces: list[str] = []
                while i < n and text[i] != quote:
                    if text[i] == "&":
                        decoded = _decode_html_entity(text, i, strict=False)
                        if decoded is not None:
                            pieces.append(decoded[0])
                            i = decoded[1]
                            continue
                    pieces.append(text[i])
                    i += 1
                if i < n:
                    i += 1
                value = "".join(pieces)
            if i >= n:
                raise EntityParseError(
                    f"Unclosed start tag at byte offset {_byte_offset(text, begin)}"
                )
            if name == "a" and attribute == "href":
                argument = value
            elif name == "code" and attribute == "class" and value.startswith("language-"):
                argument = value[len("language-") :]
            elif (name == "span" and attribute == "class") or (
                name == "tg-emoji" and attribute == "emoji-id"
            ):
                argument = value
            elif name == "blockquote" and attribute == "expandable":
                argument = "expandable"
        if name == "span" and argument != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset '
                f"{_byte_offset(text, begin)}"
            )
        if name == "tg-emoji" and not (argument.isdigit() and int(argument) > 0):
            raise EntityParseError("Invalid custom emoji identifier specified")
        stack.append(_OpenTag(name, argument, offset, len(out)))
        i += 1  # the '>'
    if stack:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"'
        )
    result = "".join(out)
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in result):
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, check for "
            "unmatched surrogate code units"
        )
    for entity in entities:
        entity.pop("_language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return result, entities


def _close_html_tag(tag: _OpenTag, end: int, inner: str, entities: list[JSONDict]) -> None:
    span = {"offset": tag.offset, "length": end - tag.offset}
    last = entities[-1] if entities else None
    same_range = last is not None and (last["offset"], last["length"]) == (
        span["offset"],
        span["length"],
    )
    if tag.name in _HTML_SIMPLE_TAGS:
        entities.append({"type": _HTML_SIMPLE_TAGS[tag.name], **span})
    elif tag.name == "a":
        url = tag.argument
        if not url and _BARE_URL.match(inner):
            url = inner if "://" in inner else f"http://{inner}"
        if url:
            entities.append({"type": "text_link", **span, "url": url})
    elif tag.name == "code":
        if last is not None and same_range and last["type"] == "pre" and tag.argument:
            last["language"] = tag.argument
        else:
            entity = {"type": "code", **span}
            if tag.argument:
                entity["_language"] = tag.argument
            entities.append(entity)
    elif tag.name == "pre":
        if last is not None and same_range and last["type"] == "code" and last.get("_language"):
            last["type"] = "pre"
            last["language"] = last.pop("_language")
        else:
            entities.append({"type": "pre", **span})
    elif tag.name == "blockquote":
        kind = "expandable_blockquote" if tag.argument == "expandable" else "blockquote"
        entities.append({"type": kind, **span})
    elif tag.name == "tg-emoji":
        entities.append({"type": "custom_emoji", **span, "custom_emoji_id": tag.argument})


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "pre_code": "PreCode",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_CUSTOM_EMOJI_URL = re.compile(r"^tg://emoji/?\?(?:[^#]*&)?id=(\d+)", re.IGNORECASE)


@dataclass
class _OpenMarkdown:
    kind: str
    offset: int
    begin: int  # index in the source, for error messages
    language: str = ""
    out_index: int = 0  # where the entity's text starts in the output pieces


def parse_markdown_v2(text: str) -> tuple[str, list[JSONDict]]:
    """Telegram's MarkdownV2 parse mode: the plain text and its entities.

    Covers escaping, bold, italic, underline, strikethrough, spoiler, code, pre (with a
    language), text links, custom emoji and ``>`` block quotes, with tdlib's error messages
    (``Character '.' is reserved and must be escaped with the preceding '\\'``, ``Can't find
    end of Bold entity at byte offset 0``...). Raises :class:`EntityParseError`.
    """
    out: list[str] = []
    entities: list[JSONDict] = []
    stack: list[_OpenMarkdown] = []
    offset = 0
    quote_start: int | None = None
    at_line_start = True
    n = len(text)
    i = 0

    def emit(piece: str) -> None:
        nonlocal offset, at_line_start
        out.append(piece)
        offset += utf16_len(piece)
        at_line_start = piece in ("\n", "\r")

    def add(kind: str, start: int, **extra: Any) -> None:
        if offset > start:
            entities.append({"type": kind, "offset": start, "length": offset - start, **extra})

    def read_url(start: int) -> tuple[str, int]:
        """Read ``(url)`` from ``text[start] == '('``: the URL and the index after ``)``."""
        j = start + 1
        pieces: list[str] = []
        while j < n and text[j] != ")":
            if text[j] == "\\" and j + 1 < n and 0 < ord(text[j + 1]) <= 126:
                pieces.append(text[j + 1])
                j += 2
                continue
            pieces.append(text[j])
            j += 1
        if j >= n:
            raise EntityParseError(
                f"Can't find end of a URL at byte offset {_byte_offset(text, start + 1)}"
            )
        return "".join(pieces), j + 1

    while i < n:
        c = text[i]
        top = stack[-1] if stack else None
        in_code = top is not None and top.kind in ("code", "pre", "pre_code")
        if at_line_start and not in_code:
            at_line_start = False
            if c == ">":
                if quote_start is None:
                    quote_start = offset
                i += 1
                continue
            if quote_start is not None:
                add("blockquote", quote_start)
                quote_start = None
        if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            emit(text[i + 1])
            i += 2
            continue
        if in_code:
            assert top is not None
            if top.kind == "code" and c == "`":
                stack.pop()
                add("code", top.offset)
                i += 1
            elif top.kind != "code" and text.startswith("```", i):
                stack.pop()
                if top.kind == "pre_code":
                    add("pre", top.offset, language=top.language)
                else:
                    add("pre", top.offset)
                i += 3
            else:
                emit(c)
                i += 1
            continue
        if c not in _MDV2_RESERVED:
            emit(c)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if top is not None:
            closes = (
                (top.kind == "bold" and c == "*")
                or (top.kind == "italic" and c == "_" and nxt != "_")
                or (top.kind == "underline" and c == "_" and nxt == "_")
                or (top.kind == "strikethrough" and c == "~")
                or (top.kind == "spoiler" and c == "|" and nxt == "|")
                or (top.kind in ("text_link", "custom_emoji") and c == "]")
            )
            if closes:
                stack.pop()
                i += 2 if top.kind in ("underline", "spoiler") else 1
                if top.kind == "text_link":
                    url = "".join(out[top.out_index :])
                    if i < n and text[i] == "(":
                        url, i = read_url(i)
                    if url.lower().startswith("tg://") or _BARE_URL.match(url):
                        url = url if "://" in url else f"http://{url}"
                        add("text_link", top.offset, url=url)
                elif top.kind == "custom_emoji":
                    if i >= n or text[i] != "(":
                        raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                    url, i = read_url(i)
                    match = _CUSTOM_EMOJI_URL.match(url)
                    if match is None:
                        raise EntityParseError("Custom emoji URL must have an emoji identifier")
                    add("custom_emoji", top.offset, custom_emoji_id=match.group(1))
                else:
                    add(top.kind, top.offset)
                continue
        begin = i
        language = ""
        if c == "_":
            kind = "underline" if nxt == "_" else "italic"
            i += 2 if nxt == "_" else 1
        elif c == "*":
            kind, i = "bold", i + 1
        elif c == "~":
            kind, i = "strikethrough", i + 1
        elif c == "|" and nxt == "|":
            kind, i = "spoiler", i + 2
        elif c == "[":
            kind, i = "text_link", i + 1
        elif c == "!" and nxt == "[":
            kind, i = "custom_emoji", i + 2
        elif c == "`" and text.startswith("```", i):
            i += 3
            j = i
            while j < n and text[j] not in _SPACES and text[j] != "`":
                j += 1
            kind = "pre"
            if j < n and text[j] in _SPACES and j > i:
                kind, language, i = "pre_code", text[i:j], j
                if text[i] in "\r\n":
                    pair = text[i : i + 2]
                    i += 2 if pair in ("\r\n", "\n\r") else 1
        elif c == "`":
            kind, i = "code", i + 1
        else:
            raise EntityParseError(
                f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
            )
        stack.append(_OpenMarkdown(kind, offset, begin, language, len(out)))
    if stack:
        top = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MDV2_NAMES[top.kind]} entity at byte offset "
            f"{_byte_offset(text, top.begin)}"
        )
    if quote_start is not None:
        add("blockquote", quote_start)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


_TRIMMED = " \t\r\n"


def _trim(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Strip leading and trailing whitespace like Telegram, moving entities along."""
    stripped = text.strip(_TRIMMED)
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip(_TRIMMED))])
    total = utf16_len(stripped)
    kept: list[JSONDict] = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(total, entity["offset"] + entity["length"] - lead)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class UploadedFile:
    """One file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class StoredFile:
    """A file the server knows: uploaded by the bot, or registered by a test for a user."""

    file_id: str
    file_unique_id: str
    kind: str  # document, photo, ...
    data: bytes
    filename: str | None
    mime_type: str | None
    file_path: str
    url: str | None = None  # when the bot sent an HTTP URL instead of bytes
    width: int = 0
    height: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def as_document(self) -> JSONDict:
        """The ``Document`` object of this file."""
        doc: JSONDict = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        if self.filename:
            doc["file_name"] = self.filename
        if self.mime_type:
            doc["mime_type"] = self.mime_type
        return doc

    def as_photo(self) -> list[JSONDict]:
        """The ``PhotoSize`` list of this file (one size)."""
        return [
            {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "width": self.width,
                "height": self.height,
                "file_size": self.size,
            }
        ]

    def as_file(self) -> JSONDict:
        """The ``File`` object that ``getFile`` returns."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
            "file_path": self.file_path,
        }

    def summary(self) -> JSONDict:
        return {
            "file_id": self.file_id,
            "kind": self.kind,
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size": self.size,
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "url": self.url,
        }


@dataclass
class ApiCall:
    """One request to ``/bot<token>/<method>``, with its decoded parameters and outcome."""

    method: str  # canonical spelling, e.g. "sendMessage"
    params: JSONDict
    files: dict[str, UploadedFile]
    time: float  # time.monotonic() on arrival
    status: int | None = None
    description: str | None = None

    @property
    def chat_id(self) -> ChatId | None:
        return self.params.get("chat_id")


@dataclass
class SentRecord:
    """A successful outgoing call that touched a chat: a send, an edit or a deletion.

    ``text`` is what the bot sent (with its markup); ``plain_text`` and ``entities`` are what
    Telegram made of it. ``message`` is the Message the server returned (None for deletions and
    inline-message edits). ``time`` is ``time.monotonic()``.
    """

    method: str
    chat_id: ChatId | None
    message_id: int | None
    text: str | None
    parse_mode: str | None
    reply_markup: JSONDict | None
    files: list[StoredFile]
    time: float
    params: JSONDict
    message: JSONDict | None

    @property
    def is_send(self) -> bool:
        return self.method.startswith(("send", "copy", "forward"))

    @property
    def is_edit(self) -> bool:
        return self.method.startswith("edit")

    @property
    def plain_text(self) -> str | None:
        if self.message is None:
            return None
        return self.message.get("text", self.message.get("caption"))

    @property
    def entities(self) -> list[JSONDict]:
        if self.message is None:
            return []
        found = self.message.get("entities") or self.message.get("caption_entities") or []
        return list(found)

    @property
    def buttons(self) -> list[list[JSONDict]]:
        """The rows of the inline keyboard (empty without one)."""
        markup = self.reply_markup or {}
        return [list(row) for row in markup.get("inline_keyboard", [])]

    @property
    def button_texts(self) -> list[str]:
        return [button.get("text", "") for row in self.buttons for button in row]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for row in self.buttons for b in row if "callback_data" in b]

    @property
    def file(self) -> StoredFile | None:
        return self.files[0] if self.files else None

    def to_json(self) -> JSONDict:
        return {
            "method": self.method,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "text": self.text,
            "parse_mode": self.parse_mode,
            "reply_markup": self.reply_markup,
            "files": [f.summary() for f in self.files],
            "time": self.time,
            "message": self.message,
        }


@dataclass
class CallbackAnswer:
    """One accepted ``answerCallbackQuery``; ``update_id`` is that of the injected query."""

    callback_query_id: str
    update_id: int | None
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None
    time: float


@dataclass
class ChatAction:
    chat_id: ChatId
    action: str
    time: float


@dataclass
class WebhookDelivery:
    """One POST of an update to the webhook; ``status`` is None when the connection failed."""

    update_id: int
    status: int | None
    error: str | None
    time: float


@dataclass
class Fault:
    """A failure the server injects into matching requests (see :meth:`BotApiServer.fail_next`).

    ``count`` is how many more requests it hits (None: all of them); ``hits`` how many it hit.
    """

    kind: FaultKind
    method: frozenset[str] | None  # lower-case method names; None matches every method
    count: int | None = 1
    chat_id: ChatId | None = None
    when: Callable[[ApiCall], bool] | None = None
    retry_after: int = 3
    status: int = 502
    description: str | None = None
    delay: float = 6.0
    apply: bool = True
    hits: int = 0

    def matches(self, call: ApiCall) -> bool:
        if self.method is not None and call.method.lower() not in self.method:
            return False
        if self.chat_id is not None and not _same_chat(call.params.get("chat_id"), self.chat_id):
            return False
        return self.when is None or bool(self.when(call))


def _same_chat(a: object, b: object) -> bool:
    return a is not None and b is not None and str(a) == str(b)


@dataclass(frozen=True)
class RateLimits:
    """Telegram's flood limits, enforced on sends (``send*`` but ``sendChatAction``, ``copy*``,
    ``forward*``) when set as :attr:`BotApiServer.rate_limits`.

    Limits are sliding windows: ``global_per_s`` sends in any second overall;
    ``per_chat_burst`` sends to one private chat in any ``per_chat_burst / per_chat_per_s``
    seconds (Telegram tolerates short bursts); ``per_group_per_min`` sends to one group or
    channel in any minute. A send over a limit answers 429 with ``retry_after``, and with
    ``flood_penalty`` every send on that key keeps answering 429 until the time is up.

    ``time_scale`` compresses time for benchmarks: with 10, one Telegram second lasts 0.1 s,
    so every limit is 10 times higher in real time. ``retry_after`` stays in (whole, at least
    1) Telegram seconds, as on the wire; a client under a compressed clock waits
    :meth:`real_seconds` of it.
    """

    global_per_s: float = 30
    per_chat_per_s: float = 1
    per_group_per_min: float = 20
    time_scale: float = 1.0
    per_chat_burst: int = 3
    flood_penalty: bool = True

    def real_seconds(self, retry_after: float) -> float:
        """How long ``retry_after`` Telegram seconds last in real time."""
        return retry_after / self.time_scale


@dataclass
class ServerStats:
    """Counters: requests per method, answers per HTTP status, and what caused the errors."""

    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0  # 429 answers from RateLimits
    faults: int = 0  # answers changed by fail_next
    blocked: int = 0  # 403 answers for blocked chats
    webhook_failures: int = 0

    @property
    def too_many_requests(self) -> int:
        """Every 429 answer, injected or from the rate limits."""
        return self.responses[429]


class _Signal:
    """Wakes every waiter whenever something changes (level-triggered broadcast)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None) -> None:
        event = self._event
        if timeout is None:
            await event.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(timeout, 0))


class _Window:
    """At most ``limit`` events in any ``width`` seconds (of virtual time)."""

    def __init__(self, limit: float, width: float) -> None:
        self.limit = max(1, math.floor(limit))
        self.width = width
        self.events: deque[float] = deque()

    def wait_needed(self, now: float) -> float:
        while self.events and self.events[0] <= now - self.width:
            self.events.popleft()
        if len(self.events) < self.limit:
            return 0.0
        return self.events[0] + self.width - now


class _RateLimiter:
    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._global = _Window(limits.global_per_s, 1.0)
        self._chats: dict[str, _Window] = {}
        self._penalties: dict[str, float] = {}

    def _chat_window(self, chat_key: str, group: bool) -> _Window:
        window = self._chats.get(chat_key)
        if window is None:
            if group:
                window = _Window(self.limits.per_group_per_min, 60.0)
            else:
                burst = max(1, self.limits.per_chat_burst)
                window = _Window(burst, burst / self.limits.per_chat_per_s)
            self._chats[chat_key] = window
        return window

    def check(self, chat_id: ChatId, group: bool) -> int | None:
        """Count one send, or return the ``retry_after`` (Telegram seconds) that refuses it."""
        now = time.monotonic() * self.limits.time_scale
        chat_key = f"chat:{chat_id}"
        for key in ("global", chat_key):
            until = self._penalties.get(key)
            if until is not None and until > now:
                return max(1, math.ceil(until - now))
        windows = (("global", self._global), (chat_key, self._chat_window(chat_key, group)))
        for key, window in windows:
            wait = window.wait_needed(now)
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                if self.limits.flood_penalty:
                    self._penalties[key] = now + retry_after
                return retry_after
        for _key, window in windows:
            window.events.append(now)
        return None


@dataclass
class _WebhookState:
    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    ip_address: str | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class BotApiServer:
    """An in-process Telegram Bot API server on 127.0.0.1 (see the module documentation).

    State (chats, messages, pending updates, records) lives in this object and survives
    ``stop()``/``start()``; a restart listens on the same port again.
    """

    def __init__(
        self,
        token: str = "123456:TEST",
        bot_username: str = "parlons_test_bot",
        *,
        bot_first_name: str = "Parlons",
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limits: RateLimits | None = None,
        strict_html: bool = True,
        require_known_chats: bool = False,
        first_update_id: int = 1000,
        webhook_retry_delay: float = 0.1,
        webhook_timeout: float = 10.0,
        control_api: bool = False,
    ) -> None:
        """
        Args:
            token: the bot token; requests with another one answer 401.
            bot_username, bot_first_name: what ``getMe`` says (the id is the token's prefix).
            host, port: where to listen (port 0: a free one, kept across restarts).
            rate_limits: enforce Telegram's flood limits on sends (None: no limits).
            strict_html: reject a bare ``&`` in HTML (see :func:`parse_html`).
            require_known_chats: sends to a chat the server never saw answer
                ``400 Bad Request: chat not found`` (chats become known by injection or
                :meth:`add_chat`).
            first_update_id: the first update_id given to injected updates.
            webhook_retry_delay: first delay before a failed webhook delivery is retried
                (doubling up to 5 s).
            webhook_timeout: how long a webhook POST may take.
            control_api: also serve the ``/_test/`` control routes (the CLI turns it on).
        """
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.bot_user: JSONDict = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self.host = host
        self._port = port
        self.rate_limits = rate_limits
        self.strict_html = strict_html
        self.require_known_chats = require_known_chats
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout
        self.control_api = control_api

        # Records for assertions.
        self.sent: list[SentRecord] = []
        self.requests: list[ApiCall] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.chat_actions: list[ChatAction] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}
        self.bot_settings: dict[tuple[str, str], Any] = {}
        self.files: dict[str, StoredFile] = {}
        self.injected: dict[int, JSONDict] = {}
        self.stats = ServerStats()
        self.faults: list[Fault] = []

        # Telegram-side state.
        self.chats: dict[int, JSONDict] = {}
        self.users: dict[int, JSONDict] = {}
        self.chat_members: dict[tuple[int, int], JSONDict] = {}
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._last_message_id: dict[int, int] = {}
        self._blocked: dict[str, str] = {}
        self._updates: list[JSONDict] = []
        self._next_update_id = first_update_id
        self.confirmed_below = first_update_id  # every update_id below it was confirmed
        self._allowed_updates: frozenset[str] | None = None
        self._open_queries: dict[str, int] = {}
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._webhook = _WebhookState()
        self._poller: object | None = None
        self._menu_buttons: dict[str, JSONDict] = {}

        self._handlers: dict[str, tuple[str, MethodHandler]] = {}
        self._register_builtin_methods()

        self._limiter: _RateLimiter | None = None
        self._limiter_for: RateLimits | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._changed = _Signal()
        self._updates_changed = _Signal()
        self._webhook_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port`` (a free port the first time when ``port`` is 0)."""
        if self._runner is not None:
            raise RuntimeError("the server is already running")
        self._stopping = asyncio.Event()
        self._changed = _Signal()
        self._updates_changed = _Signal()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        if self.control_api:
            app.router.add_route("*", "/_test/{action}", self._handle_control)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        if self._webhook.url:
            self._ensure_webhook_task()

    async def stop(self) -> None:
        """Stop listening; pending long polls and delayed answers return at once."""
        if self._runner is None:
            return
        self._stopping.set()
        self._updates_changed.fire()
        self._changed.fire()
        tasks = [t for t in (self._webhook_task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._webhook_task = None
        self._background.clear()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> BotApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``Bot(base_url=...)`` / ``ApplicationBuilder.base_url(...)``."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``Bot(base_file_url=...)`` / ``ApplicationBuilder.base_file_url(...)``."""
        return f"{self.url}/file/bot"

    # -- chats and users ---------------------------------------------------------------------

    def add_chat(
        self,
        chat_id: int,
        chat_type: str | None = None,
        *,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> JSONDict:
        """Make a chat known (and return its Chat object); the type follows from the id."""
        kind = chat_type or _chat_type_for(chat_id)
        chat: JSONDict = {"id": chat_id, "type": kind}
        if kind == "private":
            user = self.users.get(chat_id, {})
            chat["first_name"] = first_name or user.get("first_name") or f"User {chat_id}"
            if username or user.get("username"):
                chat["username"] = username or user.get("username")
        else:
            chat["title"] = title or f"Chat {chat_id}"
            if username:
                chat["username"] = username
        self.chats[chat_id] = chat
        return chat

    def _user(
        self,
        user_id: int,
        first_name: str | None,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
    ) -> JSONDict:
        user: JSONDict = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or self.users.get(user_id, {}).get("first_name", "Camille"),
        }
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self.users[user_id] = user
        return user

    def _chat(self, chat_id: ChatId) -> JSONDict:
        """The Chat object for a chat_id parameter (a known chat, or one made up)."""
        if isinstance(chat_id, str):
            if chat_id.lstrip("-").isdigit():
                chat_id = int(chat_id)
            else:
                for chat in self.chats.values():
                    if f"@{chat.get('username', '')}".lower() == chat_id.lower():
                        return chat
                if self.require_known_chats:
                    raise bad_request("chat not found")
                fake_id = -1_000_000_000_000 - zlib.crc32(chat_id.lower().encode())
                return self.add_chat(fake_id, "channel", title=chat_id[1:], username=chat_id[1:])
        known = self.chats.get(chat_id)
        if known is not None:
            return known
        if self.require_known_chats:
            raise bad_request("chat not found")
        return self.add_chat(chat_id)

    def _allocate_message_id(self, chat_id: int) -> int:
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        return message_id

    def _store_message(self, message: JSONDict) -> None:
        chat_id = message["chat"]["id"]
        message_id = message["message_id"]
        self._messages[(chat_id, message_id)] = message
        if message_id > self._last_message_id.get(chat_id, 0):
            self._last_message_id[chat_id] = message_id

    def message(self, chat_id: ChatId, message_id: int) -> JSONDict | None:
        """The current state of a stored message (after edits), or None (unknown, deleted)."""
        found = self._messages.get((int(chat_id), message_id))
        return copy.deepcopy(found) if found is not None else None

    # -- injection ---------------------------------------------------------------------------

    def inject_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        chat_title: str | None = None,
        first_name: str = "Camille",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "fr",
        entities: list[JSONDict] | None = None,
        reply_to_message_id: int | None = None,
        date: int | None = None,
        edited: bool = False,
        **extra: Any,
    ) -> int:
        """Queue a message from a user, as Telegram builds it; return its update_id.

        A text starting with ``/`` gets a ``bot_command`` entity at offset 0 (unless
        ``entities`` is given). ``extra`` fields go into the message as they are (``photo``,
        ``document``, ``caption``, ``sticker``...; see :meth:`register_file`). With ``edited``
        the update is an ``edited_message`` of ``extra["message_id"]`` (with an ``edit_date``).
        """
        user = self._user(user_id, first_name, last_name, username, language_code)
        target = user_id if chat_id is None else chat_id
        if chat_type == "private" and target == user_id:
            chat = self.add_chat(user_id, "private", first_name=first_name, username=username)
            if last_name:
                chat["last_name"] = last_name
        else:
            chat = self.chats.get(target) or self.add_chat(target, chat_type, title=chat_title)
        message: JSONDict = {
            "message_id": extra.pop("message_id", None) or self._allocate_message_id(chat["id"]),
            "from": user,
            "chat": chat,
            "date": date if date is not None else _now_date(),
        }
        if text is not None:
            message["text"] = text
            if entities is None and text.startswith("/"):
                command = text.split(maxsplit=1)[0] if text.strip() else text
                entities = [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]
            if entities:
                message["entities"] = entities
        if reply_to_message_id is not None:
            replied = self._messages.get((chat["id"], reply_to_message_id))
            if replied is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat['id']}")
            message["reply_to_message"] = _without_reply(replied)
        message.update(extra)
        if edited:
            message["edit_date"] = _now_date()
            return self.inject_update({"edited_message": message})
        return self.inject_update({"message": message})

    def inject_callback(
        self,
        user_id: int,
        data: str,
        message_id: int,
        chat_id: int | None = None,
        *,
        first_name: str = "Camille",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "fr",
        chat_instance: str | None = None,
    ) -> int:
        """Queue a press on an inline button of message ``message_id``; return the update_id.

        The query carries the stored message (as it is now) when the server knows it, else a
        made-up bot message with that id. Its id is accepted once by ``answerCallbackQuery``.
        """
        user = self._user(user_id, first_name, last_name, username, language_code)
        target = user_id if chat_id is None else chat_id
        stored = self._messages.get((target, message_id))
        if stored is not None:
            message = copy.deepcopy(stored)
        else:
            chat = self.chats.get(target) or self.add_chat(target)
            message = {
                "message_id": message_id,
                "from": self.bot_user,
                "chat": chat,
                "date": _now_date(),
                "text": "",
            }
        query: JSONDict = {
            "id": str(next(self._query_ids)),
            "from": user,
            "chat_instance": chat_instance or str(zlib.crc32(f"chat:{target}".encode()) * 7919),
            "data": data,
            "message": message,
        }
        return self.inject_update({"callback_query": query})

    def inject_update(self, update: JSONDict) -> int:
        """Queue any update (a copy); missing ``update_id`` is assigned. Returns the update_id.

        Messages inside it are stored (for replies and edits), their chats and senders become
        known, and callback query ids become answerable.
        """
        update = copy.deepcopy(update)
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        update_id = int(update["update_id"])
        self._next_update_id = max(self._next_update_id, update_id + 1)
        self._learn(update)
        self.injected[update_id] = update
        if self._is_allowed(_update_type(update)):
            position = len(self._updates)
            while position > 0 and self._updates[position - 1]["update_id"] > update_id:
                position -= 1
            self._updates.insert(position, update)
        self._updates_changed.fire()
        self._changed.fire()
        return update_id

    def _learn(self, update: JSONDict) -> None:
        for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
            message = update.get(key)
            if isinstance(message, dict) and "chat" in message and "message_id" in message:
                self._learn_message(message)
        query = update.get("callback_query")
        if isinstance(query, dict):
            self._open_queries[str(query.get("id"))] = int(update["update_id"])
            sender = query.get("from")
            if isinstance(sender, dict) and "id" in sender:
                self.users.setdefault(sender["id"], sender)
        for key in ("my_chat_member", "chat_member", "chat_join_request"):
            event = update.get(key)
            if isinstance(event, dict) and isinstance(event.get("chat"), dict):
                chat = event["chat"]
                self.chats.setdefault(chat["id"], chat)

    def _learn_message(self, message: JSONDict) -> None:
        chat = message["chat"]
        self.chats.setdefault(chat["id"], chat)
        sender = message.get("from")
        if isinstance(sender, dict) and "id" in sender and not sender.get("is_bot"):
            self.users.setdefault(sender["id"], sender)
        self._store_message(copy.deepcopy(message))

    def register_file(
        self,
        data: bytes,
        filename: str | None = None,
        mime_type: str | None = None,
        *,
        kind: str = "document",
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        """Store a file as if a user had uploaded it, for injected messages::

            doc = server.register_file(b"...", "avis.pdf")
            server.inject_message(42, document=doc.as_document(), caption="Mon avis")

        The bot can then ``getFile`` it and download it through ``base_file_url``.
        """
        return self._store_file(kind, data, filename, mime_type, width=width, height=height)

    def _store_file(
        self,
        kind: str,
        data: bytes,
        filename: str | None,
        mime_type: str | None,
        *,
        url: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        number = next(self._file_ids)
        if not mime_type or mime_type == "application/octet-stream":
            mime_type = (mimetypes.guess_type(filename)[0] if filename else None) or mime_type
        extension = ""
        if filename and "." in filename:
            extension = "." + filename.rsplit(".", 1)[1]
        elif kind == "photo":
            extension = ".jpg"
        if kind == "photo" and (width is None or height is None):
            width, height = _image_size(data) or (1, 1)
        stored = StoredFile(
            file_id=f"{kind[:3].upper()}ACAgIAAxkBAAI{number:08d}",
            file_unique_id=f"AgAD{number:08d}",
            kind=kind,
            data=data,
            filename=filename,
            mime_type=mime_type,
            file_path=f"{kind}s/file_{number}{extension}",
            url=url,
            width=width or 0,
            height=height or 0,
        )
        self.files[stored.file_id] = stored
        return stored

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet confirmed (copies), in update_id order."""
        return copy.deepcopy(self._updates)

    def is_confirmed(self, update_id: int) -> bool:
        """Whether the bot confirmed the update (offset above it, or webhook answered 2xx)."""
        return all(u["update_id"] != update_id for u in self._updates)

    def update(self, update_id: int) -> JSONDict:
        """The update injected with this id (a copy)."""
        return copy.deepcopy(self.injected[update_id])

    def callback_query_id(self, update_id: int) -> str:
        """The callback query id of an update made by :meth:`inject_callback`."""
        return str(self.injected[update_id]["callback_query"]["id"])

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str | Iterable[str] | None,
        kind: FaultKind,
        count: int | None = 1,
        *,
        chat_id: ChatId | None = None,
        when: Callable[[ApiCall], bool] | None = None,
        retry_after: int = 3,
        status: int = 502,
        description: str | None = None,
        delay: float = 6.0,
        apply: bool = True,
    ) -> Fault:
        """Make the next ``count`` matching requests fail (None: every one, until removed).

        ``method``: a method name, several, or None for any method. ``chat_id`` and ``when``
        narrow it to requests for that chat / for which the predicate is true.

        Kinds: ``"429"`` answers Too Many Requests with ``retry_after``; ``"403"`` answers
        "Forbidden: bot was blocked by the user" (or ``description``); ``"5xx"`` answers
        ``status`` (default 502 Bad Gateway); ``"timeout"`` holds the answer ``delay`` seconds
        (longer than the client waits): with ``apply`` the call takes effect at once and only
        the answer is late (the client cannot know it worked), without it nothing happens and
        a 504 comes after the delay (for ``getUpdates`` the client waits its long-poll
        ``timeout`` plus its read timeout, so choose ``delay`` above both); ``"error"``
        answers ``status`` with ``description`` (e.g. ``status=400,
        description="Bad Request: chat not found"``).

        Returns the :class:`Fault`; pass it to :meth:`remove_fault` to cancel it.
        """
        if kind not in ("429", "403", "5xx", "timeout", "error"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "error" and (description is None or status < 400):
            raise ValueError('kind="error" needs an error status and a description')
        if kind == "5xx" and not 500 <= status <= 599:
            raise ValueError("kind='5xx' needs a 5xx status")
        methods: frozenset[str] | None
        if method is None:
            methods = None
        elif isinstance(method, str):
            methods = frozenset({method.lower()})
        else:
            methods = frozenset(m.lower() for m in method)
        fault = Fault(
            kind=kind,
            method=methods,
            count=count,
            chat_id=chat_id,
            when=when,
            retry_after=retry_after,
            status=status,
            description=description,
            delay=delay,
            apply=apply,
        )
        self.faults.append(fault)
        return fault

    def remove_fault(self, fault: Fault) -> None:
        with contextlib.suppress(ValueError):
            self.faults.remove(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def block_chat(self, chat_id: ChatId, description: str | None = None) -> None:
        """Every send, edit or chat action to this chat answers 403 until :meth:`unblock_chat`.

        The description is Telegram's: blocked by the user (private chats) or kicked from the
        group / supergroup / channel.
        """
        if description is None:
            kind = self.chats.get(int(chat_id), {}).get("type") or _chat_type_for(int(chat_id))
            description = {
                "private": "Forbidden: bot was blocked by the user",
                "group": "Forbidden: bot was kicked from the group chat",
                "supergroup": "Forbidden: bot was kicked from the supergroup chat",
                "channel": "Forbidden: bot is not a member of the channel chat",
            }.get(kind, "Forbidden: bot was blocked by the user")
        self._blocked[str(chat_id)] = description

    def unblock_chat(self, chat_id: ChatId) -> None:
        self._blocked.pop(str(chat_id), None)

    # -- records and waiting -----------------------------------------------------------------

    def messages_to(self, chat_id: ChatId) -> list[SentRecord]:
        """Messages sent to the chat (sends only, not edits), oldest first."""
        return [r for r in self.sent if r.is_send and _same_chat(r.chat_id, chat_id)]

    def edits_to(self, chat_id: ChatId) -> list[SentRecord]:
        return [r for r in self.sent if r.is_edit and _same_chat(r.chat_id, chat_id)]

    def calls(self, method: str) -> list[ApiCall]:
        """Every request for this method (whatever the answer), oldest first."""
        return [c for c in self.requests if c.method.lower() == method.lower()]

    def get_commands(
        self, scope: JSONDict | str = "default", language_code: str = ""
    ) -> list[JSONDict]:
        """The commands ``setMyCommands`` set for this scope (a dict or its type) and language."""
        scope_dict = {"type": scope} if isinstance(scope, str) else scope
        return list(self.commands.get((_scope_key(scope_dict), language_code), []))

    def clear_records(self) -> None:
        """Forget what was recorded (sent, requests, answers, actions, deliveries, stats)."""
        self.sent.clear()
        self.requests.clear()
        self.callback_answers.clear()
        self.chat_actions.clear()
        self.webhook_deliveries.clear()
        self.stats = ServerStats()

    async def wait_until(
        self, condition: Callable[[], T], timeout: float = 5.0, message: str | None = None
    ) -> T:
        """Wait until ``condition()`` is truthy (checked after every change); return its value.

        Raises AssertionError (with the latest records) after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{message or 'condition not met'} within {timeout}s; {self._describe()}"
                )
            await self._changed.wait(remaining)

    async def wait_for(
        self, predicate: Callable[[SentRecord], bool], timeout: float = 5.0, *, since: int = 0
    ) -> SentRecord:
        """The first record of ``sent[since:]`` matching ``predicate``, waiting for it."""

        def find() -> SentRecord | None:
            return next((r for r in self.sent[since:] if predicate(r)), None)

        found = await self.wait_until(find, timeout, "no matching sent record")
        assert found is not None
        return found

    async def wait_for_messages(
        self, chat_id: ChatId, n: int = 1, timeout: float = 5.0, *, since: int = 0
    ) -> list[SentRecord]:
        """The first ``n`` messages sent to the chat (in ``sent[since:]``), waiting for them."""

        def enough() -> list[SentRecord] | None:
            found = [r for r in self.sent[since:] if r.is_send and _same_chat(r.chat_id, chat_id)]
            return found[:n] if len(found) >= n else None

        found = await self.wait_until(enough, timeout, f"fewer than {n} message(s) to {chat_id}")
        assert found is not None
        return found

    async def wait_for_callback_answer(
        self, update_id: int, timeout: float = 5.0
    ) -> CallbackAnswer:
        """The answer to the callback query injected as ``update_id``, waiting for it."""

        def find() -> CallbackAnswer | None:
            return next((a for a in self.callback_answers if a.update_id == update_id), None)

        found = await self.wait_until(find, timeout, f"no answer to callback update {update_id}")
        assert found is not None
        return found

    async def wait_confirmed(self, update_id: int, timeout: float = 5.0) -> None:
        """Wait until the bot has confirmed the update."""
        await self.wait_until(
            lambda: self.is_confirmed(update_id), timeout, f"update {update_id} not confirmed"
        )

    def _describe(self) -> str:
        recent = [
            f"{r.method}(chat={r.chat_id}, id={r.message_id}, text={_shorten(r.plain_text)!r})"
            for r in self.sent[-5:]
        ]
        errors = [
            f"{c.method}: {c.status} {c.description}"
            for c in self.requests[-20:]
            if c.status is not None and c.status >= 400
        ][-5:]
        return (
            f"{len(self.sent)} sent, last: {recent or 'none'}; recent errors: {errors or 'none'}; "
            f"{len(self._updates)} pending update(s)"
        )

    # -- HTTP --------------------------------------------------------------------------------

    def add_method(self, name: str, handler: MethodHandler) -> None:
        """Serve another Bot API method (or replace one): ``async handler(call) -> result``.

        The handler gets the :class:`ApiCall` and returns the ``result`` (JSON-serialisable)
        or raises :class:`ApiError`. Faults, blocked chats and rate limits apply to it too.
        """
        self._handlers[name.lower()] = (name, handler)

    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _json_response(ApiError(401, "Unauthorized").payload(), 401)
        method_name = request.match_info["method"]
        entry = self._handlers.get(method_name.lower())
        if entry is None:
            return _json_response(ApiError(404, "Not Found").payload(), 404)
        canonical, handler = entry
        try:
            params, files = await _read_params(request)
        except (ValueError, UnicodeDecodeError) as exc:
            error = bad_request(f"can't parse request: {exc}")
            return _json_response(error.payload(), 400)
        call = ApiCall(method=canonical, params=params, files=files, time=time.monotonic())
        self.requests.append(call)
        self.stats.requests[canonical] += 1
        try:
            result = await self._dispatch(call, handler)
        except ApiError as error:
            status, body = error.status, error.payload()
            call.description = error.description
        else:
            status, body = 200, {"ok": True, "result": result}
        call.status = status
        self.stats.responses[status] += 1
        self._changed.fire()
        return _json_response(body, status)

    async def _dispatch(self, call: ApiCall, handler: MethodHandler) -> Any:
        fault = self._take_fault(call)
        if fault is not None:
            self.stats.faults += 1
            if fault.kind == "timeout":
                if not fault.apply:
                    await self._sleep(fault.delay)
                    raise ApiError(504, "Gateway Timeout")
                result = await handler(call)
                self._changed.fire()
                await self._sleep(fault.delay)
                return result
            raise _fault_error(fault)
        chat_id = call.params.get("chat_id")
        lower = call.method.lower()
        if chat_id is not None and _is_chat_bound(lower):
            description = self._blocked.get(str(chat_id))
            if description is not None:
                self.stats.blocked += 1
                raise ApiError(403, description)
        if chat_id is not None and self.rate_limits is not None and _is_rate_limited(lower):
            if self._limiter is None or self._limiter_for is not self.rate_limits:
                self._limiter = _RateLimiter(self.rate_limits)
                self._limiter_for = self.rate_limits
            group = not (isinstance(chat_id, int) and chat_id > 0)
            retry_after = self._limiter.check(chat_id, group)
            if retry_after is not None:
                self.stats.rate_limited += 1
                raise too_many_requests(retry_after)
        return await handler(call)

    def _take_fault(self, call: ApiCall) -> Fault | None:
        for fault in self.faults:
            if fault.matches(call):
                fault.hits += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    async def _sleep(self, delay: float) -> None:
        """Sleep, but wake up when the server stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _json_response(ApiError(404, "Not Found").payload(), 404)
        path = request.match_info["path"]
        for stored in self.files.values():
            if stored.file_path == path:
                return web.Response(
                    body=stored.data, content_type=stored.mime_type or "application/octet-stream"
                )
        return _json_response(ApiError(404, "Not Found").payload(), 404)

    # -- methods -----------------------------------------------------------------------------

    def _register_builtin_methods(self) -> None:
        builtin: dict[str, MethodHandler] = {
            "getMe": self._get_me,
            "logOut": self._ok,
            "close": self._ok,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
        }
        for name, handler in builtin.items():
            self.add_method(name, handler)
        for setting in ("Description", "ShortDescription", "Name"):
            self.add_method(f"setMy{setting}", self._setting_setter(setting))
            self.add_method(f"getMy{setting}", self._setting_getter(setting))

    async def _ok(self, call: ApiCall) -> bool:
        return True

    async def _get_me(self, call: ApiCall) -> JSONDict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    # updates

    def _effective_allowed(self) -> frozenset[str] | None:
        """The update types delivered (None: all but the default-excluded ones)."""
        if self._webhook.url and self._webhook.allowed_updates:
            return frozenset(self._webhook.allowed_updates)
        return self._allowed_updates

    def _is_allowed(self, update_type: str) -> bool:
        allowed = self._effective_allowed()
        if allowed is None:
            return update_type not in _DEFAULT_EXCLUDED_UPDATES
        return update_type in allowed

    def _deliverable(self) -> list[JSONDict]:
        """The pending updates, without those of types the bot does not receive (dropped)."""
        self._updates = [u for u in self._updates if self._is_allowed(_update_type(u))]
        return self._updates

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            before = len(self._updates)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self.confirmed_below = max(self.confirmed_below, offset)
            if len(self._updates) != before:
                self._changed.fire()
        elif offset < 0:
            kept = self._updates[offset:]
            if kept:
                self.confirmed_below = max(self.confirmed_below, kept[0]["update_id"])
            self._updates = kept
            self._changed.fire()

    async def _get_updates(self, call: ApiCall) -> list[JSONDict]:
        if self._webhook.url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        params = call.params
        offset = _int(params.get("offset"), 0)
        limit = min(max(_int(params.get("limit"), 100), 1), 100)
        timeout = max(_float(params.get("timeout"), 0.0), 0.0)
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            self._allowed_updates = frozenset(allowed) if allowed else None
        self._confirm(offset)
        token = object()
        superseded = self._poller is not None
        self._poller = token
        if superseded:
            self._updates_changed.fire()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                batch = self._deliverable()[:limit]
                if batch or self._stopping.is_set():
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._updates_changed.wait(remaining)
                if self._poller is not token:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )
        finally:
            if self._poller is token:
                self._poller = None
        return copy.deepcopy(batch)

    # webhook

    async def _set_webhook(self, call: ApiCall) -> bool:
        params = call.params
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("secret token contains unallowed characters")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        allowed = params.get("allowed_updates")
        self._webhook = _WebhookState(
            url=url,
            secret_token=str(secret) if secret else None,
            max_connections=_int(params.get("max_connections"), 40),
            allowed_updates=list(allowed) if allowed else None,
            ip_address=params.get("ip_address"),
        )
        self._updates_changed.fire()
        if url:
            self._ensure_webhook_task()
        return True

    async def _delete_webhook(self, call: ApiCall) -> bool:
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        self._webhook = _WebhookState()
        self._updates_changed.fire()
        return True

    async def _get_webhook_info(self, call: ApiCall) -> JSONDict:
        hook = self._webhook
        info: JSONDict = {
            "url": hook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if hook.url:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.ip_address:
                info["ip_address"] = hook.ip_address
        if hook.last_error_date is not None:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
        return info

    def _ensure_webhook_task(self) -> None:
        if self._runner is None or (self._webhook_task and not self._webhook_task.done()):
            return
        self._webhook_task = asyncio.get_running_loop().create_task(self._webhook_loop())

    async def _webhook_loop(self) -> None:
        failures = 0
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stopping.is_set() and self._webhook.url:
                hook = self._webhook
                batch = self._deliverable()
                if not batch:
                    await self._updates_changed.wait(None)
                    continue
                update = batch[0]
                headers = {"Content-Type": "application/json"}
                if hook.secret_token:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
                status: int | None = None
                error: str | None = None
                body = b""
                try:
                    async with session.post(
                        hook.url, data=json.dumps(update), headers=headers
                    ) as response:
                        status = response.status
                        body = await response.read()
                except TimeoutError:
                    error = "Read timeout expired"
                except aiohttp.ClientError as exc:
                    error = f"Connection failed: {exc.__class__.__name__}"
                self.webhook_deliveries.append(
                    WebhookDelivery(update["update_id"], status, error, time.monotonic())
                )
                if status is not None and 200 <= status <= 299:
                    failures = 0
                    if self._webhook is hook:
                        self._updates = [
                            u for u in self._updates if u["update_id"] != update["update_id"]
                        ]
                    self._changed.fire()
                    await self._run_webhook_reply(body)
                    continue
                failures += 1
                self.stats.webhook_failures += 1
                hook.last_error_date = _now_date()
                hook.last_error_message = error or f"Wrong response from the webhook: {status}"
                self._changed.fire()
                await self._sleep(min(self.webhook_retry_delay * 2 ** (failures - 1), 5.0))

    async def _run_webhook_reply(self, body: bytes) -> None:
        """A webhook may answer with a method call, as Telegram allows; run it (result lost)."""
        try:
            reply = json.loads(body) if body else None
        except ValueError:
            return
        if not isinstance(reply, dict) or "method" not in reply:
            return
        entry = self._handlers.get(str(reply["method"]).lower())
        if entry is None:
            return
        params = {k: _decode_param(k, v) for k, v in reply.items() if k != "method"}
        call = ApiCall(method=entry[0], params=params, files={}, time=time.monotonic())
        self.requests.append(call)
        try:
            await self._dispatch(call, entry[1])
            call.status = 200
        except ApiError as error:
            call.status, call.description = error.status, error.description

    # sending

    def _format(self, text: str, parse_mode: Any, entities: Any) -> tuple[str, list[JSONDict]]:
        mode = str(parse_mode or "").lower()
        try:
            if mode == "html":
                plain, parsed = parse_html(text, strict=self.strict_html)
            elif mode == "markdownv2":
                plain, parsed = parse_markdown_v2(text)
            elif mode == "markdown":
                plain, parsed = text, []
            elif mode == "":
                plain, parsed = text, [dict(e) for e in entities or [] if isinstance(e, dict)]
            else:
                raise bad_request("unsupported parse_mode")
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        return _trim(plain, parsed)

    def _chat_param(self, call: ApiCall) -> JSONDict:
        chat_id = call.params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise bad_request("chat_id is empty")
        return self._chat(chat_id)

    def _reply_to(self, call: ApiCall, chat: JSONDict) -> JSONDict | None:
        params = call.params
        parameters = params.get("reply_parameters")
        if isinstance(parameters, dict):
            message_id = parameters.get("message_id")
            allow = bool(parameters.get("allow_sending_without_reply"))
            target = parameters.get("chat_id")
            target_chat = self._chat(target) if target is not None else chat
        elif params.get("reply_to_message_id") is not None:
            message_id = params["reply_to_message_id"]
            allow = bool(params.get("allow_sending_without_reply"))
            target_chat = chat
        else:
            return None
        replied = self._messages.get((target_chat["id"], _int(message_id, 0)))
        if replied is None:
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return _without_reply(replied)

    def _new_message(self, chat: JSONDict, content: JSONDict) -> JSONDict:
        message: JSONDict = {
            "message_id": self._allocate_message_id(chat["id"]),
            "from": self.bot_user,
            "chat": chat,
            "date": _now_date(),
            **content,
        }
        self._messages[(chat["id"], message["message_id"])] = message
        return message

    def _record(
        self,
        call: ApiCall,
        chat_id: ChatId | None,
        message: JSONDict | None,
        *,
        text: str | None = None,
        reply_markup: JSONDict | None = None,
        files: list[StoredFile] | None = None,
        message_id: int | None = None,
    ) -> None:
        snapshot = copy.deepcopy(message) if message is not None else None
        self.sent.append(
            SentRecord(
                method=call.method,
                chat_id=chat_id,
                message_id=message["message_id"] if message is not None else message_id,
                text=text,
                parse_mode=call.params.get("parse_mode"),
                reply_markup=copy.deepcopy(reply_markup),
                files=files or [],
                time=time.monotonic(),
                params=call.params,
                message=snapshot,
            )
        )
        self._changed.fire()

    def _common_content(self, call: ApiCall, chat: JSONDict) -> tuple[JSONDict, JSONDict | None]:
        """reply_to_message and an inline reply_markup, shared by the send methods."""
        markup = _check_reply_markup(call.params.get("reply_markup"))
        content: JSONDict = {}
        replied = self._reply_to(call, chat)
        if replied is not None:
            content["reply_to_message"] = replied
        if markup is not None and "inline_keyboard" in markup:
            content["reply_markup"] = markup
        return content, markup

    async def _send_message(self, call: ApiCall) -> JSONDict:
        chat = self._chat_param(call)
        raw = call.params.get("text")
        if raw is None:
            raise bad_request("message text is empty")
        text = raw if isinstance(raw, str) else json.dumps(raw)
        plain, entities = self._format(
            text, call.params.get("parse_mode"), call.params.get("entities")
        )
        if not plain:
            raise bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")
        content, markup = self._common_content(call, chat)
        body: JSONDict = {"text": plain}
        if entities:
            body["entities"] = entities
        preview = call.params.get("link_preview_options")
        if isinstance(preview, dict):
            body["link_preview_options"] = preview
        message = self._new_message(chat, {**body, **content})
        self._record(call, call.params["chat_id"], message, text=text, reply_markup=markup)
        return message

    def _caption(self, call: ApiCall) -> JSONDict:
        raw = call.params.get("caption")
        if raw is None or raw == "":
            return {}
        plain, entities = self._format(
            str(raw), call.params.get("parse_mode"), call.params.get("caption_entities")
        )
        if len(plain) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        content: JSONDict = {}
        if plain:
            content["caption"] = plain
        if entities:
            content["caption_entities"] = entities
        return content

    def _file_param(self, call: ApiCall, kind: str) -> StoredFile:
        value = call.params.get(kind)
        upload: UploadedFile | None = call.files.get(kind)
        if isinstance(value, str) and value.startswith("attach://"):
            upload = call.files.get(value[len("attach://") :])
            if upload is None:
                raise bad_request(f'can\'t find attached file "{value[len("attach://") :]}"')
        if upload is not None:
            if not upload.data:
                raise bad_request("file must be non-empty")
            return self._store_file(kind, upload.data, upload.filename, upload.content_type)
        if isinstance(value, str) and value:
            known = self.files.get(value)
            if known is not None:
                return known
            if value.startswith(("http://", "https://")):
                name = value.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or None
                return self._store_file(kind, b"", name, None, url=value)
            raise bad_request("wrong file identifier/HTTP URL specified")
        raise bad_request(f"there is no {kind} in the request")

    async def _send_file(self, call: ApiCall, kind: str) -> JSONDict:
        chat = self._chat_param(call)
        caption = self._caption(call)
        stored = self._file_param(call, kind)
        content, markup = self._common_content(call, chat)
        media: JSONDict = {kind: stored.as_photo() if kind == "photo" else stored.as_document()}
        message = self._new_message(chat, {**media, **caption, **content})
        self._record(
            call,
            call.params["chat_id"],
            message,
            text=call.params.get("caption"),
            reply_markup=markup,
            files=[stored],
        )
        return message

    async def _send_document(self, call: ApiCall) -> JSONDict:
        return await self._send_file(call, "document")

    async def _send_photo(self, call: ApiCall) -> JSONDict:
        return await self._send_file(call, "photo")

    async def _send_chat_action(self, call: ApiCall) -> bool:
        chat = self._chat_param(call)
        action = str(call.params.get("action") or "")
        if action not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self.chat_actions.append(ChatAction(chat["id"], action, time.monotonic()))
        self._changed.fire()
        return True

    # editing

    def _editable(self, call: ApiCall) -> JSONDict:
        chat = self._chat_param(call)
        message_id = _int(call.params.get("message_id"), 0)
        if not message_id:
            raise bad_request("message identifier is not specified")
        message = self._messages.get((chat["id"], message_id))
        if message is None:
            raise bad_request("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise bad_request("message can't be edited")
        return message

    async def _edit(
        self,
        call: ApiCall,
        change: Callable[[JSONDict], JSONDict],
        text: str | None,
    ) -> JSONDict | bool:
        """Apply ``change(message) -> new fields`` (None values remove fields)."""
        markup = _check_reply_markup(call.params.get("reply_markup"))
        inline_markup = markup if markup is not None and "inline_keyboard" in markup else None
        if call.params.get("inline_message_id"):
            self._record(call, None, None, text=text, reply_markup=markup)
            return True
        message = self._editable(call)
        fields = {**change(message), "reply_markup": inline_markup}
        if all(message.get(key) == value for key, value in fields.items()):
            raise bad_request(NOT_MODIFIED)
        for key, value in fields.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = _now_date()
        self._record(call, call.params["chat_id"], message, text=text, reply_markup=markup)
        return copy.deepcopy(message)

    async def _edit_message_text(self, call: ApiCall) -> JSONDict | bool:
        raw = call.params.get("text")
        if raw is None:
            raise bad_request("message text is empty")
        text = raw if isinstance(raw, str) else json.dumps(raw)
        plain, entities = self._format(
            text, call.params.get("parse_mode"), call.params.get("entities")
        )
        if not plain:
            raise bad_request("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise bad_request("message is too long")

        def change(message: JSONDict) -> JSONDict:
            if "text" not in message:
                raise bad_request("there is no text in the message to edit")
            return {"text": plain, "entities": entities or None}

        return await self._edit(call, change, text)

    async def _edit_message_caption(self, call: ApiCall) -> JSONDict | bool:
        caption = self._caption(call)

        def change(message: JSONDict) -> JSONDict:
            if "text" in message:
                raise bad_request("there is no caption in the message to edit")
            return {
                "caption": caption.get("caption"),
                "caption_entities": caption.get("caption_entities"),
            }

        return await self._edit(call, change, call.params.get("caption"))

    async def _edit_message_reply_markup(self, call: ApiCall) -> JSONDict | bool:
        return await self._edit(call, lambda message: {}, None)

    async def _delete_message(self, call: ApiCall) -> bool:
        chat = self._chat_param(call)
        message_id = _int(call.params.get("message_id"), 0)
        if self._messages.pop((chat["id"], message_id), None) is None:
            raise bad_request("message to delete not found")
        self._record(call, call.params["chat_id"], None, message_id=message_id)
        return True

    # callbacks

    async def _answer_callback_query(self, call: ApiCall) -> bool:
        query_id = str(call.params.get("callback_query_id") or "")
        if query_id not in self._open_queries:
            raise bad_request(_QUERY_INVALID)
        text = call.params.get("text")
        if text is not None and len(str(text)) > MAX_CALLBACK_ANSWER_LENGTH:
            raise bad_request("MESSAGE_TOO_LONG")
        update_id = self._open_queries.pop(query_id)
        cache_time = call.params.get("cache_time")
        self.callback_answers.append(
            CallbackAnswer(
                callback_query_id=query_id,
                update_id=update_id,
                text=str(text) if text is not None else None,
                show_alert=bool(call.params.get("show_alert")),
                url=call.params.get("url"),
                cache_time=_int(cache_time, 0) if cache_time is not None else None,
                time=time.monotonic(),
            )
        )
        self._changed.fire()
        return True

    # files and chats

    async def _get_file(self, call: ApiCall) -> JSONDict:
        stored = self.files.get(str(call.params.get("file_id") or ""))
        if stored is None or stored.url is not None:
            raise bad_request("invalid file_id")
        return stored.as_file()

    async def _get_chat(self, call: ApiCall) -> JSONDict:
        chat = self._chat_param(call)
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_chat_member(self, call: ApiCall) -> JSONDict:
        chat = self._chat_param(call)
        user_id = _int(call.params.get("user_id"), 0)
        if not user_id:
            raise bad_request("user_id is empty")
        override = self.chat_members.get((chat["id"], user_id))
        if override is not None:
            return copy.deepcopy(override)
        if user_id == self.bot_id:
            return {"status": "member", "user": self.bot_user}
        user = self.users.get(user_id)
        if user is None:
            if chat["type"] == "private" and chat["id"] != user_id:
                raise bad_request("user not found")
            user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
        return {"status": "member", "user": user}

    # commands and settings

    async def _set_my_commands(self, call: ApiCall) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        cleaned: list[JSONDict] = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            name = str(command.get("command", ""))
            description = str(command.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name.lstrip("/")):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name.lstrip("/"), "description": description})
        key = self._commands_key(call)
        if cleaned:
            self.commands[key] = cleaned
        else:
            self.commands.pop(key, None)
        self._changed.fire()
        return True

    async def _get_my_commands(self, call: ApiCall) -> list[JSONDict]:
        return copy.deepcopy(self.commands.get(self._commands_key(call), []))

    async def _delete_my_commands(self, call: ApiCall) -> bool:
        self.commands.pop(self._commands_key(call), None)
        self._changed.fire()
        return True

    def _commands_key(self, call: ApiCall) -> tuple[str, str]:
        scope = call.params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad_request("can't parse BotCommandScope JSON object")
        language = str(call.params.get("language_code") or "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        return _scope_key(scope), language

    async def _set_chat_menu_button(self, call: ApiCall) -> bool:
        button = call.params.get("menu_button") or {"type": "default"}
        self._menu_buttons[str(call.params.get("chat_id", ""))] = button
        return True

    async def _get_chat_menu_button(self, call: ApiCall) -> JSONDict:
        key = str(call.params.get("chat_id", ""))
        return self._menu_buttons.get(key) or self._menu_buttons.get("") or {"type": "commands"}

    def _setting_setter(self, setting: str) -> MethodHandler:
        field_name = _snake(setting)

        async def handler(call: ApiCall) -> bool:
            language = str(call.params.get("language_code") or "")
            self.bot_settings[(field_name, language)] = call.params.get(field_name) or ""
            return True

        return handler

    def _setting_getter(self, setting: str) -> MethodHandler:
        field_name = _snake(setting)

        async def handler(call: ApiCall) -> JSONDict:
            language = str(call.params.get("language_code") or "")
            value = self.bot_settings.get((field_name, language))
            if value is None:
                value = self.bot_settings.get((field_name, ""), "")
            if field_name == "name" and not value:
                value = self.bot_user["first_name"]
            return {field_name: value}

        return handler

    # -- control API (standalone mode) -------------------------------------------------------

    async def _handle_control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result: Any
            if action == "inject_message":
                result = {"update_id": self.inject_message(**body)}
            elif action == "inject_callback":
                result = {"update_id": self.inject_callback(**body)}
            elif action == "inject_update":
                result = {"update_id": self.inject_update(body)}
            elif action == "fail_next":
                method = body.pop("method", None)
                kind = body.pop("kind")
                fault = self.fail_next(method, kind, body.pop("count", 1), **body)
                result = {"kind": fault.kind}
            elif action == "block_chat":
                self.block_chat(body["chat_id"], body.get("description"))
                result = True
            elif action == "unblock_chat":
                self.unblock_chat(body["chat_id"])
                result = True
            elif action == "sent":
                result = [record.to_json() for record in self.sent]
            elif action == "state":
                result = {
                    "pending_updates": self.pending_updates,
                    "confirmed_below": self.confirmed_below,
                    "webhook": self._webhook.url,
                    "callback_answers": [dataclasses.asdict(a) for a in self.callback_answers],
                    "stats": {
                        "requests": dict(self.stats.requests),
                        "responses": {str(k): v for k, v in self.stats.responses.items()},
                        "rate_limited": self.stats.rate_limited,
                        "faults": self.stats.faults,
                    },
                }
            else:
                return _json_response({"ok": False, "description": "unknown action"}, 404)
        except (KeyError, TypeError, ValueError) as exc:
            return _json_response({"ok": False, "description": f"{exc!r}"}, 400)
        return _json_response({"ok": True, "result": result}, 200)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _json_response(body: JSONDict, status: int) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json"
    )


def _fault_error(fault: Fault) -> ApiError:
    if fault.kind == "429":
        return too_many_requests(fault.retry_after)
    if fault.kind == "403":
        return ApiError(403, fault.description or "Forbidden: bot was blocked by the user")
    if fault.kind == "5xx":
        phrase = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return ApiError(
            fault.status, fault.description or phrase.get(fault.status, "Server Error")
        )
    return ApiError(fault.status, fault.description or "Bad Request")


async def _read_params(request: web.Request) -> tuple[JSONDict, dict[str, UploadedFile]]:
    """Parameters from the query string and the body (form, multipart or JSON), decoded."""
    raw: dict[str, Any] = dict(request.query)
    files: dict[str, UploadedFile] = {}
    if request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the JSON body must be an object")
            raw.update(body)
        elif content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    data = await part.read(decode=True)
                    files[part.name] = UploadedFile(
                        field=part.name,
                        filename=part.filename,
                        content_type=part.headers.get("Content-Type"),
                        data=bytes(data),
                    )
                else:
                    raw[part.name] = await part.text()
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    raw[key] = value
    return {key: _decode_param(key, value) for key, value in raw.items()}, files


def _decode_param(key: str, value: Any) -> Any:
    """Lenient decoding: JSON-encoded non-string parameters become values again."""
    if not isinstance(value, str):
        return value
    if key in _STRING_PARAMS:
        return value
    if key in _CHAT_ID_PARAMS:
        stripped = value.strip()
        return int(stripped) if re.fullmatch(r"-?\d+", stripped) else value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid integer value {value!r}") from None


def _float(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid number {value!r}") from None


def _chat_type_for(chat_id: int) -> str:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def _update_type(update: JSONDict) -> str:
    return next((key for key in update if key != "update_id"), "")


def _without_reply(message: JSONDict) -> JSONDict:
    return copy.deepcopy({k: v for k, v in message.items() if k != "reply_to_message"})


def _scope_key(scope: JSONDict) -> str:
    kind = str(scope.get("type", "default"))
    parts = [kind]
    if "chat_id" in scope:
        parts.append(str(scope["chat_id"]))
    if "user_id" in scope:
        parts.append(str(scope["user_id"]))
    return ":".join(parts)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _shorten(text: str | None, width: int = 60) -> str | None:
    if text is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def _is_chat_bound(method: str) -> bool:
    """Methods refused with 403 in a chat that blocked the bot."""
    return method.startswith(("send", "edit", "copy", "forward"))


def _is_rate_limited(method: str) -> bool:
    return method.startswith(("send", "copy", "forward")) and method != "sendchataction"


def _check_reply_markup(markup: Any) -> JSONDict | None:
    if markup is None or markup == "":
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise bad_request(
                        'can\'t parse inline keyboard button: Field "text" must be of type String'
                    )
                actions = [key for key in _BUTTON_ACTIONS if button.get(key) not in (None, "")]
                if not actions:
                    raise bad_request(
                        "can't parse inline keyboard button: Text buttons are unallowed in the "
                        "inline keyboard"
                    )
                data = button.get("callback_data")
                if data not in (None, "") and (
                    len(str(data).encode("utf-8")) > MAX_CALLBACK_DATA_BYTES
                ):
                    raise bad_request("BUTTON_DATA_INVALID")
                url = button.get("url")
                if url is not None and (not isinstance(url, str) or re.search(r"\s", url)):
                    raise bad_request("BUTTON_URL_INVALID")
    elif "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "keyboard" of the ReplyKeyboardMarkup should be an Array of Arrays'
            )
    return markup


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image, if recognisable."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            i += 2 + length
    return None


# --------------------------------------------------------------------------------------------
# Standalone
# --------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    server = BotApiServer(
        args.token, args.username, host=args.host, port=args.port, control_api=True
    )
    await server.start()
    ready = {
        "base_url": server.base_url,
        "base_file_url": server.base_file_url,
        "port": server.port,
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A Telegram Bot API test server on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--token", default="123456:TEST")
    parser.add_argument("--username", default="parlons_test_bot")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
