"""Ingress normalization, blank texts, and erasure by indexed columns, on SQLite and PostgreSQL
(the core through the chat harness; the real channels are in test_privacy_channels.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Text, cast, select
from sqlalchemy import text as sql

from bot.ingress import is_blank, normalize_event, normalize_text
from bot.messages import (
    CommandMessage,
    EventContext,
    FileReceived,
    InboundEvent,
    MessageRef,
    TextMessage,
)
from bot.privacy import Housekeeping
from storage.db import Database
from storage.models import Citizen, Comment, Contribution, InboxEvent
from storage.models_moderation import Erasure
from tests.support.moderation import build, chats, contribute, count, rows, tr

# --------------------------------------------------------------------------- units


def test_normalize_text() -> None:
    assert normalize_text("a\x00b\x07c\x1b[31m\x7f\x85d") == "abc[31md"
    assert normalize_text("ligne 1\r\nligne 2\rligne 3\tfin") == "ligne 1\nligne 2\nligne 3\tfin"
    assert normalize_text("e\u0301te\u0301") == "été"  # NFD → NFC
    assert normalize_text("déjà vu ✨") == "déjà vu ✨"


def test_blank_texts() -> None:
    assert is_blank("") and is_blank(" \n\t")
    assert is_blank("\u200b\u200c\u200d\u2060\ufeff \u00ad\u3164\u2800")
    assert not is_blank("\u200bok\u200b") and not is_blank("·")


def test_every_text_of_an_event_is_normalized_and_the_raw_payload_dropped() -> None:
    ctx = EventContext(
        platform="matrix",
        chat_id="!room\x00:hs",
        user_id="@mallory:hs",
        event_id="$ev\x00",
        display_name="Mal\x00lory " + "x" * 300,
        raw={"content": {"body": "> <@zoe:hs> quoted\n\nhi\x00"}},
        message=MessageRef("!room:hs", "$m\x00"),
    )
    event = normalize_event(
        InboundEvent(ctx, CommandMessage("comment\x00", ("1", "a\x00b"), "1 a\x00b"))
    )
    assert event.context.raw is None
    assert event.context.chat_id == "!room:hs" and event.context.event_id == "$ev"
    assert event.context.message == MessageRef("!room:hs", "$m")
    assert event.context.display_name is not None
    assert event.context.display_name.startswith("Mallory xx")
    assert len(event.context.display_name) == 255
    assert event.payload == CommandMessage("comment", ("1", "ab"), "1 ab")
    text = normalize_event(InboundEvent(ctx, TextMessage("o\x00k", MessageRef("c", "m\x00"))))
    assert text.payload == TextMessage("ok", MessageRef("c", "m"))


def test_a_file_keeps_its_content_only_from_an_administrator() -> None:
    def event(user: str) -> InboundEvent:
        ctx = EventContext(platform="telegram", chat_id=user, user_id=user, event_id="e")
        return InboundEvent(ctx, FileReceived("avis.pdf", "application/pdf", b"%PDF" * 100))

    citizen = normalize_event(event("42"), admins={"telegram:7"})
    admin = normalize_event(event("7"), admins={"telegram:7"})
    assert citizen.payload == FileReceived("avis.pdf", "application/pdf", b"", size=400)
    assert admin.payload == FileReceived("avis.pdf", "application/pdf", b"%PDF" * 100, size=400)


# --------------------------------------------------------------------------- both databases


def _event_texts(app) -> list[str]:  # type: ignore[no-untyped-def]
    with app.db.session() as s:
        return [str(t) for t in s.execute(select(cast(InboxEvent.event, Text))).scalars()]


def test_a_nul_message_no_longer_blocks_erasure_or_expiry(db_url, clock, tmp_path) -> None:
    """On PostgreSQL one inbox row holding U+0000 made every erasure fail (PostgreSQL cannot
    read ``\\u0000`` out of JSON as text); the character is removed at ingress."""
    app = build(db_url, clock, tmp_path)
    try:
        chat = chats(app)
        mallory = chat("mallory", display_name="M" * 256)
        mallory.send("/start")
        mallory.send("Bonjour\x00 le\u0007 monde e\u0301")
        mallory.send("/comment\x00 1 x")
        assert not [t for t in _event_texts(app) if "\\u0000" in t or "\x00" in t]
        texts = [r.event["payload"].get("text") for r in rows(app, InboxEvent)]
        assert "Bonjour le monde é" in texts, texts
        (m,) = rows(app, Citizen, Citizen.platform_user_id == "mallory")
        assert m.display_name == "M" * 255  # a 256-character Matrix name fits VARCHAR(255)
        with app.db.session() as s:
            statuses = set(s.execute(select(InboxEvent.status)).scalars())
        assert statuses == {"done"}, statuses  # nothing failed on the way

        zoe = chat("zoe")
        zoe.send("/start")
        zoe.send("/forget")
        assert zoe.send("/forget yes")
        assert count(app, Erasure) == 1
        assert count(app, Citizen, Citizen.platform_user_id == "zoe") == 0

        clock.advance(days=800)
        report = Housekeeping(app.db, app.clock, app.settings).run()
        assert report.finished and report.erased >= 1
        assert count(app, Citizen, Citizen.platform_user_id == "mallory") == 0
    finally:
        app.close()


def test_blank_contributions_and_comments_are_refused(db_url, clock, tmp_path) -> None:
    app = build(db_url, clock, tmp_path)
    try:
        chat = chats(app)
        author = chat("author")
        contribute(author, "Une vraie idée", None)
        before = count(app, Contribution), count(app, Comment)
        invisible = "\u200b \u2060\ufeff\u200d"
        expected = tr(
            "en",
            "Your message only contains spaces or invisible characters. Please write a few words.",
        )
        bob = chat("bob")
        bob.send("/participate")
        replies = bob.send(invisible)
        assert expected in replies.text
        replies = bob.send(f"/comment 1 {invisible}")
        assert expected in replies.text
        assert (count(app, Contribution), count(app, Comment)) == before
        # A real text still goes through afterwards.
        assert "#1" in bob.send("/comment 1 Un vrai commentaire").text
        assert count(app, Comment) == before[1] + 1
    finally:
        app.close()


@pytest.mark.parametrize("lang", ["fr"])
def test_the_refusal_is_translated(sqlite_url, clock, tmp_path, lang) -> None:
    app = build(sqlite_url, clock, tmp_path)
    try:
        chat = chats(app)
        contribute(chat("author"), "Une vraie idée", None)
        replies = chat("bob", language=lang).send("/comment 1 \u200b\u200b")
        assert "ne contient que des espaces ou des caractères invisibles" in replies.text
    finally:
        app.close()


def test_erasure_uses_the_indexed_columns_and_scrubs_errors_and_keys(db_url, clock, tmp_path):
    """The inbox rows of a citizen are found by their sender/chat columns (filled at ingest),
    and erasure also scrubs a failure's error text and the raw platform ids in event keys."""
    app = build(db_url, clock, tmp_path)
    try:
        chat = chats(app)
        zoe = chat("zoe-777", platform="telegram", display_name="Zoé Erasable")
        zoe.send("/start")
        with app.db.session() as s:
            mine = s.execute(
                select(InboxEvent).where(
                    InboxEvent.platform == "telegram", InboxEvent.user_id == "zoe-777"
                )
            ).scalars()
            found = [(r.chat_id, r.chat_type, r.kind) for r in mine]
            assert ("zoe-777", "private", "command") in found
            # A failure whose error quotes her, and an event key with her raw id.
            failed = InboxEvent(
                platform="telegram",
                event_key="msg:zoe-777:99",
                status="failed",
                event={"context": {}, "payload": {"kind": "unsupported", "what": "x"}},
                received_at=clock.now,
                error="ValueError: bad name 'Zoé Erasable' (zoe-777)",
                user_id="zoe-777",
                chat_id="zoe-777",
                chat_type="private",
                kind="unsupported",
            )
            other = InboxEvent(
                platform="telegram",
                event_key="msg:bob:5",
                status="failed",
                event={"context": {}, "payload": {"kind": "unsupported", "what": "x"}},
                received_at=clock.now,
                error="KeyError: telegram:zoe-777",
                user_id="bob",
                chat_id="bob",
                chat_type="private",
                kind="unsupported",
            )
            s.add(failed)
            s.add(other)
        zoe.send("/forget")
        zoe.send("/forget yes")
        with app.db.session() as s:
            inbox = list(s.execute(select(InboxEvent)).scalars())
            texts = [str(t) for t in s.execute(select(cast(InboxEvent.event, Text))).scalars()]
        assert not [r for r in inbox if "zoe-777" in r.event_key], [r.event_key for r in inbox]
        assert not [r for r in inbox if r.error and "zoe" in r.error.lower()]
        assert not [r for r in inbox if r.user_id == "zoe-777" or r.chat_id == "zoe-777"]
        assert not [t for t in texts if "zoe-777" in t or "Erasable" in t]
        assert [r.user_id for r in inbox if r.event_key == "msg:bob:5"] == ["bob"]
    finally:
        app.close()


