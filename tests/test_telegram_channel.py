"""The Telegram channel end to end (python-telegram-bot over HTTP to the Bot API test server):
groups, what citizens may send besides text, HTML escaping, long texts, edits in place and their
fallback, the commands menu, the deep-link command and the token kept out of the logs."""

from __future__ import annotations

import asyncio
import io
import logging

import segno
from sqlmodel import delete, select
from typer.testing import CliRunner

from adapters.telegram.channel import MAX_TEXT, split_text, visible_length
from bot.cli import app as cli
from bot.i18n import gettext, use_locale
from bot.messages import RichText, Span, b, render_html
from bot.router import Role
from storage.models import InboxEvent, Visit
from storage.models_moderation import Moderator, ModeratorChat
from tests.conftest import make_app
from tests.support.bot_api_server import BotApiServer, SentRecord
from tests.support.telegram import running_bot

BOT = "parlons_test_bot"
UNSUPPORTED = "I can only read text messages and commands. Type /help to see what you can do."
EDITED = (
    "I do not take edited messages into account. Please send the corrected text as a new message."
)


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def texts(records: list[SentRecord]) -> str:
    return "\n\n".join(r.plain_text or "" for r in records)


def card_in(records: list[SentRecord]) -> SentRecord:
    """The consultation card among the messages (other features may add their own)."""
    cards = [r for r in records if r.callback_data[:1] == ["part"] or any(
        b.get("url", "").startswith("https://t.me/") for row in r.buttons for b in row
    )]  # fmt: skip
    assert len(cards) == 1, texts(records)
    return cards[0]


async def warm_up(tg, user: int) -> None:  # type: ignore[no-untyped-def]
    """A first contact, so what a test looks at next is not mixed with first-contact notices;
    the citizen accepts the privacy notice."""
    await tg.say(user, "/start", language_code="en")
    await tg.accept(user, language_code="en")


async def contribute(tg, user: int, text: str) -> None:  # type: ignore[no-untyped-def]
    await warm_up(tg, user)
    await tg.say(user, "/participate", language_code="en")
    sent = await tg.say(user, text, language_code="en")
    (preview,) = [r for r in sent if "ok" in r.callback_data]
    await tg.press(user, "ok", preview.message_id, language_code="en")


# --------------------------------------------------------------------------- groups


async def test_groups_get_the_card_with_a_private_deep_link_and_nothing_else(app):
    group = -100500
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        kw = {"chat_id": group, "chat_type": "supergroup", "language_code": "en"}
        card = card_in(await tg.say(1003, f"/start@{BOT}", **kw))
        assert card.chat_id == group
        (button,) = [b for row in card.buttons for b in row]
        assert button["url"] == f"https://t.me/{BOT}?start=ville-intelligente"
        assert tr("en", "Participate in private") in button["text"]
        # Commands for another bot, free text and mentions (privacy mode lets replies and
        # mentions through), stickers and members joining: the bot stays quiet.
        assert await tg.say(1003, "/start@other_bot", **kw) == []
        assert await tg.say(1003, f"@{BOT} bonjour", **kw) == []
        assert await tg.say(1004, None, sticker={"file_id": "S", "type": "regular"}, **kw) == []
        assert await tg.say(1004, None, new_chat_members=[{"id": 1005}], **kw) == []
        # Participation is private only (for a citizen who already accepted the privacy notice
        # in private).
        await warm_up(tg, 1003)
        replies = await tg.say(1003, f"/participate@{BOT}", **kw)
        assert tr(
            "en", "Let's continue in a private chat: open a conversation with me to take part."
        ) in texts(replies)
        assert not server.pending_updates


# --------------------------------------------------------------------------- not text


