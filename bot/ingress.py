"""Ingress: what every inbound event goes through before it is stored or handled, in one place.

- Text is normalized: control characters are removed (``\\n`` and ``\\t`` are kept; ``\\r\\n``
  and a lone ``\\r`` become ``\\n``), then Unicode NFC. This applies to every text an event
  carries: message text, command name, arguments and rest, action ids, reaction keys, display
  names, chat and user ids, file names. A NUL (U+0000), which Synapse accepts, can then never
  reach a JSON column (PostgreSQL cannot read ``\\u0000`` out of JSON as text, so one such row
  used to break every erasure).
- Display names are cut to ``DISPLAY_NAME_MAX`` characters (Matrix allows 256 and more).
- The raw platform payload is not kept: it holds what the core does not need (the text and
  sender of a replied-to or forwarded message, whole profiles...). The event stays complete for
  the core (the payload says what was sent, and to which message it answers).
- A file's content is kept only when the sender is an administrator (a consultation file to
  import); a citizen's document keeps its name, type and size only.

``is_blank`` tells whether a text is empty once whitespace and invisible characters are gone
(contributions and comments refuse such texts).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container
from dataclasses import fields, replace
from typing import Any

from bot.messages import EventContext, FileReceived, InboundEvent, MessageRef

# Citizen.display_name is VARCHAR(255).
DISPLAY_NAME_MAX = 255
# Ids and keys are VARCHAR(255) columns too; a longer one is no platform's and is cut.
ID_MAX = 255

# C0 and C1 controls except \t and \n (\r is handled before), and the other characters that
# have no business in stored text: the BOM's "non-character" cousins U+FFFE/U+FFFF.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")

# Characters that show nothing, beyond what str.isspace() knows: zero-width space, non-joiner
# and joiner, word joiner and the invisible operators, the BOM / zero-width no-break space,
# soft hyphen, Mongolian vowel separator, combining grapheme joiner, Hangul fillers, braille
# blank, and the bidirectional marks.
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f"
    "\u115f\u1160\u3164\uffa0\u2800\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2066\u2067\u2068\u2069"
)


def normalize_text(value: str) -> str:
    """Control characters removed (``\\n`` and ``\\t`` kept), then NFC."""
    if value.isascii() and value.isprintable():
        return value  # the common case, unchanged
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", _CONTROLS.sub("", value))


def normalize_line(value: str, limit: int) -> str:
    """A one-line value (name, id): normalized, newlines and tabs turned into spaces, cut."""
    return normalize_text(value).replace("\n", " ").replace("\t", " ")[:limit]


def is_blank(value: str) -> bool:
    """True if nothing visible is left once whitespace and invisible characters are removed."""
    return all(
        ch.isspace() or ch in _INVISIBLE or unicodedata.category(ch) == "Cf" for ch in value
    )


def _normalize_value(value: Any) -> Any:
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, tuple):
        return tuple(_normalize_value(v) for v in value)
    if isinstance(value, MessageRef):
        return MessageRef(
            normalize_line(value.chat_id, ID_MAX), normalize_line(value.message_id, ID_MAX)
        )
    return value


def normalize_event(event: InboundEvent, *, admins: Container[str] = ()) -> InboundEvent:
    """The event as the core stores and handles it (see the module's docstring)."""
    ctx = event.context
    context = EventContext(
        platform=ctx.platform,
        chat_id=normalize_line(ctx.chat_id, ID_MAX),
        user_id=normalize_line(ctx.user_id, ID_MAX),
        event_id=normalize_line(ctx.event_id, ID_MAX),
        display_name=(
            normalize_line(ctx.display_name, DISPLAY_NAME_MAX).strip() or None
            if ctx.display_name is not None
            else None
        ),
        language=normalize_line(ctx.language, 16) if ctx.language is not None else None,
        chat_type=ctx.chat_type,
        message=_normalize_value(ctx.message),
        raw=None,
    )
    payload = event.payload
    changes = {
        f.name: _normalize_value(getattr(payload, f.name))
        for f in fields(payload)
        if f.name not in ("kind", "data")
    }
    payload = replace(payload, **changes)
    if isinstance(payload, FileReceived):
        size = payload.size if payload.size is not None else len(payload.data)
        keep = f"{context.platform}:{context.user_id}" in admins
        payload = replace(payload, data=payload.data if keep else b"", size=size)
    return InboundEvent(context, payload)
