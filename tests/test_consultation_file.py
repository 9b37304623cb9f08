"""The consultation file format: shipped files, localization, errors, JSON storage."""

from __future__ import annotations

import ast
import copy
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import consultation_file
from bot.consultation_file import (
    MAX_DOCUMENT_BYTES,
    ConsultationDocument,
    ConsultationFileError,
    ConsultationSettings,
    FieldError,
    load_consultation_file,
    parse_consultation_text,
)

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "consultations" / "ville-intelligente.yaml"
EXAMPLE = ROOT / "consultations" / "example-minimal.yaml"
NBSP = "\u00a0"

# A small valid document, as the Python data a YAML file would produce.
BASE: dict[str, Any] = {
    "slug": "demo-city",
    "language": "fr",
    "timezone": "Europe/Paris",
    "opens_at": "2018-02-23T10:00:00",
    "closes_at": "2019-08-31T00:00:00",
    "title": "Titre",
    "summary": "Résumé",
    "framing": "Premier paragraphe.\n\nSecond paragraphe.",
    "questions": [
        {"key": "q1", "text": "Première question ?"},
        {"key": "q2", "text": "Deuxième question ?", "hint": "Un indice"},
    ],
    "about": [{"title": "Page A", "body": "Corps A"}, {"title": "Page B", "body": "Corps B"}],
    "testimonials": [
        {"author": "Ada", "role": "Maire", "quote": "Citation A"},
        {"author": "Bob", "quote": "Citation B"},
    ],
    "translations": {
        "en": {
            "title": "Title",
            "questions": {"q1": {"text": "First question?"}},
            "testimonials": [{"role": "Mayor", "quote": "Quote A"}, {"quote": "Quote B"}],
        }
    },
}


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def errors_of(data: Any) -> list[FieldError]:
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(to_yaml(data), "demo.yaml")
    return info.value.errors


@pytest.fixture(scope="module")
def seed() -> ConsultationDocument:
    return load_consultation_file(SEED)


# -- shipped files -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SEED, EXAMPLE], ids=lambda p: p.name)
def test_shipped_files_validate(path: Path) -> None:
    doc = load_consultation_file(path)
    assert doc.slug == path.stem
    assert len(doc.questions) == 2
    assert len(doc.languages) == 2


def test_documented_example_is_valid() -> None:
    docs = (ROOT / "docs" / "consultation-format.md").read_text(encoding="utf-8")
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    doc = parse_consultation_text(example, "consultation-format.md")
    assert doc.localized("en").about[0].title == "Smart cities and new partnerships"


def test_base_document_is_valid() -> None:
    doc = parse_consultation_text(to_yaml(BASE), "demo.yaml")
    assert doc.slug == "demo-city"


def test_seed_content(seed: ConsultationDocument) -> None:
    assert seed.slug == "ville-intelligente"
    assert seed.language == "fr"
    assert seed.languages == ("fr", "en")
    assert seed.title == "Les nouvelles formes de gouvernance au sein de la « ville intelligente »"
    assert [q.key for q in seed.questions] == ["lieux", "reussites"]
    assert seed.questions[0].text.startswith("Comment avez-vous mis en place des lieux")
    assert seed.questions[1].text == f"Avez-vous des réussites locales à partager{NBSP}?"
    assert [(t.author, t.role) for t in seed.testimonials] == [
        ("Valentina DELGADO", "Ville de Mexico (Mexique)"),
        ("François MENARD", "Chargé de mission au PUCA"),
        ("Loïc DAMIANI-ABOULKHER", "Adjoint au maire de Fontenay-sous-Bois"),
        ("Nathalie VERNUS-PROST", "Administratrice générale des données, Métropole de Lyon"),
    ]
    # One page for the introduction paragraph, then one per extract.
    assert len(seed.about) == 5
    assert seed.about[0].body.startswith(f"Au travers des «{NBSP}villes intelligentes{NBSP}»")
    assert all(page.body.startswith("«") for page in seed.about[1:])
    assert seed.settings == ConsultationSettings(
        support_withdrawal=True, comments=True, premoderation=False
    )


def test_seed_framing(seed: ConsultationDocument) -> None:
    paragraphs = seed.localized("fr").framing_paragraphs
    assert paragraphs[0].startswith("Dans le cadre de la mise en action du rapport")
    assert "De fait, nous vous invitons à réfléchir à cette affirmation :" in paragraphs[1]
    assert "les alliances entre acteurs fondent des réussites locales." in paragraphs[1]
    assert paragraphs[2].startswith("N'hésitez pas à proposer vos idées")
    assert paragraphs[-1] == "C'est à vous !"
    # The questions are not repeated in the framing.
    assert "Avez-vous des réussites" not in seed.framing


