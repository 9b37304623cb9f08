"""Citizens' rights: the privacy notice accepted before taking part, /mydata, /forget (no
personal data left anywhere), and erasures re-applied after a restore from a backup."""

from __future__ import annotations

import json
import shutil

from sqlalchemy import JSON, LargeBinary, String, Text, cast, inspect, or_, select
from sqlalchemy.types import TypeDecorator

from bot.privacy import NOTICE_VERSION, erasure_log_path, one_way_id, privacy_secret
from storage.models import Citizen, Comment, Contribution, Support
from storage.models_moderation import Ban, Erasure, PrivacyConsent, Report
from tests.support.moderation import (
    ADMIN,
    build,
    chats,
    contribute,
    count,
    rows,
    tr,
)

# --------------------------------------------------------------------------- notice


def test_the_notice_is_shown_at_first_contact_and_gates_taking_part(mapp):
    chat = chats(mapp)
    contribute(chat("author"), "Une idée", None)
    zoe = chat("zoe", accept_privacy=False, buttons=True)
    replies = zoe.send("/start")
    assert "Your data in this consultation" in replies.text
    assert f"pvok:{NOTICE_VERSION}" in replies.actions()
    # Reading stays open.
    assert "Une idée" in zoe.send("/ideas 1").text
    assert "Your data" not in zoe.last.text
    # Taking part asks for the notice first, whatever the way in.
    for line in ("/participate", "/support 1", "/comment 1 Bravo", "/report 1 spam"):
        replies = zoe.send(line)
        assert "Before you take part" in replies.text, line
    zoe.send("/ideas 1")
    assert "Before you take part" in zoe.press("sup:1").text
    assert count(mapp, Support) == 0 and count(mapp, Comment) == 0 and count(mapp, Report) == 0
    assert count(mapp, PrivacyConsent) == 1  # the author's (the harness accepted for them)
    # Accepting offers to continue with what was asked.
    replies = zoe.press("pvok")
    assert "You can now take part" in replies.text
    assert replies.actions() == ["sup:1"]
    replies = zoe.press("sup:1")
    assert count(mapp, Support) == 1
    consent = rows(mapp, PrivacyConsent)[-1]
    assert consent.version == NOTICE_VERSION
    assert "already accepted" in zoe.send("/accept").text
    assert "You accepted this notice" in zoe.send("/privacy").text
    # No notice any more at /start.
    assert "Your data" not in zoe.send("/start").text


def test_a_reaction_or_a_typed_answer_is_gated_too(sapp):
    chat = chats(sapp)
    contribute(chat("author"), "Une idée", None)
    zoe = chat("zoe", accept_privacy=False)
    zoe.send("/ideas 1")
    mid = zoe.message_id_of(("contribution", 1))
    assert "Before you take part" in zoe.react(mid, "👍").text
    assert zoe.react(mid, "🎉") == []  # not a support: nothing to gate
    assert "Before you take part" in zoe.send("Bravo", reply_to=mid).text
    assert count(sapp, Support) == 0 and count(sapp, Comment) == 0


def test_an_old_notice_button_shows_the_new_notice(sapp):
    zoe = chats(sapp)("zoe", accept_privacy=False, buttons=True)
    replies = zoe.press_stale("pvok:0")
    assert "The notice has changed" in replies.text
    assert count(sapp, PrivacyConsent) == 0


# --------------------------------------------------------------------------- my data


def test_mydata_round_trip(mapp):
    chat = chats(mapp)
    contribute(chat("author"), "Idée de l'auteur", None)
    alice = chat("alice", display_name="Alice Martin")
    contribute(alice, "Idée d'Alice", "Réussite d'Alice")
    alice.send("/support 1")
    alice.send("/comment 1 Commentaire d'Alice")
    alice.send("/report 1 offtopic")
    alice.send("/lang fr")
    replies = alice.send("/mydata")
    attachment = replies[0].attachment
    assert attachment is not None and attachment.mime_type == "application/json"
    data = json.loads(attachment.data)
    me = next(c for c in rows(mapp, Citizen) if c.platform_user_id == "alice")
    assert data["citizen"] == {
        "platform": "console",
        "platform_user_id": "alice",
        "display_name": "Alice Martin",
        "locale": "fr",
        "pseudonym": me.pseudonym,
        "reachable": True,
        "created_at": me.created_at.isoformat(),
        "last_seen_at": me.last_seen_at.isoformat(),
    }
    assert [(c["id"], c["text"], c["status"]) for c in data["contributions"]] == [
        (c.id, c.text, c.status)
        for c in rows(mapp, Contribution, Contribution.citizen_id == me.id)
    ]
    assert [s["contribution_id"] for s in data["supports"]] == [1]
    assert [c["text"] for c in data["comments"]] == ["Commentaire d'Alice"]
    assert [(r["target"], r["reason"]) for r in data["reports"]] == [
        ("contribution:1", "offtopic")
    ]
    assert [c["version"] for c in data["privacy_consents"]] == [NOTICE_VERSION]
    assert data["visits"] and data["visits"][0]["consultation"] == "ville-intelligente"
    assert data["dialogues"] and data["dialogues"][0]["chat_id"] == "alice"
    assert "private_chat" in data["other"]  # the scheduler's address book, if present
    # Only her: nobody else's text or identity.
    blob = json.dumps(data, ensure_ascii=False)
    assert "Idée de l'auteur" not in blob and '"author"' not in blob


