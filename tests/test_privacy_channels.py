"""Privacy through the real channels: python-telegram-bot against the Bot API test server, and
matrix-nio citizens against a real Synapse on PostgreSQL.

- A message holding U+0000 (Synapse and Telegram accept it) no longer blocks every other
  citizen's /forget and the expiry of silent citizens on PostgreSQL; a 256-character Matrix
  display name works.
- Erasure leaves nothing of her anywhere, including other people's events that replied to her
  (the quoted text and sender that Telegram puts in a reply) and the raw ids in event keys.
- A citizen's document leaves only its name, type and size; an administrator's consultation
  file is still fetched and imported.
"""

from __future__ import annotations

from pathlib import Path

import nio
from sqlalchemy import Text, cast, select

from bot.privacy import Housekeeping
from storage.models import Citizen, Consultation, InboxEvent
from storage.models_moderation import Erasure
from tests.conftest import SEED
from tests.support.bot_api_server import BotApiServer
from tests.support.matrix_bot import Citizen as MatrixCitizen
from tests.support.matrix_bot import RunningBot, bot_settings, wait_joined
from tests.support.matrix_fixtures import AccountFactory, ClientFactory, create_dm
from tests.support.moderation import build, count, rows
from tests.support.telegram import running_bot
from tests.test_privacy_rights import _find

BOT = "parlons_bot"
ZOE = 770077007
ADMIN = 9001


def _inbox_texts(app) -> list[str]:  # type: ignore[no-untyped-def]
    with app.db.session() as s:
        return [str(t) for t in s.execute(select(cast(InboxEvent.event, Text))).scalars()]


# --------------------------------------------------------------------------- Telegram


async def test_telegram_nul_text_then_erasure_leaves_nothing_even_in_replies_to_her(
    db_url, clock, tmp_path
):
    app = build(db_url, clock, tmp_path)
    try:
        async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
            # Mallory writes a NUL; a 256-character name is cut to the column's 255.
            long_name = {"first_name": "M" * 200, "last_name": "N" * 55}
            await tg.accept(1101, **long_name)
            await tg.say(1101, "Bonjour\x00 le monde", **long_name)
            await tg.say(1101, "/comment\x00 1 x", **long_name)
            assert not [t for t in _inbox_texts(app) if "\\u0000" in t]
            (mallory,) = rows(app, Citizen, Citizen.platform_user_id == "1101")
            assert mallory.display_name == "M" * 200 + " " + "N" * 54

            # Zoé speaks in a group; Bob replies to her there (Telegram puts her message, her
            # id and her name in his update).
            names = {"first_name": "Zoé", "last_name": "Erasable"}
            group = {"chat_id": -100500, "chat_type": "supergroup", "chat_title": "Quartier"}
            await tg.accept(ZOE, **names)
            await tg.say(ZOE, f"/start@{BOT}", message_id=501, **names, **group)
            await tg.say(1102, "Tout à fait d'accord", reply_to_message_id=501, **group)
            await tg.say(ZOE, "/help", **names)
            needles = [str(ZOE), "Erasable"]
            assert _find(app, needles)  # she is there before

            await tg.say(ZOE, "/forget", **names)
            farewell = await tg.say(ZOE, "/forget yes", **names)
            assert farewell and count(app, Erasure) == 1
            await tg.say(1102, "/help")  # the next event sweeps the farewell's row
            assert _find(app, needles) == []
            # Bob's reply is still there, without her.
            bob = [r for r in rows(app, InboxEvent) if r.user_id == "1102"]
            assert any(r.event["payload"].get("text") == "Tout à fait d'accord" for r in bob)
    finally:
        app.close()


async def test_telegram_documents_keep_metadata_only_except_an_admins_consultation_file(
    sqlite_url, clock, tmp_path
):
    app = build(sqlite_url, clock, tmp_path, admins=[f"telegram:{ADMIN}"])
    try:
        async with (
            BotApiServer(bot_username=BOT) as server,
            running_bot(app, server, admins=app.settings.admins) as tg,
        ):
            # A citizen's 20 documents: nothing fetched, nothing of their content stored.
            await tg.accept(1201)
            for n in range(20):
                doc = server.register_file(b"%PDF-1.4 " * 8000, f"avis-{n}.pdf", "application/pdf")
                replies = await tg.say(1201, None, document=doc.as_document())
                assert replies  # answered ("text only")
            files = [r for r in rows(app, InboxEvent) if r.kind == "file"]
            assert len(files) == 20
            assert {r.event["payload"]["data"] for r in files} == {""}
            assert {r.event["payload"]["size"] for r in files} == {8 * 9000}
            assert sum(len(t) for t in _inbox_texts(app)) < 100_000
            assert server.calls("getFile") == []

            # The administrator's consultation file is fetched and imported.
            before = count(app, Consultation)
            yaml = SEED.read_text().replace(
                "slug: ville-intelligente", "slug: deuxieme-consultation"
            )
            doc = server.register_file(yaml.encode(), "deux.yaml", "application/yaml")
            replies = await tg.say(ADMIN, None, document=doc.as_document())
            assert len(server.calls("getFile")) == 1
            text = "\n".join(r.text or "" for r in replies)
            assert "deuxieme-consultation" in text and "/apply " in text, text
            token = text.split("/apply ", 1)[1].split()[0].strip(".")
            await tg.say(ADMIN, f"/apply {token}")
            assert count(app, Consultation) == before + 1
    finally:
        app.close()


# --------------------------------------------------------------------------- Matrix


async def test_matrix_nul_and_a_256_character_name_on_postgres(
    pg_url,
    clock,
    tmp_path: Path,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
):
    app = build(pg_url, clock, tmp_path)
    bot_account = await matrix_account.create("parlons")
    try:
        async with RunningBot(app, bot_settings(app, bot_account, tmp_path / "store")) as bot:

            async def citizen(prefix: str, name: str | None = None) -> MatrixCitizen:
                account = await matrix_account.create(prefix)
                client = await matrix_clients(account)
                if name is not None:
                    response = await client.set_displayname(name)
                    assert isinstance(response, nio.ProfileSetDisplayNameResponse), response
                room_id = await create_dm(client, bot.user_id)
                await wait_joined(client, room_id, bot.user_id, timeout=20)
                person = MatrixCitizen(app, account, client, room_id, bot.user_id)
                await person.say("/accept")
                return person

            mallory = await citizen("mallory", "M" * 256)
            replies = await mallory.say("Bonjour\x00 le monde")
            assert replies  # answered, not failed
            with app.db.session() as s:
                assert set(s.execute(select(InboxEvent.status)).scalars()) == {"done"}
            assert not [t for t in _inbox_texts(app) if "\\u0000" in t]
            (m,) = rows(app, Citizen, Citizen.platform_user_id == mallory.user_id)
            assert m.display_name == "M" * 255

            zoe = await citizen("zoe")
            await zoe.say("/forget")
            assert await zoe.say("/forget yes")
            assert count(app, Erasure) == 1
            assert count(app, Citizen, Citizen.platform_user_id == zoe.user_id) == 0

            # The expiry of silent citizens runs too.
            clock.advance(days=800)
            report = Housekeeping(app.db, app.clock, app.settings).run()
            assert report.finished and report.erased >= 1
            assert count(app, Citizen, Citizen.platform_user_id == mallory.user_id) == 0
    finally:
        app.close()