def test_seed_dates(seed: ConsultationDocument) -> None:
    assert seed.timezone == "Europe/Paris"
    assert seed.opens_at == datetime(2018, 2, 23, 10, 0)
    assert seed.closes_at == datetime(2019, 8, 31, 0, 0)
    assert seed.opens_at_utc == datetime(2018, 2, 23, 9, 0, tzinfo=UTC)
    assert seed.closes_at_utc == datetime(2019, 8, 30, 22, 0, tzinfo=UTC)
    assert seed.opens_at_utc.utcoffset() is not None
    assert seed.opens_at_utc.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    # The statistics rule "full days elapsed" shows 553 days on the original platform.
    assert (seed.closes_at_utc - seed.opens_at_utc).days == 553


def test_seed_english(seed: ConsultationDocument) -> None:
    en = seed.localized("en")
    assert en.language == "en"
    assert en.title == "New forms of governance in the “smart city”"
    assert en.summary and "citizen participation" in en.summary
    assert en.framing_paragraphs[-1] == "Over to you!"
    assert en.question("lieux").text == (
        "How have you set up flagship venues or platforms for co-designing the city "
        "with its citizens?"
    )
    assert en.question("reussites").text == "Do you have any local success stories to share?"
    assert [p.title for p in en.about][-1] == "Start-ups and digital platforms"
    assert len(en.about) == len(seed.about)
    # Author names are not translated; roles and quotes are.
    assert [t.author for t in en.testimonials] == [t.author for t in seed.testimonials]
    assert en.testimonials[2].role == "Deputy Mayor of Fontenay-sous-Bois"
    assert en.testimonials[2].quote.startswith("“We realised that the smart city")
    # Every bot-facing text has an English version.
    fr = seed.localized("fr")
    assert en.title != fr.title and en.summary != fr.summary and en.framing != fr.framing
    assert all(e.text != f.text for e, f in zip(en.questions, fr.questions, strict=True))
    assert all(e != f for e, f in zip(en.about, fr.about, strict=True))
    for e, f in zip(en.testimonials, fr.testimonials, strict=True):
        assert e.role != f.role and e.quote != f.quote


def test_seed_french_and_fallback(seed: ConsultationDocument) -> None:
    fr = seed.localized("fr")
    assert fr.language == "fr"
    assert fr.title == seed.title
    assert fr.framing == seed.framing
    assert [(q.key, q.text, q.hint) for q in fr.questions] == [
        (q.key, q.text, q.hint) for q in seed.questions
    ]
    assert [(t.author, t.role, t.quote) for t in fr.testimonials] == [
        (t.author, t.role, t.quote) for t in seed.testimonials
    ]
    # A language without a translation falls back to the main language entirely.
    assert seed.localized("de") == fr
    assert seed.localized(None) == fr
    assert seed.localized("") == fr
    # Messenger locales are reduced to their language.
    assert seed.localized("en-GB") == seed.localized("en")
    assert seed.localized("EN_us") == seed.localized("en")


def test_partial_translation_falls_back_field_by_field() -> None:
    doc = parse_consultation_text(to_yaml(BASE), "demo.yaml")
    en = doc.localized("en")
    assert en.title == "Title"
    assert en.summary == "Résumé"  # not translated
    assert en.framing == BASE["framing"]  # not translated
    assert en.questions[0] == ("q1", "First question?", None)
    assert en.questions[1] == ("q2", "Deuxième question ?", "Un indice")  # not translated
    assert en.about == (("Page A", "Corps A"), ("Page B", "Corps B"))  # not translated
    assert en.testimonials == (("Ada", "Mayor", "Quote A"), ("Bob", None, "Quote B"))
    assert en.framing_paragraphs == ("Premier paragraphe.", "Second paragraphe.")


def test_translated_hint_and_role_fallback() -> None:
    data = copy.deepcopy(BASE)
    data["translations"]["en"]["questions"]["q2"] = {"text": "Second?", "hint": "A hint"}
    data["translations"]["en"]["testimonials"][0] = {"quote": "Quote A"}
    en = parse_consultation_text(to_yaml(data), "demo.yaml").localized("en")
    assert en.question("q2") == ("q2", "Second?", "A hint")
    assert en.testimonials[0] == ("Ada", "Maire", "Quote A")  # role falls back


