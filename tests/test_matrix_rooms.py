"""Matrix rooms stay rooms after a restart (issue 11, item 3), against a real Synapse.

Matrix does not say with each event whether a room is a private chat: the bot deduces it from
the room's membership, which the homeserver reports when it changes (and, with lazy-loaded
members, not again after a restart). The kind is therefore kept in the database, committed with
the sync batch that revealed it. These tests restart the real ``parlons run`` process and check
that a group room (even one whose invitation said ``is_direct``) is still treated as a group:
no answer to ordinary chat, no privacy notice, no participation, no personal data posted there;
and that a DM still is a DM. Membership changes move a room between the two kinds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nio
import pytest
from sqlalchemy import delete
from sqlmodel import func, select

from bot.app import App, build_app
from bot.engine import ChatSeen
from bot.i18n import gettext, use_locale
from bot.messages import ChatType, EventContext, InboundEvent, TextMessage
from bot.settings import Settings
from storage.models import Contribution, Dialogue, InboxEvent, OutboxMessage
from storage.models_chats import ChatKind
from storage.models_scheduler import PrivateChat
from tests.support.harness import Chat
from tests.support.matrix_bot import Citizen, Replies, RunningBot, bot_settings, wait_joined
from tests.support.matrix_fixtures import (
    AccountFactory,
    ClientFactory,
    create_dm,
    join_room,
    send_text,
)
from tests.support.processes import BotProcess, open_consultation
from tests.support.synapse import MatrixAccount, SynapseServer

PRIVATE_ONLY = "Let's continue in a private chat: open a conversation with me to take part."
NOTICE_LINE = "Reading stays open to everyone; accept to take part."
MYDATA = "Here is everything stored about you, as a JSON file. Type /forget to erase it."


def tr(msgid: str, locale: str = "fr") -> str:
    with use_locale(locale):
        return gettext(msgid)


def count(app: App, model: type, *where: object) -> int:
    with app.db.session() as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def kinds(app: App) -> dict[str, str]:
    with app.db.session() as s:
        return {row.chat_id: row.kind for row in s.exec(select(ChatKind)).all()}


def inbox_chat_types(app: App, chat_id: str) -> set[str]:
    """The chat type the adapter gave each event of this room, as stored in the inbox."""
    with app.db.session() as s:
        rows = s.exec(select(InboxEvent).where(InboxEvent.platform == "matrix")).all()
    events = [json.loads(r.event) if isinstance(r.event, str) else r.event for r in rows]
    return {e["context"]["chat_type"] for e in events if e["context"]["chat_id"] == chat_id}


def no_attachment_sent_to(app: App, chat_id: str) -> bool:
    with app.db.session() as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.chat_id == chat_id)).all()
    return all(not (row.message or {}).get("attachment") for row in rows)


async def file_event(citizen: Citizen, key: str, timeout: float = 20) -> dict[str, object]:
    """The file the bot sent with its reply ``key`` (sent right after the reply's text)."""
    deadline = time.monotonic() + timeout
    while f"{key}.file" not in citizen.received:
        assert time.monotonic() < deadline, f"no file with {key}"
        await citizen.pump(500)
    return citizen.received[f"{key}.file"].content


async def say_while_down(client: nio.AsyncClient, room_id: str, text: str) -> str:
    response = await send_text(client, room_id, text)
    assert isinstance(response, nio.RoomSendResponse), response
    return str(response.event_id)


@pytest.mark.filterwarnings("ignore:Column 'chat_kind.chat_id'")
def test_chat_kinds_commit_with_their_batch_on_both_databases(any_app: App) -> None:
    engine = any_app.engine
    group, private = ChatType.GROUP, ChatType.PRIVATE
    hello = InboundEvent(
        EventContext("matrix", "!room:x", "@a:x", "$hello", chat_type=group), TextMessage("hi")
    )
    engine.ingest_batch(
        [hello],
        {"matrix:test:next_batch": "t1"},
        [ChatSeen("matrix", "!room:x", group, 3), ChatSeen("matrix", "!dm:x", private, 2)],
    )
    assert engine.chat_kinds("matrix") == {"!room:x": group, "!dm:x": private}
    assert engine.chat_kinds("telegram") == {}

    # One transaction: a batch that fails commits neither its events nor its kinds.
    later = InboundEvent(EventContext("matrix", "!dm:x", "@b:x", "$later"), TextMessage("x"))
    broken = ChatSeen("matrix", None, private)  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 (NOT NULL violation, per database driver)
        engine.ingest_batch(
            [later], {"matrix:test:next_batch": "t2"}, [ChatSeen("matrix", "!dm:x", group), broken]
        )
    assert engine.chat_kinds("matrix")["!dm:x"] == private
    assert engine.channel_state("matrix:test:next_batch") == "t1"
    assert engine.inbound_event("matrix", "$later") is None

    # A private chat that becomes a group is nobody's private chat any more (no reminders
    # there); a chat the bot left is forgotten.
    carol = Chat(engine, user="@carol:x", platform="matrix", chat_id="!dm:x")
    assert carol.send("/start")
    with any_app.db.session() as s:
        assert s.exec(select(PrivateChat.chat_id)).all() == ["!dm:x"]
    engine.ingest_batch([], {}, [ChatSeen("matrix", "!dm:x", group, 3)])
    with any_app.db.session() as s:
        assert s.exec(select(PrivateChat.chat_id)).all() == []
        assert s.get(ChatKind, ("matrix", "!dm:x")).members == 3  # type: ignore[union-attr]
    engine.ingest_batch([], {}, [ChatSeen("matrix", "!room:x", None)])
    assert engine.chat_kinds("matrix") == {"!dm:x": group}


@pytest.mark.slow
async def test_a_group_room_invited_as_direct_stays_a_group_after_a_restart(
    synapse: SynapseServer,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    app = build_app(Settings(database_url=url))
    app.import_consultation(open_consultation(tmp_path))
    bot_account: MatrixAccount = await matrix_account.create("parlons")
    (tmp_path / "none.toml").write_text("")  # no configuration file: the environment only
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLONS_")},
        "PARLONS_CONFIG_FILE": str(tmp_path / "none.toml"),
        "PARLONS_DATABASE_URL": url,
        "PARLONS_LOG_LEVEL": "INFO",
        "PARLONS_MATRIX_HOMESERVER": synapse.url,
        "PARLONS_MATRIX_USER_ID": bot_account.user_id,
        "PARLONS_MATRIX_ACCESS_TOKEN": bot_account.access_token,
        "PARLONS_MATRIX_DEVICE_ID": bot_account.device_id,
        "PARLONS_MATRIX_STORE_PATH": str(tmp_path / "store"),
        "PARLONS_MATRIX_SYNC_TIMEOUT": "2",
        "PARLONS_MATRIX_PACE_PER_SECOND": "200",
        "PARLONS_MATRIX_PACE_ROOM_INTERVAL": "0",
    }
    bot = BotProcess(env, tmp_path, stop_timeout=30)
    me = bot_account.user_id
    await bot.start()
    try:
        await bot.wait_logged(b"matrix: logged in")
        alice_account = await matrix_account.create("alice")
        bob_account = await matrix_account.create("bob")
        carol_account = await matrix_account.create("carol")
        alice_client = await matrix_clients(alice_account)
        bob_client = await matrix_clients(bob_account)
        carol_client = await matrix_clients(carol_account)

        # Alice opens a "direct" chat with the bot AND Bob: three members, a group room.
        created = await alice_client.room_create(
            is_direct=True,
            preset=nio.RoomPreset.trusted_private_chat,
            invite=[me, bob_account.user_id],
        )
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        await join_room(bob_client, room_id)
        await wait_joined(alice_client, room_id, me, timeout=60)
        alice = Citizen(app, alice_account, alice_client, room_id, me)
        bob = Citizen(app, bob_account, bob_client, room_id, me)
        # Carol's DM with the bot: a private chat.
        dm_id = await create_dm(carol_client, me)
        await wait_joined(carol_client, dm_id, me, timeout=60)
        carol = Citizen(app, carol_account, carol_client, dm_id, me)

        # Before the restart the bot knows (it saw the membership when it joined).
        assert await alice.say("Bonjour à tous") == []
        assert await carol.say("Bonjour") != []

        # Restart; what is written while the bot is down comes in its first sync after start.
        assert await bot.stop() == 0
        chat = await say_while_down(alice_client, room_id, "Une idée en passant")
        hello = await say_while_down(bob_client, room_id, "/start")
        await bot.start()
        await bot.wait_logged(b"matrix: logged in")

        # (a) ordinary chat in the room is not answered, before or after the restart
        assert await alice.replies_to(chat, timeout=60) == []
        assert await alice.say("Quelqu'un a lu le projet ?") == []
        # (d) the privacy notice is not run in the room (Bob never accepted it)
        card: Replies = await bob.replies_to(hello, timeout=60)
        assert card, "the consultation card is shown in the room"
        assert tr(NOTICE_LINE) not in card.text
        assert "[1]" not in card.text  # no numbered options in a room
        # (b) participation continues in private: no question asked, no dialogue, nothing kept
        replies = await alice.say("/participate")
        assert tr(PRIVATE_ONLY) in replies.text, replies.text
        assert await alice.say("Une maison du projet ouverte le samedi") == []
        await alice.say("/confirm")
        assert count(app, Contribution) == 0
        assert count(app, Dialogue, Dialogue.chat_id == room_id, Dialogue.state != "idle") == 0
        # (c) /mydata sends no personal data into the room
        replies = await alice.say("/mydata")
        assert tr(PRIVATE_ONLY) in replies.text, replies.text
        assert tr(MYDATA) not in replies.text
        assert not [k for k in (*alice.received, *bob.received) if k.endswith(".file")]
        assert no_attachment_sent_to(app, room_id)
        # A bare "1" in a room is not an option choice.
        assert await bob.say("1") == []

        # Every event of the room reached the core as a group event; the DM stays private.
        assert inbox_chat_types(app, room_id) == {"group"}
        assert kinds(app) == {room_id: "group", dm_id: "private"}
        assert await carol.say("Toujours là ?") != []
        assert inbox_chat_types(app, dm_id) == {"private"}

        # A database from before room kinds were recorded: the bot asks the homeserver.
        assert await bot.stop() == 0
        with app.db.session() as s:
            s.execute(delete(ChatKind))
        chat = await say_while_down(alice_client, room_id, "Et maintenant ?")
        private = await say_while_down(carol_client, dm_id, "Et moi ?")
        await bot.start()
        await bot.wait_logged(b"matrix: logged in")
        assert await alice.replies_to(chat, timeout=60) == []
        assert await carol.replies_to(private, timeout=60) != []
        assert tr(PRIVATE_ONLY) in (await bob.say("/mydata")).text
        assert kinds(app) == {room_id: "group", dm_id: "private"}
        assert inbox_chat_types(app, room_id) == {"group"}
        assert inbox_chat_types(app, dm_id) == {"private"}
    except AssertionError:
        print(bot.tail())
        raise
    finally:
        if bot.proc is not None and bot.proc.returncode is None:
            await bot.stop()
        app.close()


@pytest.fixture
async def bot(
    app: App, matrix_account: AccountFactory, tmp_path: Path
) -> AsyncIterator[RunningBot]:
    account = await matrix_account.create("parlons")
    async with RunningBot(app, bot_settings(app, account, tmp_path / "bot-store")) as running:
        yield running


async def test_membership_changes_move_a_room_between_private_and_group(
    app: App,
    bot: RunningBot,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    carol_account = await matrix_account.create("carol")
    carol_client = await matrix_clients(carol_account)
    dm_id = await create_dm(carol_client, bot.user_id)
    await wait_joined(carol_client, dm_id, bot.user_id, timeout=30)
    carol = Citizen(app, carol_account, carol_client, dm_id, bot.user_id)
    assert await carol.say("/start") != []
    assert kinds(app)[dm_id] == "private"
    assert count(app, PrivateChat, PrivateChat.chat_id == dm_id) == 1

    # A third member joins the DM: it is a group room now, and nobody's private chat.
    dave_account = await matrix_account.create("dave")
    dave_client = await matrix_clients(dave_account)
    invited = await carol_client.room_invite(dm_id, dave_account.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    await join_room(dave_client, dm_id)
    assert await carol.say("On est trois maintenant") == []
    assert kinds(app)[dm_id] == "group"
    assert count(app, PrivateChat, PrivateChat.chat_id == dm_id) == 0
    assert tr(PRIVATE_ONLY) in (await carol.say("/mydata")).text

    # Dave leaves: a private chat again, and it stays one after a restart of the service.
    left = await dave_client.room_leave(dm_id)
    assert isinstance(left, nio.RoomLeaveResponse), left
    assert await carol.say("De nouveau seuls") != []
    assert kinds(app)[dm_id] == "private"
    await bot.stop()
    async with RunningBot(app, bot.settings) as again:
        assert again.service.kinds[dm_id].value == "private"
        replies = await carol.say("/mydata")
        assert tr(MYDATA) in replies.text
        assert (await file_event(carol, replies[0].key))["msgtype"] == "m.file"
    bot.task = None  # already stopped