# --------------------------------------------------------------------------- forget


def _text_columns(conn):  # type: ignore[no-untyped-def]
    """Every text-like or JSON column of every table of the migrated database (read from the
    database itself, so that the tables of every feature are searched)."""
    insp = inspect(conn)
    columns = []
    for table in insp.get_table_names():
        for column in insp.get_columns(table):
            kind = column["type"]
            if isinstance(kind, TypeDecorator):
                kind = kind.impl
            if isinstance(kind, String | Text | JSON) or "JSON" in str(kind).upper():
                columns.append((table, column["name"]))
            else:
                # No other place for text: binary columns hold files (the results' charts) and
                # SQLite's full-text index of the ideas (FTS5 shadow tables of idea_fts: stems
                # of contribution texts, which erasure keeps).
                assert (
                    not isinstance(kind, LargeBinary)
                    or table == "broadcast_file"
                    or table.startswith("idea_fts_")
                ), table
    assert ("citizen", "platform_user_id") in columns and ("inboxevent", "event") in columns
    return columns


def _find(app, needles):  # type: ignore[no-untyped-def]
    """(table, column, value) of every cell that contains one of the needles."""
    from sqlalchemy import MetaData, Table

    found = []
    meta = MetaData()
    with app.db.engine.connect() as conn:
        for table_name, column_name in _text_columns(conn):
            table = meta.tables.get(table_name)
            if table is None:
                table = Table(table_name, meta, autoload_with=conn)
            text = cast(table.c[column_name], Text)
            cond = or_(*(text.ilike(f"%{n}%") for n in needles))
            for (value,) in conn.execute(select(table.c[column_name]).where(cond)):
                found.append((table_name, column_name, str(value)[:160]))
    return found


def _stats(chat):  # type: ignore[no-untyped-def]
    return chat("statsreader").send("/stats").text


def test_after_forget_no_personal_data_remains_anywhere(mapp):
    user, name = "zoe-4242", "Zoé Erasable-4242"
    chat = chats(mapp)
    author = chat("author")
    contribute(author, "Idée de l'auteur", None)
    zoe = chat(user, display_name=name, language="fr")
    zoe.send("/start")
    zoe.press("news:on")
    contribute(zoe, "Idée de Zoé", "Réussite de Zoé")
    zoe.send("/support 1")
    zoe.send("/comment 1 Commentaire de Zoé")
    zoe.send("/report 1 spam")
    zoe.send("/ideas 1")
    zoe.react(zoe.message_id_of(("contribution", 1)), "👍")  # already supported: refused
    zoe.send("/mydata")
    zoe.send("/participate")  # a dialogue in progress, with a draft
    zoe.send("Un brouillon de Zoé")
    chat("bob").send("/support 2")
    chat("bob").send("/comment 2 Réponse à Zoé")
    # An administrator names her (moderator of the seed), and reads the audit log.
    admin = chat(ADMIN)
    admin.send(f"/mod add console:{user}")
    admin.send("/mod list")
    admin.send("/audit")
    before = _stats(chat)
    mine = [c.id for c in rows(mapp, Contribution) if c.text.endswith("de Zoé")]
    needles = [user, "Erasable-4242"]  # the id, and the name (ASCII part: JSON escapes é)
    me = next(c for c in rows(mapp, Citizen) if c.platform_user_id == user)
    needles.append(me.pseudonym)
    where = {(table, column) for table, column, _value in _find(mapp, needles)}
    # The search does find her before, everywhere she is.
    assert {
        ("citizen", "platform_user_id"),
        ("citizen", "display_name"),
        ("citizen", "pseudonym"),
        ("dialogue", "user_id"),
        ("inboxevent", "event"),
        ("outboxmessage", "chat_id"),
        ("moderator", "platform_user_id"),
        ("audit_entry", "target"),
    } <= where, where

    replies = zoe.send("/forget")
    assert "Erase your personal data?" in tr("en", "Erase your personal data?") and replies
    assert me.platform_user_id == user and count(mapp, Erasure) == 0
    replies = zoe.send("/forget yes")
    assert replies and count(mapp, Erasure) == 1
    # What is left until the farewell is delivered: its outbox row; the next event sweeps it.
    chat("bob").send("/stats")
    found = _find(mapp, needles)
    assert found == [], found
    # The erasure rule: contributions, supports and comments stay, anonymous; figures unchanged.
    assert _stats(chat) == before
    tomb = next(c for c in rows(mapp, Citizen) if c.id == me.id)
    assert tomb.platform_user_id is None and tomb.display_name is None
    assert tomb.pseudonym.startswith("erased-")
    assert [c.citizen_id for c in rows(mapp, Contribution) if c.id in mine] == [me.id, me.id]
    assert count(mapp, Support, Support.citizen_id == me.id) == 1
    assert count(mapp, Comment, Comment.citizen_id == me.id) == 1
    # Logged by a one-way id only.
    key = one_way_id(privacy_secret(mapp.settings), "console", user)
    assert [e.subject_key for e in rows(mapp, Erasure)] == [key]
    assert erasure_log_path(mapp.settings).read_text().split()[-1] == key
    # Writing again makes a new participant, with nothing of the old one.
    again = chat(user, display_name=name)
    assert "Your data" in chats(mapp)(user, accept_privacy=False).send("/start").text or again
    assert count(mapp, Citizen, Citizen.platform_user_id == user) == 1