async def test_what_else_citizens_send_gets_a_clear_answer_or_is_ignored(app):
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        unsupported = tr("en", UNSUPPORTED)
        user = 1010
        await warm_up(tg, user)
        for content in (
            {"sticker": {"file_id": "S1", "file_unique_id": "s", "type": "regular"}},
            {"photo": [{"file_id": "P1", "file_unique_id": "p", "width": 1, "height": 1}]},
            {"voice": {"file_id": "V1", "file_unique_id": "v", "duration": 2}},
            {"location": {"latitude": 48.85, "longitude": 2.35}},
        ):
            (reply,) = await tg.say(user, None, language_code="en", **content)
            assert reply.plain_text == unsupported, content
        # A forwarded text is not the citizen's own words.
        origin = {"type": "hidden_user", "date": 1, "sender_user_name": "X"}
        (reply,) = await tg.say(user, "D'un autre", language_code="en", forward_origin=origin)
        assert reply.plain_text == unsupported
        # An edit gets an answer too (never taken as a new contribution).
        update_id = server.inject_message(user, "Brouillon", language_code="en")
        await tg.settle()
        first = server.update(update_id)["message"]["message_id"]
        mark = len(server.sent)
        server.inject_message(user, "Corrigé", language_code="en", edited=True, message_id=first)
        await tg.settle()
        (answer,) = [r for r in server.sent[mark:] if r.chat_id == user]
        assert answer.plain_text == tr("en", EDITED)
        # Updates the bot does not ask for, and service messages, change nothing.
        channel = {"id": -1009, "type": "channel", "title": "Canal"}
        server.inject_update(
            {"channel_post": {"message_id": 1, "chat": channel, "date": 1, "text": "/start"}}
        )
        member = {"status": "member", "user": {"id": user, "is_bot": False, "first_name": "C"}}
        server.inject_update(
            {
                "my_chat_member": {
                    "chat": {"id": user, "type": "private"},
                    "from": {"id": user, "is_bot": False, "first_name": "C"},
                    "date": 1,
                    "old_chat_member": member,
                    "new_chat_member": {**member, "status": "kicked"},
                }
            }
        )
        server.inject_callback(user, "sup:1", 999)  # a stale button: answered, not crashing
        await tg.settle()
        assert not server.pending_updates
        # Nothing crashed: the next message is answered.
        assert card_in(await tg.say(user, "/start", language_code="en"))


async def test_documents_arrive_as_files(app):
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        yaml = b"slug: demo\n" * 10
        doc = server.register_file(yaml, "demo.yaml", "application/yaml")
        await tg.say(1011, None, document=doc.as_document(), caption="ma consultation")
        big = server.register_file(b"x" * (600 * 1024), "big.pdf", "application/pdf")
        await tg.say(1011, None, document=big.as_document())
        with app.db.session() as s:
            rows = s.exec(select(InboxEvent).order_by(InboxEvent.id)).all()
        payloads = [r.event["payload"] for r in rows]
        assert payloads[0]["kind"] == "file"
        assert payloads[0]["filename"] == "demo.yaml"
        # A citizen's document: its name, type and size only, never fetched (README, "Privacy:
        # what is kept and for how long"); an administrator's file is (tests/test_privacy_*).
        assert payloads[0]["data"] == "" and payloads[0]["size"] == len(yaml)
        assert server.calls("getFile") == []
        assert payloads[1] == {"kind": "unsupported", "what": "document"}
        assert [r.status for r in rows] == ["done", "done"]


# --------------------------------------------------------------------------- rendering


async def test_user_text_is_escaped_in_html(app):
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        hostile = '<b>gras</b> <a href="https://evil.example">clic</a> & &amp; <script>'
        await contribute(tg, 1020, hostile)
        await warm_up(tg, 1021)
        (idea,) = [r for r in await tg.say(1021, "/ideas 1", language_code="en") if r.callback_data
                   and r.callback_data[0].startswith("sup:")]  # fmt: skip
        assert hostile in idea.plain_text
        assert not [e for e in idea.entities if e["type"] in ("text_link", "bold")
                    and idea.plain_text[e["offset"]:].startswith(("gras", "clic"))]  # fmt: skip


async def test_long_texts_are_split_on_paragraph_boundaries(app):
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        await contribute(tg, 1030, "Des ateliers de quartier")
        comments = [f"Commentaire {n} : " + ("mot " * 240).strip() for n in range(8)]
        for n, comment in enumerate(comments):
            await warm_up(tg, 1031 + n)
            await tg.say(1031 + n, f"/comment 1 {comment}", language_code="en")
        parts = await tg.say(1030, "/comments 1", language_code="en")
        assert len(parts) >= 2
        assert all(len(p.plain_text) <= MAX_TEXT for p in parts)
        joined = texts(parts)
        for comment in comments:
            assert comment in joined  # no comment was cut in the middle
        assert [bool(p.buttons) for p in parts] == [False] * (len(parts) - 1) + [True]


