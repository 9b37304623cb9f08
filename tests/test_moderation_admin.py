"""Running a consultation from chat: a YAML file sent by an administrator (validated, shown,
applied after confirmation), /manage to open, close, extend and change settings."""

from __future__ import annotations

from datetime import timedelta

import yaml

from bot.domain import Phase
from storage.models import Consultation, Contribution
from storage.models_moderation import AuditEntry
from tests.conftest import ROOT, SEED
from tests.support.moderation import (
    ADMIN,
    DOC,
    chats,
    contribute,
    count,
    rows,
    tr,
)


def _documents(app):  # type: ignore[no-untyped-def]
    return {c.slug: (c.document, c.updated_at, c.status) for c in rows(app, Consultation)}


def _yaml(**changes: object) -> bytes:
    data = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    data.update(changes)
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8")


def test_an_invalid_file_is_refused_with_its_errors_and_changes_nothing(mapp):
    admin = chats(mapp)(ADMIN)
    before = _documents(mapp)
    bad = b"slug: Not A Slug\ntitle: x\nopens_at: 2019-13-45\n"
    replies = admin.send_file("bad.yaml", bad)
    assert tr("en", "This consultation file has errors; nothing was changed:") in replies.text
    assert "bad.yaml: slug" in replies.text  # the CLI's wording: source: location: reason
    assert "opens_at" in replies.text
    assert replies.actions() == []
    replies = admin.send_file("broken.yaml", b"slug: [unclosed\n")
    assert "broken.yaml: line" in replies.text
    replies = admin.send_file("binary.yaml", b"\xff\xfe\x00garbage")
    assert "not UTF-8" in replies.text
    assert "/apply" not in replies.text
    # Nothing to apply afterwards, nothing changed.
    assert "old message" in admin.send("/apply").text
    assert _documents(mapp) == before
    assert count(mapp, AuditEntry) == 0


def test_a_citizen_cannot_send_a_consultation_file(sapp):
    citizen = chats(sapp)("citizen", display_name="Administrateur")
    before = _documents(sapp)
    replies = citizen.send_file("new.yaml", _yaml(slug="piratage", title="Piratage"))
    assert "I can only read text messages and commands" in replies.text
    assert (
        tr("en", "This command is reserved for the consultation's moderators.")
        in citizen.send("/apply").text
    )
    assert _documents(sapp) == before


def test_a_valid_file_is_shown_then_applied_after_confirmation(mapp):
    admin = chats(mapp)(ADMIN)
    replies = admin.send_file("budget.yaml", _yaml(slug="budget-2020", title="Budget 2020"))
    assert "Budget 2020" in replies.text and "New consultation" in replies.text
    assert DOC.questions[0].text in replies.text
    assert [a.split(":")[0] for a in admin._options().values()] == ["aok", "ano"]
    assert "budget-2020" not in _documents(mapp)
    replies = admin.press("aok")
    assert "created" in replies.text
    assert "budget-2020" in _documents(mapp)
    # An update keeps the consultation and its contributions.
    chat = chats(mapp)
    chat("alice").send("/start budget-2020")
    contribute(chat("alice"), "Une idée pour le budget", None)
    replies = admin.send_file("budget.yaml", _yaml(slug="budget-2020", title="Budget 2020-2021"))
    assert "Update of the consultation" in replies.text
    admin.press("aok")
    assert _documents(mapp)["budget-2020"][0]["title"] == "Budget 2020-2021"
    assert "Budget 2020-2021" in chat("bob", language="fr").send("/start budget-2020").text
    assert count(mapp, Contribution) == 1
    # A file that drops the question alice answered is refused, naming it and its count
    # (issue 13: a question without contributions may go; see test_consultation_import.py).
    data = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    first = data["questions"][0]["key"]
    data.update(slug="budget-2020", questions=data["questions"][1:])
    data.pop("translations", None)
    replies = admin.send_file("budget.yaml", yaml.safe_dump(data, allow_unicode=True).encode())
    assert f"“{first}” (1)" in replies.text and "Nothing was changed" in replies.text
    assert replies.actions() == []
    audit = [(e.action, e.target, e.details) for e in rows(mapp, AuditEntry)]
    assert audit == [
        ("import", "consultation:budget-2020", {"created": True}),
        ("import", "consultation:budget-2020", {"created": False}),
    ]


