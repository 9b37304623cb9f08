"""Translations with gettext catalogs (Babel), the locale in a context variable.

The ``.po`` files under ``bot/locales`` are the source of truth; they are compiled in memory at
first use, so no binary artefact is committed. English msgids; ``fr`` and ``en`` catalogs.

- ``_("...")`` translates in the current locale (set per event by the router's middleware).
- ``N_("...")`` marks a string for extraction without translating it (command help texts).
- ``use_locale("fr")`` switches the locale for a block (broadcasts, tests).
"""

from __future__ import annotations

import gettext as _gettext
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "parlons"
SUPPORTED = ("fr", "en")
DEFAULT = "fr"

_current: ContextVar[str] = ContextVar("parlons_locale", default=DEFAULT)


def negotiate(hint: str | None, default: str = DEFAULT) -> str:
    """Map a platform language hint (``fr-CA``, ``en_GB``, ``de``) onto a supported locale."""
    if hint:
        lang = hint.replace("_", "-").split("-", 1)[0].lower()
        if lang in SUPPORTED:
            return lang
    return default


NNBSP = "\u202f"  # narrow no-break space
_FR_RULES = (
    # A space (ordinary or no-break) before ; : ! ? becomes a narrow no-break space.
    (re.compile(r"[ \u00a0]+([;:!?])"), NNBSP + r"\1"),
    # No space at all before ; ! ? ending a word: one is added (a colon is left alone: 10:00,
    # https://, c7:…).
    (re.compile(r"(?<=[\w»)])([;!?])(?=\s|$)"), NNBSP + r"\1"),
    # Inside « »: narrow no-break spaces, whatever was typed.
    (re.compile(r"«[ \u00a0]*"), "«" + NNBSP),
    (re.compile(r"[ \u00a0]*»"), NNBSP + "»"),
    # The typewriter apostrophe inside a word (l'idée, aujourd'hui, d'{name}).
    (re.compile(r"(?<=\w)'(?=[\w{])"), "’"),
)


def typeset_fr(text: str) -> str:
    """French typography for the catalog's own strings (never for user text, which is inserted
    into them afterwards): narrow no-break spaces before ; : ! ? and inside « », typographic
    apostrophes."""
    for pattern, replacement in _FR_RULES:
        text = pattern.sub(replacement, text)
    return text


@cache
def _catalog(locale: str) -> _gettext.NullTranslations:
    po_path = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_path.exists():
        return _gettext.NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    if locale == "fr":
        for message in catalog:
            if isinstance(message.string, str):
                message.string = typeset_fr(message.string)
            elif message.string:
                message.string = tuple(typeset_fr(s) for s in message.string)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return _gettext.GNUTranslations(buf)


def current_locale() -> str:
    return _current.get()


def set_locale(locale: str) -> None:
    _current.set(locale)


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    token = _current.set(locale)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    return _catalog(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _catalog(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    return message


_ = gettext


def fmt_date(value: datetime, tz: str) -> str:
    """Medium date in the given time zone: "1er sept. 2019" / "Sep 1, 2019"."""
    return _date(_to_tz(value, tz), _current.get())


def _date(local: datetime, locale: str) -> str:
    text = format_date(local, format="medium", locale=Locale.parse(locale))
    if locale == "fr" and local.day == 1 and text.startswith("1 "):
        text = "1er" + text[1:]  # French ordinal for the first of the month
    return text


def fmt_datetime(value: datetime, tz: str) -> str:
    """Medium date and short time in the given time zone: "19 août 2019, 10:00" /
    "Aug 19, 2019, 10:00 AM"."""
    local = _to_tz(value, tz)
    locale = _current.get()
    return "{}, {}".format(
        _date(local, locale), format_time(local, format="short", locale=Locale.parse(locale))
    )


def fmt_number(value: int) -> str:
    return _fmt_number(value, _current.get())


@lru_cache(maxsize=4096)
def _fmt_number(value: int, locale: str) -> str:
    # Counts shown on every idea card: the same few numbers, formatted again and again.
    return format_decimal(value, locale=Locale.parse(locale))


def _to_tz(value: datetime, tz: str | None) -> datetime:
    if tz is None:
        return value
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(tz))


def language_name(locale: str) -> str:
    return Locale.parse(locale).get_display_name(locale) or locale