def test_defaults_and_stripping() -> None:
    data = copy.deepcopy(BASE)
    del data["summary"], data["about"], data["testimonials"], data["translations"]
    data["title"] = "   Titre  "
    data["framing"] = "\n\n  Texte\n\n"
    doc = parse_consultation_text(to_yaml(data), "demo.yaml")
    assert doc.settings == ConsultationSettings()
    assert doc.settings.support_withdrawal is True
    assert doc.settings.max_contribution_length == 2000
    assert doc.settings.max_comment_length == 1000
    assert doc.settings.comments is True
    assert doc.settings.premoderation is False
    assert doc.summary is None and doc.about == [] and doc.testimonials == []
    assert doc.title == "Titre" and doc.framing == "Texte"
    assert doc.languages == ("fr",)


def test_unquoted_dates_in_yaml() -> None:
    """Dates are parsed by the format, not by YAML: same rules quoted or not."""
    text = SEED.read_text(encoding="utf-8")
    assert "\nopens_at: 2018-02-23T10:00:00" in text  # unquoted in the seed
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(text.replace("T10:00:00", "", 1), "ville.yaml")
    (error,) = info.value.errors
    assert error.location == "opens_at"
    assert "'2018-02-23' is not a date and time" in error.reason
    # A text that looks like a date stays text.
    summary = text.split("\nsummary: ", 1)[1].split("\n", 1)[0]
    doc = parse_consultation_text(text.replace(summary, "2019-08-31", 1), "ville.yaml")
    assert doc.summary == "2019-08-31"


def test_explicit_offsets() -> None:
    data = dict(BASE, opens_at="2018-02-23T09:00:00Z", closes_at="2019-08-31T00:00:00+02:00")
    doc = parse_consultation_text(to_yaml(data), "demo.yaml")
    assert doc.opens_at_utc == datetime(2018, 2, 23, 9, 0, tzinfo=UTC)
    assert doc.closes_at_utc == datetime(2019, 8, 30, 22, 0, tzinfo=UTC)


# -- errors -------------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation setting a value at a dotted path ('questions.1.text'); `...` deletes it."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[key]
        else:
            target[key] = value

    return mutate


def _chain(*mutations: Mutation) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


