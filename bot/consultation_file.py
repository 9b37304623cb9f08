"""The consultation file: a YAML document describing one consultation, and its validation.

A city describes a consultation (texts, questions, dates, settings, translations) in one YAML
file; see docs/consultation-format.md for the format reference. This module parses and
validates such files and turns every problem into a precise, human-readable error:

    ville.yaml: questions[1].text: field required
    ville.yaml: closes_at: must be after opens_at (2018-02-23T10:00:00)

It is pure on purpose: it imports only the standard library, pydantic and PyYAML, so that the
command line, the database layer and the chat adapters (which accept files uploaded in chat)
can all use it.

Public API:
    parse_consultation_text(text, source) -> ConsultationDocument
    load_consultation_file(path) -> ConsultationDocument
    ConsultationDocument.from_json(data) / .to_json()
    ConsultationDocument.localized(lang) -> LocalizedContent
    ConsultationFileError(source, errors: list[FieldError])
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_NESTING_DEPTH",
    "AboutPage",
    "AboutPageTranslation",
    "ConsultationDocument",
    "ConsultationFileError",
    "ConsultationSettings",
    "FieldError",
    "LocalizedContent",
    "LocalizedPage",
    "LocalizedQuestion",
    "LocalizedTestimonial",
    "Question",
    "QuestionTranslation",
    "ReminderPolicy",
    "Testimonial",
    "TestimonialTranslation",
    "Translation",
    "load_consultation_file",
    "parse_consultation_text",
]

#: Largest accepted document (UTF-8 bytes). Files may be uploaded in chat, so keep it small.
MAX_DOCUMENT_BYTES = 256 * 1024
#: Deepest accepted nesting of lists and mappings (a real document needs about 5 levels).
#: Checked while the YAML is read, so 100k opening brackets stop at the first levels.
MAX_NESTING_DEPTH = 20


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a document.

    `location` is a dotted path such as ``questions[1].text`` or ``translations.en.about``;
    for YAML syntax errors it is ``line L, column C``; for problems with the whole document
    (too large, empty, not a mapping) it is the empty string.
    """

    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}" if self.location else self.reason


class ConsultationFileError(Exception):
    """A consultation document is invalid. ``str(err)`` gives one line per error."""

    def __init__(self, source: str, errors: Sequence[FieldError]) -> None:
        super().__init__(source, list(errors))
        self.source = source
        self.errors: list[FieldError] = list(errors)

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {error}" for error in self.errors)


# --------------------------------------------------------------------------------------------
# Field types

_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_QUESTION_KEY_RE = re.compile(r"[a-z0-9_-]+")
_LANGUAGE_RE = re.compile(r"[a-z]{2}")
_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?"
)


def _check_slug(value: str) -> str:
    if not 3 <= len(value) <= 48:
        raise PydanticCustomError("slug", "must be 3 to 48 characters long")
    if "_" in value:
        raise PydanticCustomError(
            "slug", "must not contain '_' (the slug is part of Telegram deep links)"
        )
    if not re.fullmatch(r"[a-z0-9-]+", value):
        raise PydanticCustomError(
            "slug", "only lowercase letters a-z, digits 0-9 and '-' are allowed"
        )
    if not _SLUG_RE.fullmatch(value):
        raise PydanticCustomError("slug", "must not start or end with '-' nor contain '--'")
    return value


def _check_question_key(value: str) -> str:
    if not _QUESTION_KEY_RE.fullmatch(value):
        raise PydanticCustomError(
            "question_key", "only lowercase letters a-z, digits 0-9, '_' and '-' are allowed"
        )
    return value


def _check_language(value: str) -> str:
    if not _LANGUAGE_RE.fullmatch(value):
        raise PydanticCustomError(
            "language", "expected a two-letter lowercase language code such as 'fr' or 'en'"
        )
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else " (expected e.g. 'Europe/Paris')"
        raise PydanticCustomError(
            "timezone", "unknown time zone '{value}'{hint}", {"value": value, "hint": hint}
        ) from None
    return value


