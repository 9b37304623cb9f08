"""Importing consultation files (CLI and an administrator's upload in chat): nesting bounds,
re-imports that drop questions, slug conflicts, unchanged files."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bot import errors
from bot.app import App
from bot.broadcasts import BroadcastService
from bot.cli import app as cli
from bot.consultation_file import (
    MAX_NESTING_DEPTH,
    ConsultationFileError,
    parse_consultation_text,
)
from bot.exports import build_export
from bot.services import Services
from storage.models import Consultation
from storage.repositories import Repos
from tests.conftest import SEED, make_app
from tests.support.harness import Chat
from tests.support.moderation import (  # noqa: F401
    ADMIN,
    chats,
    contribute,
    mapp,
    rows,
    sapp,
    tr,
)

DEEP = [
    "[" * 100_000,
    "a: " + "[" * 60_000 + "]" * 60_000,
    "".join("  " * depth + "-\n" for depth in range(MAX_NESTING_DEPTH + 5)),
    "{a: " * 50_000,
]


@pytest.mark.parametrize("text", DEEP, ids=["brackets", "in-a-key", "block", "braces"])
def test_deep_nesting_is_refused_before_python_recursion(text):
    # The old loader recursed until RecursionError (24 s for 100k brackets).
    with pytest.raises(ConsultationFileError) as caught:
        parse_consultation_text(text, "deep.yaml")
    message = str(caught.value)
    assert message.startswith("deep.yaml: line ")
    assert f"nested too deeply (at most {MAX_NESTING_DEPTH} levels)" in message


def test_nesting_within_the_bound_still_parses_to_a_field_error():
    text = "slug: x\nquestions: " + "[" * (MAX_NESTING_DEPTH - 2) + "]" * (MAX_NESTING_DEPTH - 2)
    with pytest.raises(ConsultationFileError) as caught:
        parse_consultation_text(text, "ok.yaml")
    assert "nested too deeply" not in str(caught.value)


def test_deep_nesting_uploaded_in_chat_is_refused_and_changes_nothing(sapp):  # noqa: F811
    admin = chats(sapp)(ADMIN)
    before = [c.document for c in rows(sapp, Consultation)]
    replies = admin.send_file("deep.yaml", b"[" * 100_000)
    assert tr("en", "This consultation file has errors; nothing was changed:") in replies.text
    assert "deep.yaml: line 1" in replies.text and "nested too deeply" in replies.text
    assert replies.actions() == []
    assert [c.document for c in rows(sapp, Consultation)] == before


# --------------------------------------------------------------------------- re-imports

SEED_DATA = yaml.safe_load(SEED.read_text(encoding="utf-8"))
NEW_QUESTION = {"key": "budget", "text": "Quel budget pour la participation ?"}


def _file(tmp_path: Path, name: str, **changes: Any) -> Path:
    data = copy.deepcopy(SEED_DATA)
    data.pop("translations", None)
    data.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _without_reussites(tmp_path: Path) -> Path:
    """The seed where question 2 ('reussites') is replaced by a new question."""
    return _file(tmp_path, "v2.yaml", questions=[SEED_DATA["questions"][0], NEW_QUESTION])


def _cli(*args: str, url: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(
        cli, list(args), env={"PARLONS_DATABASE_URL": url, "PARLONS_LOG_LEVEL": "WARNING"}
    )


def _error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def _ideas_on_reussites(app: App) -> None:
    """alice answers both questions, bob the second one: 'reussites' has 2 contributions."""
    contribute(Chat(app.engine, user="alice", language="fr"), "Une maison du projet", "Un budget")
    contribute(Chat(app.engine, user="bob", language="fr"), None, "Des jardins partagés")


def test_cli_refuses_to_drop_a_question_with_contributions_unless_archived(
    db_url, clock, tmp_path
):
    application = make_app(db_url, clock)
    try:
        _ideas_on_reussites(application)
        before = [c.document for c in rows(application, Consultation)]
        v2 = _without_reussites(tmp_path)
        line = _error_line(_cli("consultation", "import", str(v2), url=db_url))
        assert "“reussites” (2)" in line and "--archive-missing" in line
        assert "Nothing was changed" in line
        assert [c.document for c in rows(application, Consultation)] == before
        # Archived on purpose: the question's ideas stay reachable and counted.
        result = _cli("consultation", "import", str(v2), "--archive-missing", url=db_url)
        assert result.exit_code == 0, result.output
        assert "updated consultation ville-intelligente" in result.output
        assert "archived question reussites (2 contributions kept)" in result.output
        result = _cli("consultation", "import", str(v2), url=db_url)
        assert "unchanged consultation ville-intelligente" in result.output
        _check_archived_is_visible(application)
    finally:
        application.close()


def _plain(text: str) -> str:
    """French typography aside (no-break spaces before : ? and inside « »)."""
    return text.replace("\u202f", " ").replace("\u00a0", " ")


def _check_archived_is_visible(application: App) -> None:
    clock = application.clock
    clock.advance(seconds=1)  # type: ignore[attr-defined]
    carol = Chat(application.engine, user="carol", language="fr")
    carol.send("/start")
    text = _plain(carol.send("/participate").text)
    assert "Question 1 sur 2" in text  # 2 live questions, not 3
    listing = _plain(carol.send("/ideas").text)
    assert "Question archivée : Avez-vous des réussites locales à partager ?" in listing
    counts = [int(n) for n in re.findall(r"^• .*\((\d+)\)$", listing, re.MULTILINE)]
    assert len(counts) == 3
    archived = _plain(carol.send("/ideas 3").text)
    assert "Question archivée" in archived
    assert "Des jardins partagés" in archived and "Un budget" in archived
    mine = _plain(Chat(application.engine, user="alice", language="fr").send("/mine").text)
    assert "Question archivée : Avez-vous des réussites locales à partager ?" in mine
    assert "Un budget" in mine and "Une maison du projet" in mine
    with application.db.session() as session:
        services = Services(Repos(application.db, session), clock())
        info = services.consultations.by_slug("ville-intelligente")
        stats = services.consultations.statistics(info)
        results = BroadcastService(services.repos, clock()).compute_results(info)
        exported = build_export(services, info)
    # The results and the open data keep the archived question's ideas, with its text.
    assert {q.key: q.count for q in results.questions} == {"lieux": 1, "budget": 0, "reussites": 2}
    reussites = [c for c in exported.contributions if c["question_key"] == "reussites"]
    assert [c["question"] for c in reussites] == [3, 3]
    assert {_plain(c["question_text"]) for c in reussites} == {
        "Avez-vous des réussites locales à partager ?"
    }
    # /stats and the lists agree: every contribution is listed under one question.
    assert stats.contributions == sum(counts) == 3
    # The archived question takes no new contribution.
    assert [q.key for q in info.archived] == ["reussites"]
    assert len(info.question_ids) == 2


def test_cli_a_different_consultation_under_an_existing_slug(sqlite_url, clock, tmp_path):
    application = make_app(sqlite_url, clock)
    try:
        _ideas_on_reussites(application)
        other = _file(
            tmp_path,
            "other.yaml",
            title="Budget participatif 2020",
            questions=[NEW_QUESTION],
        )
        line = _error_line(_cli("consultation", "import", str(other), url=sqlite_url))
        assert "different consultation" in line and "--replace" in line
        line = _error_line(_cli("consultation", "import", str(other), "--replace", url=sqlite_url))
        assert "“lieux” (1)" in line and "“reussites” (2)" in line
        result = _cli(
            "consultation", "import", str(other), "--replace", "--archive-missing", url=sqlite_url
        )
        assert result.exit_code == 0, result.output
        assert "replaced consultation ville-intelligente" in result.output
        assert "archived question lieux (1 contribution kept)" in result.output
    finally:
        application.close()


def test_a_question_without_contributions_may_be_dropped(sqlite_url, clock, tmp_path):
    application = make_app(sqlite_url, clock)
    try:
        result = _cli("consultation", "import", str(_without_reussites(tmp_path)), url=sqlite_url)
        assert result.exit_code == 0, result.output
        assert "updated consultation" in result.output and "archived" not in result.output
        assert "removed question reussites (it had no contributions)" in result.output
        clock.advance(seconds=1)
        listing = Chat(application.engine, user="dan", language="fr").send("/ideas").text
        assert "archivée" not in listing
    finally:
        application.close()


def test_chat_upload_gives_the_same_refusals_translated(mapp, tmp_path):  # noqa: F811
    _ideas_on_reussites(mapp)
    admin = chats(mapp)(ADMIN, language="fr")
    before = [c.document for c in rows(mapp, Consultation)]
    replies = admin.send_file("v2.yaml", _without_reussites(tmp_path).read_bytes())
    # Compared without French typography's no-break spaces (rendered at run time).
    refusal = tr("fr", errors.QuestionsWithContributionsLeftOut.msgid, questions="“reussites” (2)")
    assert _plain(refusal) in _plain(replies.text)
    assert replies.actions() == []
    other = _file(
        tmp_path, "other.yaml", title="Budget participatif 2020", questions=[NEW_QUESTION]
    )
    replies = admin.send_file("other.yaml", other.read_bytes())
    assert "appartient à une autre consultation" in _plain(replies.text)
    assert "« Les nouvelles formes de gouvernance" in _plain(replies.text)
    assert replies.actions() == []
    replies = admin.send_file("seed.yaml", SEED.read_bytes())
    assert "est inchangée : rien à appliquer" in _plain(replies.text)
    assert replies.actions() == []
    assert [c.document for c in rows(mapp, Consultation)] == before