async def test_a_split_message_retried_after_a_failure_does_not_repeat_its_first_part(app):
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        await contribute(tg, 1040, "Des jardins partagés")
        comments = [f"Avis {n} : " + ("mot " * 240).strip() for n in range(8)]
        for n, comment in enumerate(comments):
            await warm_up(tg, 1041 + n)
            await tg.say(1041 + n, f"/comment 1 {comment}", language_code="en")
        calls: list[object] = []

        def second_call(call: object) -> bool:
            calls.append(call)
            return len(calls) == 2

        # The second part fails once (a 502): the retry must go on from there.
        fault = server.fail_next("sendMessage", "5xx", chat_id=1040, when=second_call)
        parts = await tg.say(1040, "/comments 1", language_code="en")
        assert fault.hits == 1
        assert len(parts) >= 2
        texts_sent = [p.plain_text for p in parts]
        assert len(set(texts_sent)) == len(texts_sent)  # no part twice
        joined = "\n".join(texts_sent)
        for comment in comments:
            assert joined.count(comment) == 1
        assert [bool(p.buttons) for p in parts] == [False] * (len(parts) - 1) + [True]


def test_split_text_units():
    words = RichText().p(b("Titre")).paragraphs("\n\n".join(["paragraphe " * 300] * 4))
    parts = split_text(words)
    assert len(parts) > 1 and all(visible_length(p) <= MAX_TEXT for p in parts)
    assert sum(len(p.blocks) for p in parts) == len(words.blocks)
    # One enormous paragraph without spaces, with astral characters (2 UTF-16 units each).
    huge = RichText().p(Span("😀" * 3000, bold=True), "fin")
    parts = split_text(huge)
    assert all(visible_length(p) <= MAX_TEXT for p in parts)
    assert "".join(s.text for p in parts for blk in p.blocks for s in blk.spans) == (
        "😀" * 3000 + "fin"
    )
    assert all("<b>" in render_html(p) for p in parts[:-1])
    short = RichText().p("court")
    assert split_text(short) == [short]


# --------------------------------------------------------------------------- edits


async def test_edit_in_place_falls_back_to_a_new_message(app):
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        await contribute(tg, 1050, "Des ateliers de quartier")
        await warm_up(tg, 1051)
        # A button on a message Telegram no longer has (or cannot edit): a new message instead.
        sent, update_id = await tg.press(1051, "sup:1", 9999, language_code="en")
        assert [r.method for r in sent] == ["sendMessage"]
        assert "👍 1" in sent[0].plain_text and "uns:1" in sent[0].callback_data
        assert (await server.wait_for_callback_answer(update_id)).text
        # Pressing a button that leaves the message as it is: "not modified" is not an error,
        # and no duplicate message appears.
        card = card_in(await tg.say(1051, "/menu", language_code="en"))
        sent, _ = await tg.press(1051, "cancel", card.message_id, language_code="en")
        assert [r.method for r in sent] == ["editMessageText"]
        sent, update_id = await tg.press(1051, "cancel", card.message_id, language_code="en")
        assert sent == []
        assert await server.wait_for_callback_answer(update_id)
        failed = [c for c in server.requests if c.status and c.status >= 400]
        assert {c.description for c in failed} <= {
            "Bad Request: message to edit not found",
            "Bad Request: " + "message is not modified: specified new message content and reply "
            "markup are exactly the same as a current content and reply markup of the message",
        }


# --------------------------------------------------------------------------- commands menu


async def test_commands_menu_per_language_scope_and_administrators(sqlite_url, clock):
    app = make_app(sqlite_url, clock, admins=["telegram:4242", "matrix:@a:b.c"])
    try:
        async with (
            BotApiServer(bot_username=BOT) as server,
            running_bot(app, server, admins=app.settings.admins),
        ):
            citizen = [c.name for c in app.dispatcher.visible_commands(Role.CITIZEN)]
            for language, locale in (("fr", "fr"), ("en", "en"), ("", "fr")):
                menu = server.get_commands("default", language)
                assert [c["command"] for c in menu] == citizen
                start = next(c for c in menu if c["command"] == "start")
                assert start["description"] == tr(
                    locale, "Open the consultation (its card, dates and status)"
                )
            groups = [c["command"] for c in server.get_commands("all_group_chats", "en")]
            assert "start" in groups and "participate" not in groups and "comment" not in groups
            admin = [c.name for c in app.dispatcher.visible_commands(Role.ADMIN)]
            for language in ("", "fr", "en"):
                scoped = server.get_commands({"type": "chat", "chat_id": 4242}, language)
                assert [c["command"] for c in scoped] == admin
            chats = {key for key, _language in server.commands if key.startswith("chat:")}
            assert chats == {"chat:4242"}
    finally:
        app.close()