def _parse_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        raise PydanticCustomError(
            "datetime", "a date alone is ambiguous: give a time too, e.g. 2018-02-23T10:00:00"
        )
    if not isinstance(value, str):
        raise PydanticCustomError(
            "datetime", "expected a date and time such as 2018-02-23T10:00:00"
        )
    text = value.strip()
    if not _DATETIME_RE.fullmatch(text):
        raise PydanticCustomError(
            "datetime",
            "'{value}' is not a date and time such as 2018-02-23T10:00:00 "
            "(optionally followed by an offset such as +01:00 or Z)",
            {"value": text},
        )
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise PydanticCustomError(
            "datetime",
            "'{value}' is not a valid date: {problem}",
            {"value": text, "problem": str(exc)},
        ) from None


def _single_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise PydanticCustomError("single_line", "must be a single line")
    return value


def _text(max_length: int) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length)


Slug = Annotated[str, _text(48), AfterValidator(_check_slug)]
LanguageCode = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_check_language)
]
TimeZoneName = Annotated[str, _text(64), AfterValidator(_check_timezone)]
QuestionKey = Annotated[str, _text(32), AfterValidator(_check_question_key)]
LocalDateTime = Annotated[datetime, BeforeValidator(_parse_datetime)]

Title = Annotated[str, _text(200), AfterValidator(_single_line)]
Summary = Annotated[str, _text(300), AfterValidator(_single_line)]
Framing = Annotated[str, _text(8000)]
QuestionText = Annotated[str, _text(1000)]
HintText = Annotated[str, _text(1000)]
PageTitle = Annotated[str, _text(64), AfterValidator(_single_line)]
PageBody = Annotated[str, _text(8000)]
PersonName = Annotated[str, _text(200), AfterValidator(_single_line)]
RoleText = Annotated[str, _text(200), AfterValidator(_single_line)]
QuoteText = Annotated[str, _text(4000)]

MAX_QUESTIONS = 20
MAX_ABOUT_PAGES = 20
MAX_TESTIMONIALS = 50

_Loc = tuple[str | int, ...]


def _checks_failed(problems: list[tuple[_Loc, str]]) -> PydanticCustomError:
    """One pydantic error carrying several located problems (expanded by `_field_errors`)."""
    summary = "; ".join(f"{_render_loc(loc)}: {reason}" for loc, reason in problems)
    return PydanticCustomError(
        "consultation_checks", "{summary}", {"summary": summary, "problems": problems}
    )


# --------------------------------------------------------------------------------------------
# Models

_CONFIG = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Question(BaseModel):
    model_config = _CONFIG

    key: QuestionKey
    text: QuestionText
    hint: HintText | None = None


class AboutPage(BaseModel):
    model_config = _CONFIG

    title: PageTitle
    body: PageBody


class Testimonial(BaseModel):
    model_config = _CONFIG

    author: PersonName
    role: RoleText | None = None
    quote: QuoteText


class ConsultationSettings(BaseModel):
    model_config = _CONFIG

    support_withdrawal: bool = True
    max_contribution_length: int = Field(default=2000, ge=50, le=4000)
    max_comment_length: int = Field(default=1000, ge=20, le=4000)
    comments: bool = True
    premoderation: bool = False


_OFFSET_RE = re.compile(r"([1-9][0-9]{0,3})([dh])")
_QUIET_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
MAX_REMINDER_OFFSETS = 10


def _check_offset(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "reminder_offset",
            "expected a duration such as 7d (days) or 12h (hours), not {kind}",
            {"kind": _kind(value)},
        )
    text = value.strip()
    match = _OFFSET_RE.fullmatch(text)
    if match is None:
        raise PydanticCustomError(
            "reminder_offset",
            "'{value}' is not a duration such as 7d (days) or 12h (hours)",
            {"value": text},
        )
    amount, unit = int(match[1]), match[2]
    if (unit == "d" and amount > 366) or (unit == "h" and amount > 366 * 24):
        raise PydanticCustomError(
            "reminder_offset", "'{value}' is more than a year", {"value": text}
        )
    return text


def _check_quiet_hours(value: str) -> str:
    match = _QUIET_RE.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "quiet_hours",
            "'{value}' is not a range of local times such as 21:00-09:00",
            {"value": value},
        )
    if match.group(1, 2) == match.group(3, 4):
        raise PydanticCustomError("quiet_hours", "the range must not be empty")
    return value


ReminderOffset = Annotated[str, BeforeValidator(_check_offset)]
QuietHours = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_check_quiet_hours)
]


