"""Portable outbound messages → Matrix event contents.

Bot output is ``m.notice`` (the convention for bots: other bots do not answer notices) with an
HTML ``formatted_body`` and a plain ``body``. List items and numbered options are wrapped in
``<ul>``. A message too large for one event (65,536 bytes of canonical JSON, and clients get slow
far before that) is split between blocks into several events.
"""

from __future__ import annotations

import html
import json
from typing import Any

from bot.messages import Block, OutboundMessage, RichText, Span, render_html, render_plain

# Far below Matrix's 65,536-byte event limit: leaves room for encryption (base64 adds a third)
# and for the envelope.
MAX_EVENT_BYTES = 24_000
# What the core is told (Capabilities.max_length): one contribution or page fits easily.
MAX_LENGTH = 8_000
# A custom field on every bot event: the outbox key of the reply, so that duplicates can be
# detected (and tested) from the room's timeline alone.
KEY_FIELD = "org.parlons.key"


def html_of(rt: RichText) -> str:
    """``render_html(block_tags=True)`` with runs of list items wrapped in ``<ul>``."""
    out: list[str] = []
    in_list = False
    for block in rt.blocks:
        is_item = block.kind in ("li", "opt")
        if is_item and not in_list:
            out.append("<ul>")
        elif not is_item and in_list:
            out.append("</ul>")
        in_list = is_item
        out.append(render_html(RichText((block,)), block_tags=True))
    if in_list:
        out.append("</ul>")
    return "".join(out)


def notice_content(rt: RichText) -> dict[str, Any]:
    return {
        "msgtype": "m.notice",
        "body": render_plain(rt),
        "format": "org.matrix.custom.html",
        "formatted_body": html_of(rt),
    }


def _size(content: dict[str, Any]) -> int:
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8"))


def _split_block(block: Block, limit: int) -> list[Block]:
    """A single block too large for one event: cut its spans' text into pieces."""
    pieces: list[Block] = []
    current: list[Span] = []
    used = 0
    for span in block.spans:
        text = span.text
        while text:
            room = max(1, limit - used)
            chunk, text = text[:room], text[room:]
            current.append(Span(chunk, span.bold, span.italic, span.code, span.link))
            used += len(chunk)
            if used >= limit:
                pieces.append(Block(tuple(current), block.kind))
                current, used = [], 0
    if current:
        pieces.append(Block(tuple(current), block.kind))
    return pieces


def split(rt: RichText, max_bytes: int = MAX_EVENT_BYTES) -> list[RichText]:
    """Cut rich text between blocks so that each part's content fits in ``max_bytes``."""
    if _size(notice_content(rt)) <= max_bytes:
        return [rt]
    blocks: list[Block] = []
    # Characters are at most 4 bytes, and HTML escaping can triple some: be conservative.
    char_limit = max(64, max_bytes // 12)
    for block in rt.blocks:
        if _size(notice_content(RichText((block,)))) > max_bytes:
            blocks.extend(_split_block(block, char_limit))
        else:
            blocks.append(block)
    parts: list[RichText] = []
    current: tuple[Block, ...] = ()
    for block in blocks:
        candidate = (*current, block)
        if current and _size(notice_content(RichText(candidate))) > max_bytes:
            parts.append(RichText(current))
            current = (block,)
        else:
            current = candidate
    if current:
        parts.append(RichText(current))
    return parts


def contents(message: OutboundMessage) -> list[dict[str, Any]]:
    """The ``m.room.message`` contents for one outbound message (text parts first; an
    attachment is sent separately by the channel). A lone ``notice`` (the answer to a pressed
    option) becomes the text when there is no other."""
    rt = message.text
    if not rt.blocks and message.notice:
        rt = RichText().p(message.notice)
    if not rt.blocks:
        return []
    parts = [notice_content(part) for part in split(rt)]
    if message.reply_to is not None:
        parts[0]["m.relates_to"] = {"m.in_reply_to": {"event_id": message.reply_to.message_id}}
    return parts


def escape(text: str) -> str:
    return html.escape(text, quote=False)