# --------------------------------------------------------------------------- migration


def test_migration_fills_existing_rows_and_drops_raw_payloads(empty_db_url) -> None:
    """Rows written before 0007_privacy (a NUL in a PostgreSQL JSON value, raw payloads with a
    replied-to message) get their sender/chat/kind columns and lose the raw payload."""
    db = Database(empty_db_url)
    db.upgrade("0006_rooms")
    event = {
        "context": {
            "platform": "telegram",
            "chat_id": "42",
            "user_id": "42",
            "event_id": "msg:42:1",
            "display_name": "Zoé",
            "language": "fr",
            "chat_type": "private",
            "message": None,
            "raw": {"message": {"reply_to_message": {"from": {"first_name": "Quoted"}}}},
        },
        "payload": {"text": "a\u0000b", "reply_to": None, "kind": "text"},
    }
    message = {"chat_id": "42", "subject": ["contribution", 7], "text": {"blocks": []}}
    with db.engine.begin() as conn:
        conn.execute(
            sql(
                "INSERT INTO inboxevent (platform, event_key, status, event, received_at) "
                "VALUES ('telegram', 'msg:42:1', 'done', :e, '2026-01-01 00:00:00+00:00')"
            ),
            {"e": json.dumps(event)},
        )
        conn.execute(
            sql(
                "INSERT INTO outboxmessage (platform, chat_id, message, status, attempts, "
                "created_at) VALUES ('telegram', '42', :m, 'sent', 1, "
                "'2026-01-01 00:00:00+00:00')"
            ),
            {"m": json.dumps(message)},
        )
    db.upgrade("0007_privacy")
    with db.engine.connect() as conn:
        row = conn.execute(
            sql("SELECT user_id, chat_id, chat_type, kind, CAST(event AS TEXT) FROM inboxevent")
        ).one()
        subject = conn.execute(sql("SELECT subject FROM outboxmessage")).scalar_one()
    db.dispose()
    assert tuple(row[:4]) == ("42", "42", "private", "text")
    stored = json.loads(row[4])
    assert stored["context"]["raw"] is None and "Quoted" not in row[4]
    assert stored["payload"]["text"] == "ab" and "\\u0000" not in row[4]
    assert subject == "contribution:7"