class ReminderPolicy(BaseModel):
    """When the bot reminds subscribers who still have something to do (see
    docs/consultation-format.md, "Reminders")."""

    model_config = _CONFIG

    before_close: list[ReminderOffset] = Field(
        default_factory=list, max_length=MAX_REMINDER_OFFSETS
    )
    weekly_while_open: bool = False
    max_per_week: int = Field(default=2, ge=1, le=14)
    quiet_hours: QuietHours | None = None

    @field_validator("before_close")
    @classmethod
    def _distinct_offsets(cls, value: list[str]) -> list[str]:
        seen: dict[int, int] = {}
        problems: list[tuple[_Loc, str]] = []
        for index, offset in enumerate(value):
            hours = reminder_offset_hours(offset)
            if hours in seen:
                problems.append(
                    (
                        (index,),
                        f"same time as before_close[{seen[hours]}] ('{value[seen[hours]]}')",
                    )
                )
            seen.setdefault(hours, index)
        if problems:
            raise _checks_failed(problems)
        return value

    def offsets(self) -> list[tuple[str, int, str]]:
        """``(offset as written, amount, unit)`` for each ``before_close`` entry, longest
        first; ``unit`` is ``d`` (days of local wall-clock time) or ``h`` (hours)."""
        out = []
        for text in self.before_close:
            match = _OFFSET_RE.fullmatch(text)
            assert match is not None
            out.append((text, int(match[1]), match[2]))
        return sorted(out, key=lambda o: -reminder_offset_hours(o[0]))

    def quiet_range(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """((start hour, minute), (end hour, minute)) of the quiet hours, if any."""
        if self.quiet_hours is None:
            return None
        match = _QUIET_RE.fullmatch(self.quiet_hours)
        assert match is not None
        return (int(match[1]), int(match[2])), (int(match[3]), int(match[4]))


def reminder_offset_hours(offset: str) -> int:
    """``7d`` → 168, ``12h`` → 12 (for ordering and duplicate checks)."""
    match = _OFFSET_RE.fullmatch(offset)
    assert match is not None
    return int(match[1]) * (24 if match[2] == "d" else 1)


class QuestionTranslation(BaseModel):
    model_config = _CONFIG

    text: QuestionText
    hint: HintText | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_a_plain_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise PydanticCustomError(
                "question_translation",
                "expected a mapping with 'text' (and optionally 'hint'), "
                "e.g. `lieux: {text: ...}`, not a plain string",
            )
        return data


class AboutPageTranslation(BaseModel):
    model_config = _CONFIG

    title: PageTitle
    body: PageBody


class TestimonialTranslation(BaseModel):
    model_config = _CONFIG

    role: RoleText | None = None
    quote: QuoteText


class Translation(BaseModel):
    """Texts in one more language. Anything left out falls back to the main language."""

    model_config = _CONFIG

    title: Title | None = None
    summary: Summary | None = None
    framing: Framing | None = None
    questions: dict[str, QuestionTranslation] = Field(default_factory=dict)
    about: list[AboutPageTranslation] | None = None
    testimonials: list[TestimonialTranslation] | None = None

    def is_empty(self) -> bool:
        return (
            self.title is None
            and self.summary is None
            and self.framing is None
            and not self.questions
            and self.about is None
            and self.testimonials is None
        )


class LocalizedQuestion(NamedTuple):
    key: str
    text: str
    hint: str | None


class LocalizedPage(NamedTuple):
    title: str
    body: str


class LocalizedTestimonial(NamedTuple):
    author: str
    role: str | None
    quote: str


@dataclass(frozen=True, slots=True)
class LocalizedContent:
    """Every text the bot shows, in one language (with per-field fallback to the main one).

    `language` is the language whose translation was used, or the main language when there is
    no translation for the requested one.
    """

    language: str
    title: str
    summary: str | None
    framing: str
    questions: tuple[LocalizedQuestion, ...]
    about: tuple[LocalizedPage, ...]
    testimonials: tuple[LocalizedTestimonial, ...]

    @property
    def framing_paragraphs(self) -> tuple[str, ...]:
        """The framing statement split on blank lines."""
        return _paragraphs(self.framing)

    def question(self, key: str) -> LocalizedQuestion:
        for question in self.questions:
            if question.key == key:
                return question
        raise KeyError(key)


def _paragraphs(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip())


def _to_utc(value: datetime, zone: tzinfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _local_time_problem(value: datetime, zone: tzinfo) -> str | None:
    """Explain why a naive local time is not a single instant in `zone` (DST changes)."""
    if value.tzinfo is not None:
        return None
    first, second = value.replace(tzinfo=zone, fold=0), value.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return None
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != value:
        return (
            f"{value.isoformat()} does not exist in {zone} (clocks go forward); "
            "pick another time or give an explicit offset"
        )
    return (
        f"{value.isoformat()} happens twice in {zone} (clocks go back); "
        "give an explicit offset such as +01:00"
    )


class ConsultationDocument(BaseModel):
    """A validated consultation file. Immutable."""

    model_config = _CONFIG

    slug: Slug
    language: LanguageCode
    timezone: TimeZoneName
    opens_at: LocalDateTime
    closes_at: LocalDateTime
    title: Title
    summary: Summary | None = None
    framing: Framing
    questions: list[Question] = Field(min_length=1, max_length=MAX_QUESTIONS)
    about: list[AboutPage] = Field(default_factory=list, max_length=MAX_ABOUT_PAGES)
    testimonials: list[Testimonial] = Field(default_factory=list, max_length=MAX_TESTIMONIALS)
    settings: ConsultationSettings = Field(default_factory=ConsultationSettings)
    reminders: ReminderPolicy | None = None
    translations: dict[LanguageCode, Translation] = Field(default_factory=dict)

    # -- validation across fields (each runs only when the fields it needs are valid) --------

    @field_validator("opens_at")
    @classmethod
    def _opens_at_exists(cls, value: datetime, info: ValidationInfo) -> datetime:
        if "timezone" in info.data:
            problem = _local_time_problem(value, ZoneInfo(info.data["timezone"]))
            if problem:
                raise PydanticCustomError("local_time", problem)
        return value

    @field_validator("closes_at")
    @classmethod
    def _closes_after_opening(cls, value: datetime, info: ValidationInfo) -> datetime:
        if "timezone" not in info.data:
            return value
        zone = ZoneInfo(info.data["timezone"])
        problem = _local_time_problem(value, zone)
        if problem:
            raise PydanticCustomError("local_time", problem)
        opens_at = info.data.get("opens_at")
        if opens_at is not None and _to_utc(value, zone) <= _to_utc(opens_at, zone):
            raise PydanticCustomError(
                "closes_before_opening",
                "must be after opens_at ({opens_at})",
                {"opens_at": opens_at.isoformat()},
            )
        return value

    @field_validator("questions")
    @classmethod
    def _unique_question_keys(cls, value: list[Question]) -> list[Question]:
        first_index: dict[str, int] = {}
        problems: list[tuple[_Loc, str]] = []
        for index, question in enumerate(value):
            if question.key in first_index:
                problems.append(
                    (
                        (index, "key"),
                        f"duplicate question key '{question.key}' "
                        f"(already used by questions[{first_index[question.key]}])",
                    )
                )
            else:
                first_index[question.key] = index
        if problems:
            raise _checks_failed(problems)
        return value

    @field_validator("translations")
    @classmethod
    def _translations_match(
        cls, value: dict[str, Translation], info: ValidationInfo
    ) -> dict[str, Translation]:
        data = info.data
        problems: list[tuple[_Loc, str]] = []
        for lang, tr in value.items():
            if lang == data.get("language"):
                problems.append(
                    ((lang,), f"'{lang}' is the main language: edit the main texts instead")
                )
                continue
            if tr.is_empty():
                problems.append(((lang,), "empty translation"))
            if tr.summary is not None and "summary" in data and data["summary"] is None:
                problems.append(
                    ((lang, "summary"), "there is no summary in the main language to translate")
                )
            if "questions" in data:
                questions = {q.key: q for q in data["questions"]}
                for key, qt in tr.questions.items():
                    if key not in questions:
                        known = ", ".join(questions)
                        problems.append(
                            (
                                (lang, "questions", key),
                                f"no question with key '{key}' (question keys: {known})",
                            )
                        )
                    elif qt.hint is not None and questions[key].hint is None:
                        problems.append(
                            (
                                (lang, "questions", key, "hint"),
                                "this question has no hint in the main language",
                            )
                        )
            if tr.about is not None and "about" in data and len(tr.about) != len(data["about"]):
                problems.append(
                    (
                        (lang, "about"),
                        f"{len(tr.about)} page(s) but `about` has {len(data['about'])}: "
                        "translate every page, in the same order",
                    )
                )
            if tr.testimonials is not None and "testimonials" in data:
                main = data["testimonials"]
                if len(tr.testimonials) != len(main):
                    problems.append(
                        (
                            (lang, "testimonials"),
                            f"{len(tr.testimonials)} testimonial(s) but `testimonials` has "
                            f"{len(main)}: translate every testimonial, in the same order",
                        )
                    )
                else:
                    for index, (tt, t) in enumerate(zip(tr.testimonials, main, strict=True)):
                        if tt.role is not None and t.role is None:
                            problems.append(
                                (
                                    (lang, "testimonials", index, "role"),
                                    "this testimonial has no role in the main language",
                                )
                            )
        if problems:
            raise _checks_failed(problems)
        return value

    # -- derived values ----------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The consultation's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def opens_at_utc(self) -> datetime:
        """Opening instant, as an aware UTC datetime."""
        return _to_utc(self.opens_at, self.zone)

    @property
    def closes_at_utc(self) -> datetime:
        """Closing instant, as an aware UTC datetime."""
        return _to_utc(self.closes_at, self.zone)

    @property
    def languages(self) -> tuple[str, ...]:
        """The main language first, then the translation languages in file order."""
        return (self.language, *self.translations)

    def localized(self, lang: str | None) -> LocalizedContent:
        """All bot-facing texts in `lang`, falling back field by field to the main language.

        `lang` may be a messenger locale such as ``en-GB`` or ``pt_BR``: only its first two
        letters count. An unknown language (or None) gives the main texts.
        """
        code = (lang or "").strip().lower().replace("_", "-").split("-")[0]
        tr = self.translations.get(code) if code != self.language else None
        if tr is None:
            tr = Translation()
            code = self.language

        questions = []
        for q in self.questions:
            qt = tr.questions.get(q.key)
            text = qt.text if qt else q.text
            hint = qt.hint if qt and qt.hint is not None else q.hint
            questions.append(LocalizedQuestion(q.key, text, hint))

        if tr.about is not None:
            about = [LocalizedPage(p.title, p.body) for p in tr.about]
        else:
            about = [LocalizedPage(p.title, p.body) for p in self.about]

        testimonials = []
        for index, t in enumerate(self.testimonials):
            tt = tr.testimonials[index] if tr.testimonials is not None else None
            role = tt.role if tt and tt.role is not None else t.role
            quote = tt.quote if tt else t.quote
            testimonials.append(LocalizedTestimonial(t.author, role, quote))

        return LocalizedContent(
            language=code,
            title=tr.title or self.title,
            summary=tr.summary if tr.summary is not None else self.summary,
            framing=tr.framing or self.framing,
            questions=tuple(questions),
            about=tuple(about),
            testimonials=tuple(testimonials),
        )

    # -- storage -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict (dates as ISO 8601 strings) that `from_json` accepts."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Any, source: str = "<stored document>") -> ConsultationDocument:
        """Re-validate a document stored with `to_json`; raises ConsultationFileError."""
        return _validate(data, source)


# --------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """Safe YAML, plus: dates stay strings (we parse them), no aliases, no duplicate keys,
    nesting bounded by MAX_NESTING_DEPTH (checked on the scanner's bracket level and on the
    composer's depth, before either recurses or accumulates per-level state)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not supported", event.start_mark
            )
        if self._depth >= MAX_NESTING_DEPTH:
            raise self._too_deep(self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        if self.flow_level >= MAX_NESTING_DEPTH:
            raise self._too_deep(self.get_mark())
        super().fetch_flow_collection_start(token_class)

    @staticmethod
    def _too_deep(mark: Any) -> yaml.MarkedYAMLError:
        return yaml.composer.ComposerError(
            None,
            None,
            f"lists and mappings nested too deeply (at most {MAX_NESTING_DEPTH} levels)",
            mark,
        )

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable key: the base class reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}'", key_node.start_mark
                    )
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _line_column(line: int, column: int) -> str:
    return f"line {line + 1}, column {column + 1}"


def _yaml_error(exc: yaml.YAMLError, text: str) -> FieldError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if problem == "but found another document":
            problem = "a file holds a single document: remove the second '---'"
        where = _line_column(mark.line, mark.column) if mark is not None else ""
        return FieldError(where, f"YAML error: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        where = _line_column(before.count("\n"), len(before) - (before.rfind("\n") + 1))
        return FieldError(where, f"YAML error: unacceptable character #x{exc.character:04x}")
    return FieldError("", f"YAML error: {exc}")


def _too_large(source: str, size: int) -> ConsultationFileError:
    return ConsultationFileError(
        source,
        [FieldError("", f"document too large ({size} bytes; at most {MAX_DOCUMENT_BYTES} bytes)")],
    )


def parse_consultation_text(text: str | bytes, source: str) -> ConsultationDocument:
    """Parse and validate a consultation document given as YAML text.

    `source` names the document in error messages (usually the file name). Bytes are decoded
    as UTF-8. Documents over MAX_DOCUMENT_BYTES are refused. Raises ConsultationFileError.
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise _too_large(source, size)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConsultationFileError(
                source, [FieldError("", f"not UTF-8 text (invalid byte at offset {exc.start})")]
            ) from None
    text = text.lstrip("\ufeff")
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConsultationFileError(source, [_yaml_error(exc, text)]) from None
    return _validate(data, source)


def load_consultation_file(path: str | Path) -> ConsultationDocument:
    """Read, parse and validate a consultation file; errors name the file (not its folder)."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_DOCUMENT_BYTES + 1)
            if len(raw) > MAX_DOCUMENT_BYTES:
                raise _too_large(path.name, os.fstat(stream.fileno()).st_size)
    except OSError as exc:
        raise ConsultationFileError(
            path.name, [FieldError("", f"cannot read the file: {exc.strerror or exc}")]
        ) from None
    return parse_consultation_text(raw, path.name)


# --------------------------------------------------------------------------------------------
# Validation and error reporting


def _validate(data: Any, source: str) -> ConsultationDocument:
    if data is None:
        raise ConsultationFileError(source, [FieldError("", "the document is empty")])
    if not isinstance(data, dict):
        raise ConsultationFileError(
            source,
            [
                FieldError(
                    "",
                    f"the document must be a mapping (slug: ..., title: ...), not {_kind(data)}",
                )
            ],
        )
    try:
        return ConsultationDocument.model_validate(data)
    except ValidationError as exc:
        raise ConsultationFileError(source, _field_errors(exc)) from None


def _render_loc(loc: Sequence[str | int]) -> str:
    """('questions', 1, 'text') -> 'questions[1].text'."""
    parts = list(loc)
    if "[key]" in parts:  # the error is about a mapping key: the part before it
        index = parts.index("[key]")
        parts[index - 1] = str(parts[index - 1])
        del parts[index]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class expected at `loc` in a ConsultationDocument, if any."""
    tp: Any = ConsultationDocument
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict and isinstance(part, str):
            tp = typing.get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unknown_key_reason(loc: tuple[str | int, ...]) -> str:
    key = loc[-1]
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key '{key}'"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}' (allowed: {', '.join(allowed)})"


def _reason(error: Any) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return _unknown_key_reason(tuple(error["loc"]))
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        length = len(value.strip()) if isinstance(value, str) else "?"
        return f"too long ({length} characters; at most {ctx.get('max_length')})"
    if kind == "string_type":
        if value is None:
            return "must not be empty"
        return f"expected text, not {_kind(value)} (put it in quotes)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys (key: value), not {_kind(value)}"
    if kind == "list_type":
        return f"expected a list (one '- ' item per line), not {_kind(value)}"
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} item(s) required"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} item(s) allowed"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, not {_kind(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    return str(error["msg"])


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "invalid_key":  # a key that is not text, e.g. `1: x`
            errors.append(FieldError(_render_loc((*loc[:-1], str(loc[-1]))), "unknown key"))
        elif error["type"] == "consultation_checks":
            for sub_loc, reason in error["ctx"]["problems"]:
                errors.append(FieldError(_render_loc(loc + tuple(sub_loc)), reason))
        else:
            errors.append(FieldError(_render_loc(loc), _reason(error)))
    return errors
