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


@cache
def _catalog(locale: str) -> _gettext.NullTranslations:
    po_path = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po_path.exists():
        return _gettext.NullTranslations()
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
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


def fmt_date(value: datetime, tz: str | None = None) -> str:
    return format_date(_to_tz(value, tz), format="medium", locale=Locale.parse(_current.get()))


def fmt_datetime(value: datetime, tz: str | None = None) -> str:
    """Medium date and short time: "19 août 2019, 10:00" / "Aug 19, 2019, 10:00 AM"."""
    local = _to_tz(value, tz)
    locale = Locale.parse(_current.get())
    return "{}, {}".format(
        format_date(local, format="medium", locale=locale),
        format_time(local, format="short", locale=locale),
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