def test_a_stale_or_discarded_change_is_not_applied(sapp):
    admin = chats(sapp)(ADMIN)
    admin.send_file("a.yaml", _yaml(slug="premiere", title="Première"))
    first_token = next(w for w in admin.last.text.split() if len(w) == 8 and w.isalnum())
    admin.send_file("b.yaml", _yaml(slug="seconde", title="Seconde"))
    assert "old message" in admin.send(f"/apply {first_token}").text
    assert "Discarded" in admin.send("/discard").text
    assert "old message" in admin.send("/apply").text
    assert set(_documents(sapp)) == {"ville-intelligente"}


def test_settings_change_with_confirmation(mapp):
    chat = chats(mapp)
    admin = chat(ADMIN)
    replies = admin.send("/manage")
    assert "Pre-moderation" in replies.text and "/manage premoderation on" in replies.text
    replies = admin.send("/manage premoderation on")
    assert "Apply this change?" in replies.text
    assert _documents(mapp)["ville-intelligente"][0]["settings"]["premoderation"] is False
    admin.send("/apply")
    assert _documents(mapp)["ville-intelligente"][0]["settings"]["premoderation"] is True
    contribute(chat("alice"), "Une idée modérée", None)
    assert rows(mapp, Contribution)[0].status == "pending"
    admin.send("/manage withdrawal off")
    admin.send("/apply")
    admin.send("/manage comments off")
    admin.send("/apply")
    settings = _documents(mapp)["ville-intelligente"][0]["settings"]
    assert (settings["support_withdrawal"], settings["comments"]) == (False, False)
    assert "approved" in admin.send("/approve 1").text  # administrators moderate too
    assert "Comments are turned off" in chat("bob").send("/comment 1 x").text
    assert [e.details for e in rows(mapp, AuditEntry) if e.action == "settings"] == [
        {"premoderation": True},
        {"support_withdrawal": False},
        {"comments": False},
    ]
    assert "Usage" in admin.send("/manage comments maybe").text


def test_extend_and_close_with_confirmation(mapp, clock):
    admin = chats(mapp)(ADMIN)
    closes = DOC.closes_at_utc
    replies = admin.send("/manage extend 7d")
    assert "Move the closing" in replies.text
    assert rows(mapp, Consultation)[0].closes_at == closes
    admin.send("/apply")
    assert rows(mapp, Consultation)[0].closes_at == closes + timedelta(days=7)
    admin.send("/manage extend 2019-09-30 18:00")
    admin.send("/apply")
    local = rows(mapp, Consultation)[0].closes_at.astimezone(DOC.zone)
    assert (local.date().isoformat(), local.hour) == ("2019-09-30", 18)
    before = rows(mapp, Consultation)[0].closes_at
    assert "tomorrow" in admin.send("/manage extend tomorrow").text  # "not a date"
    assert "old message" in admin.send("/apply").text
    assert rows(mapp, Consultation)[0].closes_at == before
    admin.send("/manage close")
    assert rows(mapp, Consultation)[0].closes_at > clock.now  # not yet
    admin.send("/apply")
    row = rows(mapp, Consultation)[0]
    assert row.closes_at == clock.now
    assert [e.action for e in rows(mapp, AuditEntry)] == ["extend", "extend", "close"]


def test_open_now_with_confirmation(sapp, clock):
    clock.now = DOC.opens_at_utc - timedelta(days=2)
    admin = chats(sapp)(ADMIN)
    assert "Open now" in admin.send("/manage").text
    admin.send("/manage open")
    admin.send("/apply")
    with sapp.db.session() as s:
        from bot.services import Services
        from storage.repositories import Repos

        info = Services(Repos(sapp.db, s), clock.now).consultations.by_slug("ville-intelligente")
        assert info.phase(clock.now) == Phase.OPEN
    assert "Only a consultation that has not opened yet" in admin.send("/manage open").text


def test_manage_is_for_administrators(sapp):
    chat = chats(sapp)
    chat(ADMIN).send("/mod add console:mod1")
    for user in ("mod1", "citizen"):
        replies = chat(user).send("/manage close")
        assert (
            tr("en", "This command is reserved for the consultation's moderators.") in replies.text
        )
    assert ROOT.exists()