ERROR_CASES: list[tuple[str, Mutation, str, str]] = [
    ("missing-field", _set("questions.1.text", ...), "questions[1].text", "field required"),
    ("missing-title", _set("title", ...), "title", "field required"),
    ("unknown-key", _set("colour", "red"), "colour", "unknown key 'colour'"),
    ("unknown-key-typo", _set("sumary", "x"), "sumary", "did you mean 'summary'"),
    ("unknown-setting", _set("settings", {"coments": True}), "settings.coments", "'comments'"),
    ("unknown-question-key", _set("questions.0.help", "x"), "questions[0].help", "unknown key"),
    ("slug-underscore", _set("slug", "demo_city"), "slug", "'_'"),
    ("slug-double-hyphen", _set("slug", "demo--city"), "slug", "'--'"),
    ("slug-leading-hyphen", _set("slug", "-demo"), "slug", "start or end"),
    ("slug-trailing-hyphen", _set("slug", "demo-"), "slug", "start or end"),
    ("slug-uppercase", _set("slug", "Demo"), "slug", "lowercase"),
    ("slug-too-short", _set("slug", "ab"), "slug", "3 to 48"),
    ("slug-too-long", _set("slug", "a" * 49), "slug", "48"),
    ("language", _set("language", "fra"), "language", "two-letter"),
    ("timezone-unknown", _set("timezone", "Europe/Pariss"), "timezone", "'Europe/Paris'"),
    ("timezone-path", _set("timezone", "../etc/passwd"), "timezone", "unknown time zone"),
    ("date-format", _set("opens_at", "23/02/2018 10:00"), "opens_at", "not a date and time"),
    ("date-only", _set("opens_at", "2018-02-23"), "opens_at", "not a date and time"),
    ("date-invalid-day", _set("closes_at", "2019-02-30T10:00:00"), "closes_at", "out of range"),
    ("date-number", _set("opens_at", 1519376400), "opens_at", "date and time"),
    ("closes-before-opens", _set("closes_at", "2018-02-22T10:00:00"), "closes_at", "after"),
    ("closes-equals-opens", _set("closes_at", "2018-02-23T09:00:00Z"), "closes_at", "after"),
    ("dst-gap", _set("opens_at", "2018-03-25T02:30:00"), "opens_at", "does not exist"),
    ("dst-ambiguous", _set("opens_at", "2018-10-28T02:30:00"), "opens_at", "happens twice"),
    ("title-empty", _set("title", "   "), "title", "must not be empty"),
    ("title-null", _set("title", None), "title", "must not be empty"),
    ("title-number", _set("title", 2018), "title", "expected text"),
    ("title-too-long", _set("title", "x" * 201), "title", "at most 200"),
    ("title-multiline", _set("title", "a\nb"), "title", "single line"),
    ("framing-too-long", _set("framing", "x" * 8001), "framing", "at most 8000"),
    ("question-too-long", _set("questions.0.text", "x" * 1001), "questions[0].text", "1000"),
    ("page-body-too-long", _set("about.1.body", "x" * 8001), "about[1].body", "8000"),
    ("no-questions", _set("questions", []), "questions", "at least 1"),
    ("questions-not-list", _set("questions", "q1"), "questions", "expected a list"),
    ("duplicate-question-key", _set("questions.1.key", "q1"), "questions[1].key", "duplicate"),
    ("bad-question-key", _set("questions.0.key", "Q 1"), "questions[0].key", "lowercase"),
    (
        "setting-range",
        _set("settings", {"max_contribution_length": 10}),
        "settings.max_contribution_length",
        "at least 50",
    ),
    (
        "setting-range-high",
        _set("settings", {"max_comment_length": 5000}),
        "settings.max_comment_length",
        "at most 4000",
    ),
    (
        "setting-type",
        _set("settings", {"comments": "maybe"}),
        "settings.comments",
        "true or false",
    ),
    ("settings-not-mapping", _set("settings", True), "settings", "expected a mapping"),
    (
        "translation-unknown-question",
        _set("translations.en.questions.q9", {"text": "x"}),
        "translations.en.questions.q9",
        "no question with key 'q9'",
    ),
    (
        "translation-plain-string",
        _set("translations.en.questions.q1", "x"),
        "translations.en.questions.q1",
        "not a plain string",
    ),
    (
        "translation-hint-without-hint",
        _set("translations.en.questions.q1", {"text": "x", "hint": "h"}),
        "translations.en.questions.q1.hint",
        "no hint",
    ),
    (
        "translation-about-count",
        _set("translations.en.about", [{"title": "A", "body": "B"}]),
        "translations.en.about",
        "1 page(s) but `about` has 2",
    ),
    (
        "translation-testimonials-count",
        _set("translations.en.testimonials", [{"quote": "Q"}]),
        "translations.en.testimonials",
        "1 testimonial(s) but `testimonials` has 2",
    ),
    (
        "translation-role-without-role",
        _set("translations.en.testimonials.1.role", "R"),
        "translations.en.testimonials[1].role",
        "no role",
    ),
    (
        "translation-author",
        _set("translations.en.testimonials.1.author", "X"),
        "translations.en.testimonials[1].author",
        "unknown key",
    ),
    (
        "translation-unknown-key",
        _set("translations.en.titel", "x"),
        "translations.en.titel",
        "did you mean 'title'",
    ),
    (
        "translation-main-language",
        _set("translations.fr", {"title": "x"}),
        "translations.fr",
        "main language",
    ),
    (
        "translation-bad-language",
        _set("translations.EN", {"title": "x"}),
        "translations.EN",
        "two-letter",
    ),
    ("translation-empty", _set("translations.de", {}), "translations.de", "empty translation"),
    (
        "translation-summary-without-summary",
        _chain(_set("summary", ...), _set("translations.en.summary", "Summary")),
        "translations.en.summary",
        "no summary",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "location", "reason"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_cases(mutate: Mutation, location: str, reason: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    errors = errors_of(data)
    matching = [e for e in errors if e.location == location]
    assert matching, f"no error at {location!r}: {errors}"
    assert any(reason in e.reason for e in matching), matching


def test_error_string_names_the_file() -> None:
    data = copy.deepcopy(BASE)
    del data["questions"][1]["text"]
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(to_yaml(data), "ville.yaml")
    err = info.value
    assert err.source == "ville.yaml"
    assert err.errors == [FieldError("questions[1].text", "field required")]
    assert str(err) == "ville.yaml: questions[1].text: field required"


def test_all_errors_reported_one_line_each() -> None:
    data = copy.deepcopy(BASE)
    data["slug"] = "Bad_Slug"
    data["timezone"] = "Mars/Olympus"
    data["questions"][0]["text"] = ""
    data["extra"] = 1
    errors = errors_of(data)
    assert {e.location for e in errors} == {"slug", "timezone", "questions[0].text", "extra"}
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(to_yaml(data), "demo.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    assert all(line.startswith("demo.yaml: ") for line in lines)


def test_file_errors_name_the_file_not_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "ville.yaml"
    path.write_text(to_yaml(dict(BASE, closes_at="2017-01-01T00:00:00")), encoding="utf-8")
    with pytest.raises(ConsultationFileError) as info:
        load_consultation_file(path)
    assert str(info.value).startswith("ville.yaml: closes_at: must be after opens_at")
    with pytest.raises(ConsultationFileError) as info:
        load_consultation_file(tmp_path / "missing.yaml")
    assert info.value.source == "missing.yaml"
    assert "cannot read" in str(info.value)


def test_yaml_syntax_error_names_line_and_column() -> None:
    text = "slug: demo-city\nlanguage: fr\ntitle: Les villes : le futur\n"
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(text, "ville.yaml")
    (error,) = info.value.errors
    assert error.location == "line 3, column 19"
    assert "YAML" in error.reason
    assert str(info.value).startswith("ville.yaml: line 3, column 19: YAML error: ")


@pytest.mark.parametrize(
    ("text", "location", "reason"),
    [
        ("slug: a\nslug: b\n", "line 2, column 1", "duplicate key 'slug'"),
        ("title: &t T\nsummary: *t\n", "line 2, column 10", "aliases"),
        ("slug: a\n---\nslug: b\n", "line 2, column 1", "single document"),
        ("slug: a\ntitle: T\x07\n", "line 2, column 9", "unacceptable character"),
        ("questions:\n\t- a\n", "line 2, column 1", "'\\t'"),
    ],
    ids=["duplicate-key", "alias", "two-documents", "control-character", "tab"],
)
def test_yaml_level_errors(text: str, location: str, reason: str) -> None:
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(text, "demo.yaml")
    (error,) = info.value.errors
    assert error.location == location
    assert reason in error.reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("- a\n- b\n", "not a list"),
        ("hello", "not text"),
    ],
    ids=["empty", "comment-only", "list", "scalar"],
)
def test_document_level_errors(text: str, reason: str) -> None:
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(text, "demo.yaml")
    (error,) = info.value.errors
    assert error.location == ""
    assert reason in error.reason
    assert str(info.value) == f"demo.yaml: {error.reason}"


def test_oversize_text_refused() -> None:
    valid = to_yaml(BASE)
    padding = MAX_DOCUMENT_BYTES - len(valid.encode()) - 2
    at_limit = valid + "#" + "x" * padding + "\n"
    assert len(at_limit.encode()) == MAX_DOCUMENT_BYTES
    parse_consultation_text(at_limit, "demo.yaml")  # exactly at the limit: accepted

    too_big = valid + "# é" + "x" * padding + "\n"  # multi-byte characters count as bytes
    for text in (too_big, too_big.encode()):
        with pytest.raises(ConsultationFileError) as info:
            parse_consultation_text(text, "demo.yaml")
        (error,) = info.value.errors
        assert error.location == ""
        assert "too large" in error.reason


def test_oversize_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (MAX_DOCUMENT_BYTES * 4))
    with pytest.raises(ConsultationFileError) as info:
        load_consultation_file(path)
    assert "too large" in str(info.value)


def test_bytes_input() -> None:
    raw = ("\ufeff" + to_yaml(BASE)).encode("utf-8")
    assert parse_consultation_text(raw, "demo.yaml").title == "Titre"
    with pytest.raises(ConsultationFileError) as info:
        parse_consultation_text(b"title: \xff\n", "demo.yaml")
    assert "UTF-8" in str(info.value)


# -- storage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SEED, EXAMPLE], ids=lambda p: p.name)
def test_json_round_trip(path: Path) -> None:
    doc = load_consultation_file(path)
    stored = json.loads(json.dumps(doc.to_json()))
    again = ConsultationDocument.from_json(stored)
    assert again == doc
    assert again.to_json() == stored
    assert again.opens_at_utc == doc.opens_at_utc
    assert again.localized("en") == doc.localized("en")


def test_json_round_trip_keeps_offsets() -> None:
    data = dict(BASE, opens_at="2018-02-23T09:00:00Z", closes_at="2019-08-31T00:00:00+02:00")
    doc = parse_consultation_text(to_yaml(data), "demo.yaml")
    again = ConsultationDocument.from_json(json.loads(json.dumps(doc.to_json())))
    assert again == doc
    assert again.closes_at.utcoffset() == doc.closes_at.utcoffset()


def test_from_json_revalidates() -> None:
    stored = parse_consultation_text(to_yaml(BASE), "demo.yaml").to_json()
    stored["closes_at"] = "2000-01-01T00:00:00"
    with pytest.raises(ConsultationFileError) as info:
        ConsultationDocument.from_json(stored, source="consultation #3")
    assert str(info.value).startswith("consultation #3: closes_at: must be after opens_at")


def test_documents_are_immutable(seed: ConsultationDocument) -> None:
    with pytest.raises(ValueError):
        seed.title = "x"  # type: ignore[misc]


def test_module_is_pure() -> None:
    """The format module never depends on a messenger SDK or on the database."""
    tree = ast.parse(Path(consultation_file.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"__future__", "pydantic", "pydantic_core", "yaml"}
    assert imported <= allowed, imported - allowed


# -- reminders policy (scheduler) --------------------------------------------------------------

REMINDERS = {
    "before_close": ["7d", "1d", "12h"],
    "weekly_while_open": True,
    "max_per_week": 2,
    "quiet_hours": "21:00-09:00",
}


def test_reminders_section_is_optional_and_parsed() -> None:
    assert parse_consultation_text(to_yaml(BASE), "demo.yaml").reminders is None
    doc = parse_consultation_text(to_yaml(dict(BASE, reminders=REMINDERS)), "demo.yaml")
    policy = doc.reminders
    assert policy is not None
    assert policy.before_close == ["7d", "1d", "12h"]
    assert policy.offsets() == [("7d", 7, "d"), ("1d", 1, "d"), ("12h", 12, "h")]
    assert policy.weekly_while_open and policy.max_per_week == 2
    assert policy.quiet_range() == ((21, 0), (9, 0))
    again = ConsultationDocument.from_json(json.loads(json.dumps(doc.to_json())))
    assert again == doc and again.reminders == policy


def test_reminders_defaults() -> None:
    doc = parse_consultation_text(to_yaml(dict(BASE, reminders={})), "demo.yaml")
    assert doc.reminders is not None
    assert doc.reminders.before_close == [] and not doc.reminders.weekly_while_open
    assert doc.reminders.max_per_week == 2 and doc.reminders.quiet_range() is None


@pytest.mark.parametrize(
    ("reminders", "location", "reason"),
    [
        ({"before_close": ["7x"]}, "reminders.before_close[0]", "not a duration such as 7d"),
        ({"before_close": [7]}, "reminders.before_close[0]", "not a number"),
        ({"before_close": ["0d"]}, "reminders.before_close[0]", "not a duration"),
        ({"before_close": ["400d"]}, "reminders.before_close[0]", "more than a year"),
        ({"before_close": ["1d", "24h"]}, "reminders.before_close[1]", "same time as"),
        ({"before_close": "7d"}, "reminders.before_close", "expected a list"),
        ({"before_close": ["1d"] * 11}, "reminders.before_close", "at most 10"),
        ({"max_per_week": 0}, "reminders.max_per_week", "at least 1"),
        ({"max_per_week": "two"}, "reminders.max_per_week", "whole number"),
        ({"quiet_hours": "25:00-09:00"}, "reminders.quiet_hours", "21:00-09:00"),
        ({"quiet_hours": "9h-21h"}, "reminders.quiet_hours", "not a range of local times"),
        ({"quiet_hours": "09:00-09:00"}, "reminders.quiet_hours", "must not be empty"),
        ({"weekly_while_open": "often"}, "reminders.weekly_while_open", "true or false"),
        ({"weekly": True}, "reminders.weekly", "unknown key 'weekly'"),
        ({"quiet_hour": "21:00-09:00"}, "reminders.quiet_hour", "did you mean 'quiet_hours'"),
        ("yes", "reminders", "expected a mapping"),
    ],
)
def test_reminders_errors(reminders: Any, location: str, reason: str) -> None:
    problems = errors_of(dict(BASE, reminders=reminders))
    assert any(p.location == location and reason in p.reason for p in problems), problems
