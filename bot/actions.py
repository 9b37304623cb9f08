"""Compact action ids carried by buttons: ``verb:arg:arg``.

One codec packs and parses them and refuses anything over 64 bytes (Telegram's callback_data
limit). Routing is by verb, never by a button's (translated) label. Every verb also has a typed
command equivalent (see ``bot.handlers``), for channels without buttons and for screen readers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BYTES = 64
_VERB = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
_ARG = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")


class ActionCodecError(ValueError):
    """An action id that cannot be packed or parsed (tampered, stale or oversized)."""


@dataclass(frozen=True, slots=True)
class Action:
    verb: str
    args: tuple[str, ...] = ()

    def arg_int(self, index: int) -> int:
        try:
            return int(self.args[index])
        except (IndexError, ValueError) as exc:
            raise ActionCodecError(f"action {self.verb!r} needs an integer argument") from exc

    def arg(self, index: int, default: str | None = None) -> str | None:
        return self.args[index] if index < len(self.args) else default


def pack(verb: str, *args: object) -> str:
    if not _VERB.match(verb):
        raise ActionCodecError(f"bad verb {verb!r}")
    parts = [verb]
    for arg in args:
        value = str(arg)
        if not _ARG.match(value):
            raise ActionCodecError(f"bad argument {value!r} for {verb!r}")
        parts.append(value)
    data = ":".join(parts)
    if len(data.encode("utf-8")) > MAX_BYTES:
        raise ActionCodecError(f"action id over {MAX_BYTES} bytes: {data!r}")
    return data


def parse(data: str) -> Action:
    if not data or len(data.encode("utf-8")) > MAX_BYTES:
        raise ActionCodecError("empty or oversized action id")
    verb, *args = data.split(":")
    if not _VERB.match(verb) or not all(_ARG.match(a) for a in args):
        raise ActionCodecError(f"malformed action id {data!r}")
    return Action(verb, tuple(args))