def chat_menus(server: BotApiServer) -> dict[str, list[str]]:
    """Chat-scoped menus as set on the server (default language), by chat."""
    return {
        key.split(":", 1)[1]: [c["command"] for c in commands]
        for (key, language), commands in server.commands.items()
        if key.startswith("chat:") and language == ""
    }


async def test_moderators_get_their_menu_in_their_chats_and_lose_it_with_the_role(app, clock):
    moderator = [c.name for c in app.dispatcher.visible_commands(Role.MODERATOR)]
    assert moderator != [c.name for c in app.dispatcher.visible_commands(Role.CITIZEN)]
    with app.db.session() as s:
        s.add(Moderator(consultation_id=1, platform="telegram", platform_user_id="5151",
                        created_at=clock()))  # fmt: skip
        s.add(Moderator(consultation_id=1, platform="matrix", platform_user_id="@m:x.org",
                        created_at=clock()))  # fmt: skip
        s.add(ModeratorChat(consultation_id=1, platform="telegram", chat_id="-100999",
                            created_at=clock()))  # fmt: skip
    async with BotApiServer(bot_username=BOT) as server:
        async with running_bot(app, server, menu_refresh=0.1):
            assert chat_menus(server) == {"5151": moderator, "-100999": moderator}
            scoped = server.get_commands({"type": "chat", "chat_id": 5151}, "fr")
            assert scoped[0]["description"] == tr(
                "fr", "Open the consultation (its card, dates and status)"
            )
            # The role is withdrawn while the bot runs: the menu goes at the next refresh.
            with app.db.session() as s:
                s.exec(delete(Moderator).where(Moderator.platform_user_id == "5151"))
            await server.wait_until(
                lambda: all(key != "chat:5151" for key, _language in server.commands), 5
            )
            sets = len(server.calls("setMyCommands"))
            await asyncio.sleep(0.3)  # unchanged roles: nothing is sent again
            assert len(server.calls("setMyCommands")) == sets
        # ... or while the bot is down: it is taken back at the next start.
        with app.db.session() as s:
            s.exec(delete(ModeratorChat))
        async with running_bot(app, server):
            assert chat_menus(server) == {}


# --------------------------------------------------------------------------- deep links


async def test_link_command_prints_the_deep_link_and_writes_a_qr_code(app, sqlite_url, tmp_path):
    qr = tmp_path / "affiche.png"
    async with BotApiServer(bot_username=BOT) as server:
        env = {
            "PARLONS_DATABASE_URL": sqlite_url,
            "PARLONS_TELEGRAM_TOKEN": server.token,
            "PARLONS_TELEGRAM_API_URL": server.base_url,
        }
        runner = CliRunner()
        args = ["telegram", "link", "ville-intelligente", "--source", "Affiche", "--qr", str(qr)]
        result = await asyncio.to_thread(runner.invoke, cli, args, env=env)
        assert result.exit_code == 0, result.output
        url = f"https://t.me/{BOT}?start=ville-intelligente-affiche"
        assert result.output.splitlines()[0] == url
        assert server.calls("getMe")  # the username came from Telegram
        expected = io.BytesIO()
        segno.make(url, error="m").save(expected, kind="png", scale=10, border=4)
        assert qr.read_bytes() == expected.getvalue()

        # The link opens the consultation and the visit counts the source.
        async with running_bot(app, server) as tg:
            sent = await tg.say(1060, "/start " + url.split("start=")[1], language_code="en")
            assert card_in(sent).callback_data[0] == "part"

        bad = await asyncio.to_thread(
            runner.invoke, cli, ["telegram", "link", "inconnue", "--bot-username", BOT], env=env
        )
        assert bad.exit_code == 1 and "inconnue" in bad.output
        bad = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["telegram", "link", "ville-intelligente", "--source", "é!", "--bot-username", BOT],
            env=env,
        )
        assert bad.exit_code == 2
    with app.db.session() as s:
        assert [v.source for v in s.exec(select(Visit)).all()] == ["affiche"]


# --------------------------------------------------------------------------- secrets


async def test_the_token_never_reaches_the_logs(app, caplog):
    caplog.set_level(logging.DEBUG)
    token = "987654:SECRET-token-never-logged"
    async with BotApiServer(token, bot_username=BOT) as server, running_bot(app, server) as tg:
        server.fail_next("sendMessage", "5xx", count=1)
        server.fail_next("getUpdates", "5xx", count=1)
        await tg.say(1070, "/start", language_code="en")
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert token not in caplog.text
    assert all(token not in r.getMessage() for r in caplog.records)
