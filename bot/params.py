"""Typed parameters of a route, declared once and used for every entry path.

A route (a command, the button with the same verb, a numbered option) declares its parameters:
bounded positive integers for ids and pages, choices that accept localized synonyms, a moderation
target (``12`` or ``c7``), a word, or the free text that ends the line. The router parses typed
arguments and button arguments with the same declaration before any handler runs: a wrong
argument gets the translated usage line (typed) or the "old button" answer (pressed), and never
reaches a handler. The usage line itself is generated from the declaration.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bot.i18n import gettext

# Database integers are 32-bit on PostgreSQL: an id beyond this cannot exist.
MAX_ID = 2**31 - 1
MAX_PAGE = 10_000
MAX_WORD = 64


class Kind(Enum):
    INT = "int"
    CHOICE = "choice"
    WORD = "word"
    TEXT = "text"
    TARGET = "target"


class BadArguments(ValueError):
    """The arguments do not fit the route's declaration."""


def fold(text: str) -> str:
    """Lowercase, without accents, spaces or punctuation: ``Hors-sujet`` → ``horssujet``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if ch.isalnum() and not unicodedata.combining(ch))


@dataclass(frozen=True)
class Param:
    key: str  # the name handlers read it by: ``ctx.params["idea"]``
    label: str  # the placeholder shown in the usage line (an N_ msgid, e.g. "NUMBER")
    kind: Kind
    optional: bool = False
    low: int = 1
    high: int = MAX_ID
    # CHOICE: canonical value -> accepted spellings (any language; compared folded).
    choices: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # CHOICE: consume the rest of the line (a reason typed in several words).
    rest: bool = False

    def usage(self) -> str:
        label = gettext(self.label)
        return f"[{label}]" if self.optional and not label.startswith("[") else label

    def convert(self, token: str) -> Any:
        """The typed value of one token; BadArguments if it does not fit."""
        if self.kind is Kind.INT:
            text = token.strip().lstrip("#")
            if not text.isdigit() or len(text) > 10:
                raise BadArguments(token)
            value = int(text)
            if not self.low <= value <= self.high:
                raise BadArguments(token)
            return value
        if self.kind is Kind.CHOICE:
            folded = fold(token)
            for canonical, spellings in self.choices.items():
                if folded == fold(canonical) or any(folded == fold(s) for s in spellings):
                    return canonical
            raise BadArguments(token)
        if self.kind is Kind.TARGET:
            text = token.strip().lstrip("#").lower()
            prefix = ""
            if text.startswith("c"):
                prefix, text = "c", text[1:]
            if not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_ID:
                raise BadArguments(token)
            return f"{prefix}{int(text)}"
        if self.kind is Kind.WORD:
            if not token or len(token) > MAX_WORD:
                raise BadArguments(token)
            return token
        return token  # TEXT


def Int(key: str, label: str, *, optional: bool = False, high: int = MAX_ID) -> Param:
    return Param(key, label, Kind.INT, optional=optional, high=high)


def Page(label: str) -> Param:
    return Param("page", label, Kind.INT, optional=True, high=MAX_PAGE)


def Choice(
    key: str,
    label: str,
    choices: Mapping[str, Sequence[str]],
    *,
    optional: bool = False,
    rest: bool = False,
) -> Param:
    return Param(key, label, Kind.CHOICE, optional=optional, choices=choices, rest=rest)


def Word(key: str, label: str, *, optional: bool = False) -> Param:
    return Param(key, label, Kind.WORD, optional=optional)


def Text(key: str, label: str, *, optional: bool = False) -> Param:
    return Param(key, label, Kind.TEXT, optional=optional)


def Target(key: str, label: str, *, optional: bool = False) -> Param:
    return Param(key, label, Kind.TARGET, optional=optional)


# Spellings shared by several routes.
YES = {"yes": ("y", "oui", "o", "ok", "confirm", "confirmer")}
ON_OFF = {
    "on": ("yes", "oui", "activer", "active", "enable"),
    "off": ("no", "non", "desactiver", "disable", "stop"),
}


@dataclass(frozen=True, slots=True)
class Parsed:
    values: dict[str, Any]
    # Canonical tokens, positional: what a button with the same verb would carry (empty
    # strings stand for skipped optional parameters before a given one).
    tokens: tuple[str, ...]
    text: str  # the free text (TEXT or rest-CHOICE parameter), "" if none


def split_rest(rest: str, count: int) -> str:
    """What remains of ``rest`` after its first ``count`` whitespace-separated tokens."""
    remaining = rest.strip()
    for _ in range(count):
        parts = remaining.split(None, 1)
        remaining = parts[1] if len(parts) > 1 else ""
    return remaining.strip()


def parse(params: Sequence[Param], tokens: Sequence[str], rest: str | None = None) -> Parsed:
    """Match tokens against the declaration. ``rest`` is the raw text after the command (typed
    commands); buttons have none. An optional parameter that does not match is skipped (so
    ``/ideas new`` reads as the order); anything left over is an error."""
    values: dict[str, Any] = {}
    canonical: list[str] = []
    free = ""
    index = 0
    for param in params:
        if param.kind is Kind.TEXT or (param.kind is Kind.CHOICE and param.rest):
            start, index = index, len(tokens)
            text = split_rest(rest, start) if rest is not None else " ".join(tokens[start:])
            if not text:
                if not param.optional:
                    raise BadArguments(param.key)
                values[param.key] = None
                continue
            if param.kind is Kind.CHOICE:
                # An optional reason typed in words that match no choice reads as none given
                # (the handler then offers the choices).
                try:
                    value = param.convert(text)
                except BadArguments:
                    if not param.optional:
                        raise
                    value = None
                values[param.key] = value
                if value is not None:
                    canonical.append(value)
            else:
                values[param.key] = text
                free = text
                # Handlers that read their words one by one see them as typed.
                canonical.extend(tokens[start:])
            continue
        if index < len(tokens):
            try:
                value = param.convert(tokens[index])
            except BadArguments:
                if not param.optional:
                    raise
                values[param.key] = None
                canonical.append("")
                continue
            values[param.key] = value
            canonical.append(str(value))
            index += 1
            continue
        if not param.optional:
            raise BadArguments(param.key)
        values[param.key] = None
    if index < len(tokens):
        raise BadArguments(" ".join(tokens[index:]))
    while canonical and canonical[-1] == "":
        canonical.pop()
    return Parsed(values, tuple(canonical), free)


def usage(params: Sequence[Param]) -> str:
    return " ".join(p.usage() for p in params)


CONFIRM = {"confirm": ("yes", "oui", "confirmer", "ok")}
LANGUAGE_SPELLINGS = {
    "fr": ("français", "francais", "french"),
    "en": ("english", "anglais"),
}
REPORT_SPELLINGS = {
    "spam": ("pub", "publicite", "advertising"),
    "offensive": ("offensant", "injurieux", "insultant", "haineux", "abusive", "hateful"),
    "offtopic": ("off-topic", "off topic", "hors sujet", "hors-sujet", "hs"),
    "personal": ("personnel", "donnees personnelles", "personal data", "private"),
    "other": ("autre", "another"),
}
MOD_SPELLINGS = {
    "add": ("ajouter", "ajout"),
    "remove": ("retirer", "supprimer", "enlever"),
    "list": ("liste", "lister"),
}
