"""Translation catalogs: every message of the source is in the French catalog, translated,
with the same ``{placeholders}``, and the runtime picks the right strings and plural forms."""

from __future__ import annotations

import re
import string
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot import i18n

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "bot" / "locales"
SOURCE_DIRS = ("bot", "adapters", "scheduler")
# The same keywords as `python3 dev.py i18n` (pybabel extract -k N_ -k _ -k gettext
# -k ngettext:1,2). None means "the first argument is the msgid".
KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None,
    "gettext": None,
    "N_": None,
    "ngettext": (1, 2),
}
FIX_HINT = (
    "Run `python3 dev.py i18n`, then translate the new entries in "
    "bot/locales/fr/LC_MESSAGES/parlons.po."
)
COMMAND = re.compile(r"(?<![\w/])/[a-z_]+\b")

MsgId = str | tuple[str, ...]


@cache
def catalog(locale: str) -> Catalog:
    with (LOCALES / locale / "LC_MESSAGES" / "parlons.po").open("rb") as fh:
        return read_po(fh, locale=locale)


@cache
def extracted() -> dict[str, MsgId]:
    """The messages marked in the source, keyed by their (singular) msgid."""
    found: dict[str, MsgId] = {}
    for directory in SOURCE_DIRS:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            ROOT / directory, keywords=KEYWORDS
        ):
            key = message[0] if isinstance(message, tuple) else message
            assert key, f"{directory}/{filename}:{lineno}: empty msgid"
            found[key] = message
    return found


def fields(text: str) -> set[str]:
    """The ``str.format`` field names used in ``text`` (``{n}``, ``{id}``...)."""
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


def translated(message: Message) -> bool:
    if message.fuzzy:
        return False
    if isinstance(message.string, tuple | list):
        return all(s.strip() for s in message.string)
    return bool(message.string and message.string.strip())


def fr_messages() -> list[Message]:
    return [m for m in catalog("fr") if m.id]


def _id(message: Message) -> str:
    return message.id[0] if isinstance(message.id, tuple) else message.id


# --------------------------------------------------------------------------- catalogs


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_catalog_parses(locale: str) -> None:
    cat = catalog(locale)
    assert str(cat.locale) == locale
    assert cat.num_plurals == 2
    assert len([m for m in cat if m.id]) > 0
    assert cat.project == "Parlons"


def test_source_messages_are_extracted() -> None:
    # Sanity check of the extraction itself, so the next test cannot pass vacuously.
    messages = extracted()
    assert "Help" in messages
    assert messages["{n} participant"] == ("{n} participant", "{n} participants")


def test_every_source_message_is_translated_in_french() -> None:
    cat = catalog("fr")
    problems = []
    for key, source in sorted(extracted().items()):
        message = cat.get(key)
        if message is None:
            problems.append(f"missing       {key!r}")
        elif isinstance(source, tuple) and message.id != source:
            problems.append(f"new plural    {source!r} (catalog has {message.id!r})")
        elif not translated(message):
            state = "fuzzy" if message.fuzzy else "untranslated"
            problems.append(f"{state:<13} {key!r}")
    assert not problems, (
        f"{len(problems)} message(s) of the source lack a French translation:\n  "
        + "\n  ".join(problems)
        + f"\n{FIX_HINT}"
    )


def test_no_fuzzy_or_empty_entry_in_french_catalog() -> None:
    bad = [_id(m) for m in fr_messages() if not translated(m)]
    assert not bad, f"Empty or fuzzy French entries: {bad}"


# --------------------------------------------------------------------------- translations


@pytest.mark.parametrize("message", fr_messages(), ids=_id)
def test_french_translation_keeps_placeholders(message: Message) -> None:
    if isinstance(message.id, tuple):
        singular, plural = message.id
        one, many = message.string
        assert fields(many) == fields(plural), f"msgstr[1] {many!r} vs {plural!r}"
        # msgstr[0] serves 0 and 1 in French: it keeps the plural's fields, and may drop
        # {n} only if the English singular does too ("One day" / "{n} days").
        allowed = [fields(plural)]
        if "n" not in fields(singular):
            allowed.append(fields(plural) - {"n"})
        assert fields(one) in allowed, f"msgstr[0] {one!r} vs {singular!r}"
    else:
        assert fields(message.string) == fields(message.id), (
            f"{message.string!r} vs {message.id!r}"
        )


@pytest.mark.parametrize("message", fr_messages(), ids=_id)
def test_french_translation_keeps_commands_and_edges(message: Message) -> None:
    """Typed commands (/start, /help...) stay untranslated; leading and trailing whitespace
    is kept, since callers concatenate the strings."""
    pairs = (
        zip(message.id, message.string, strict=True)
        if isinstance(message.id, tuple)
        else [(message.id, message.string)]
    )
    for source, target in pairs:
        assert COMMAND.findall(target) == COMMAND.findall(source), target
        assert (
            source[: len(source) - len(source.lstrip())]
            == target[: len(target) - len(target.lstrip())]
        ), target
        assert source[len(source.rstrip()) :] == target[len(target.rstrip()) :], target


# --------------------------------------------------------------------------- runtime


def test_gettext_follows_the_locale() -> None:
    french = catalog("fr")["Help"].string
    assert french and french != "Help"
    with i18n.use_locale("fr"):
        assert i18n.gettext("Help") == french
        assert i18n._("Help") == french
    with i18n.use_locale("en"):
        assert i18n.gettext("Help") == "Help"


def test_ngettext_french_plural_forms() -> None:
    singular, plural = "{n} day of consultation", "{n} days of consultation"
    one, many = catalog("fr")[singular].string
    assert one != many
    with i18n.use_locale("fr"):
        # French uses the singular for 0 and 1.
        assert i18n.ngettext(singular, plural, 0) == one
        assert i18n.ngettext(singular, plural, 1) == one
        assert i18n.ngettext(singular, plural, 2) == many
        assert i18n.ngettext(singular, plural, 2).format(n=2).startswith("2 ")
    with i18n.use_locale("en"):
        assert i18n.ngettext(singular, plural, 0) == plural
        assert i18n.ngettext(singular, plural, 1) == singular
        assert i18n.ngettext(singular, plural, 2) == plural