def test_forget_asks_for_confirmation_and_works_in_private_only(sapp):
    from bot.messages import ChatType

    chat = chats(sapp)
    zoe = chat("zoe")
    zoe.send("/start")
    replies = zoe.send("/forget")
    assert "Erase your personal data?" in replies.text
    assert count(sapp, Erasure) == 0
    group = chat("zoe", chat_type=ChatType.GROUP, chat_id="-100g")
    assert "private chat" in group.send("/forget yes").text
    assert count(sapp, Erasure) == 0


def test_a_ban_outlives_an_erasure(sapp):
    chat = chats(sapp)
    chat(ADMIN).send("/mod add console:mod1")
    troll = chat("troll")
    contribute(troll, "Une provocation", None)
    chat("mod1").send("/ban 1 Provocations répétées")
    troll.send("/forget yes")
    assert count(sapp, Citizen, Citizen.platform_user_id == "troll") == 0
    again = chat("troll")
    replies = again.send("/participate")
    assert "suspended your participation" in replies.text
    assert count(sapp, Ban) == 1


def test_erasures_are_reapplied_after_a_restore(sqlite_url, clock, tmp_path):
    app = build(sqlite_url, clock, tmp_path)
    chat = chats(app)
    zoe = chat("zoe-restore", display_name="Zoé Restaurée")
    contribute(zoe, "Une idée de Zoé", None)
    chat("other").send("/start")
    path = sqlite_url.removeprefix("sqlite:///")
    app.close()
    backup = tmp_path / "backup.sqlite3"
    shutil.copy(path, backup)  # last night's backup, before she asked
    app = build(sqlite_url, clock, tmp_path)
    chats(app)("zoe-restore").send("/forget yes")
    app.close()
    shutil.copy(backup, path)  # the database is restored from the backup: she is back
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"parlons.sqlite3{suffix}").unlink(missing_ok=True)
    app = build(sqlite_url, clock, tmp_path)
    assert count(app, Citizen, Citizen.platform_user_id == "zoe-restore") == 1
    from typer.testing import CliRunner

    from bot.cli import app as cli

    env = {
        "PARLONS_DATABASE_URL": sqlite_url,
        "PARLONS_PRIVACY_DIR": str(tmp_path / "privacy"),
        "PARLONS_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(cli, ["privacy", "reapply"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 citizens erased again" in result.output
    assert count(app, Citizen, Citizen.platform_user_id == "zoe-restore") == 0
    assert _find(app, ["zoe-restore", "Restaur"]) == []
    assert count(app, Contribution) == 1  # her idea stays, anonymous
    app.close()


def test_inactive_citizens_expire(sapp, clock):
    chat = chats(sapp)
    chat("old").send("/start")
    clock.advance(days=400)
    chat("recent").send("/start")
    with sapp.db.session() as s:
        from bot.privacy import PrivacyService
        from storage.repositories import Repos

        assert PrivacyService(Repos(sapp.db, s), clock.now, sapp.settings).expire(12) == 1
    assert count(sapp, Citizen, Citizen.platform_user_id == "old") == 0
    assert count(sapp, Citizen, Citizen.platform_user_id == "recent") == 1
