"""The Matrix bot's durability against a real Synapse: first start, downtime, gaps in the
timeline, missing encryption keys, idempotent sends, login, rooms closing."""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.app import App
from bot.consultation_file import load_consultation_file
from bot.i18n import gettext, use_locale
from bot.messages import Attachment, OutboundMessage, RichText
from tests.conftest import SEED
from tests.support.matrix_bot import (
    Citizen,
    RunningBot,
    bot_settings,
    raw_put,
    timeline_keys,
    wait_ignored,
    wait_joined,
    wait_processed,
)
from tests.support.matrix_fixtures import (
    AccountFactory,
    ClientFactory,
    create_dm,
    join_room,
    send_text,
    sync_once,
)
from tests.support.synapse import MatrixAccount

TITLE = load_consultation_file(SEED).localized("fr").title


async def open_dm(
    app: App,
    bot_user_id: str,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    *,
    encrypted: bool = False,
) -> Citizen:
    account = await matrix_account.create("citizen")
    client = await matrix_clients(account, encryption=encrypted)
    room_id = await create_dm(client, bot_user_id, encrypted=encrypted)
    await wait_joined(client, room_id, bot_user_id, timeout=20)
    return Citizen(app, account, client, room_id, bot_user_id)


async def test_first_start_skips_history_then_downtime_is_caught_up_even_past_the_limit(
    app: App,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    bot_account = await matrix_account.create("parlons")
    # The bot account is in a DM before Parlons ever runs: what was said there is history.
    citizen_account = await matrix_account.create("citizen")
    client = await matrix_clients(citizen_account)
    room_id = await create_dm(client, bot_account.user_id)
    raw_bot = await matrix_clients(bot_account)
    await join_room(raw_bot, room_id)
    await wait_joined(client, room_id, bot_account.user_id)
    old = await send_text(client, room_id, "/stats")
    assert isinstance(old, nio.RoomSendResponse)
    citizen = Citizen(app, citizen_account, client, room_id, bot_account.user_id)

    # A tiny timeline limit: after downtime the sync is "limited" and the gap is back-filled.
    settings = bot_settings(app, bot_account, tmp_path / "store", matrix_timeline_limit=2)
    bot = await RunningBot(app, settings).start()
    try:
        assert (await citizen.say("/start")).text  # answered: the bot is up
        await wait_ignored(app, old.event_id, timeout=0.5)  # ...but history was skipped
    finally:
        await bot.stop()

    # Downtime: the citizen keeps writing (more than the timeline limit).
    commands = ["/about 1", "/about 2", "/testimonials", "/stats", "/help", "/about 3"]
    sent = []
    for command in commands:
        response = await send_text(client, room_id, command)
        assert isinstance(response, nio.RoomSendResponse)
        sent.append(response.event_id)

    bot = await RunningBot(app, settings).start()
    try:
        for event_id in sent:
            assert await citizen.replies_to(event_id), event_id
        assert bot.service.stats.backfilled >= len(commands) - 2
        # Replies come in the order of the messages they answer.
        first_keys = [(await wait_processed(app, e))[0].id for e in sent]
        assert first_keys == sorted(first_keys)
    finally:
        await bot.stop()
    await wait_ignored(app, old.event_id, timeout=0)


async def test_a_dm_opened_while_the_bot_was_down_is_answered_in_full(
    app: App,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    """Invitation and messages before the bot's very first start, more of them than the
    timeline limit: the bot joins, fetches back to its invitation and answers them all."""
    bot_account = await matrix_account.create("parlons")
    citizen_account = await matrix_account.create("citizen")
    client = await matrix_clients(citizen_account)
    room_id = await create_dm(client, bot_account.user_id)
    sent = []
    for command in ["/start", "/about 1", "/stats", "/help", "/about 2"]:
        response = await send_text(client, room_id, command)
        assert isinstance(response, nio.RoomSendResponse)
        sent.append(response.event_id)
    citizen = Citizen(app, citizen_account, client, room_id, bot_account.user_id)
    settings = bot_settings(app, bot_account, tmp_path / "store", matrix_timeline_limit=2)
    async with RunningBot(app, settings) as bot:
        for event_id in sent:
            assert await citizen.replies_to(event_id), event_id
        assert bot.service.stats.backfilled >= 3


async def _withheld_key_message(citizen: Citizen, text: str) -> tuple[str, Any]:
    """Send an encrypted message with a fresh Megolm session whose key is NOT sent to anyone
    yet; returns the event id and a coroutine function that delivers the key later."""
    client = citizen.client
    olm = client.olm
    assert olm is not None
    users = list(client.rooms[citizen.room_id].users)
    await client.keys_claim(client.get_missing_sessions(citizen.room_id))
    payloads = [
        to_device
        for _with, to_device in olm.share_group_session_parallel(
            citizen.room_id, users, ignore_unverified_devices=True
        )
    ]
    olm.outbound_group_sessions[citizen.room_id].shared = True  # pretend, to encrypt now
    _type, content = client.encrypt(
        citizen.room_id, "m.room.message", {"msgtype": "m.text", "body": text}
    )
    room = urllib.parse.quote(citizen.room_id)
    path = f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/{secrets.token_hex(8)}"
    event_id = str((await raw_put(citizen.account, path, content))["event_id"])
    client.invalidate_outbound_session(citizen.room_id)  # later messages: a new, shared session

    async def release() -> None:
        for to_device in payloads:
            path = f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{secrets.token_hex(8)}"
            await raw_put(citizen.account, path, to_device)

    return event_id, release


async def test_encrypted_messages_wait_for_late_keys_or_the_citizen_is_told(
    app: App,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    bot_account = await matrix_account.create("parlons")
    settings = bot_settings(app, bot_account, tmp_path / "store", matrix_undecryptable_wait=4)
    async with RunningBot(app, settings) as bot:
        citizen = await open_dm(app, bot.user_id, matrix_account, matrix_clients, encrypted=True)
        assert TITLE in (await citizen.say("/start")).text

        # Keys that arrive late: the message waits aside, then is answered normally.
        late, release = await _withheld_key_message(citizen, "/stats")
        await wait_ignored(app, late, timeout=1.5)
        assert late in bot.service.undecrypted
        await release()
        replies = await citizen.replies_to(late)
        assert replies and bot.service.stats.decrypted_late == 1
        assert late not in bot.service.undecrypted

        # Keys that never arrive: after the wait, the citizen is told.
        lost, _release = await _withheld_key_message(citizen, "/stats")
        replies = await citizen.replies_to(lost, timeout=30)
        with use_locale("fr"):
            expected = gettext(
                "I could not read one of your messages: it was encrypted with keys my device did "
                "not receive. Please send it again."
            )
        assert expected in replies.text
        assert bot.service.stats.undecryptable == 1


async def test_undecryptable_events_survive_a_restart(
    app: App,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    bot_account = await matrix_account.create("parlons")
    settings = bot_settings(app, bot_account, tmp_path / "store", matrix_undecryptable_wait=60)
    bot = await RunningBot(app, settings).start()
    citizen = await open_dm(app, bot.user_id, matrix_account, matrix_clients, encrypted=True)
    await citizen.say("/start")
    late, release = await _withheld_key_message(citizen, "/stats")
    await wait_ignored(app, late, timeout=1.5)
    await citizen.say("/help")  # a later batch commits the waiting event with the token
    await bot.stop()
    await release()  # the key arrives while the bot is down
    bot = await RunningBot(app, settings).start()
    try:
        assert await citizen.replies_to(late)
    finally:
        await bot.stop()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_sends_are_idempotent_and_attachments_are_uploaded(
    app: App,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
    encrypted: bool,
) -> None:
    bot_account = await matrix_account.create("parlons")
    async with RunningBot(app, bot_settings(app, bot_account, tmp_path / "store")) as bot:
        citizen = await open_dm(
            app, bot.user_id, matrix_account, matrix_clients, encrypted=encrypted
        )
        await citizen.say("/start")  # the bot knows the room and its members by now
        channel = bot.service.channel
        message = OutboundMessage(
            citizen.room_id,
            RichText().p("Résultats"),
            attachment=Attachment("chart.png", "image/png", b"\x89PNG fake", "Le graphique"),
        )
        first = await channel.send(message, key="out-test-1")
        again = await channel.send(message, key="out-test-1")  # a retry after a crash
        assert first.message_id == again.message_id
        deadline = asyncio.get_running_loop().time() + 10
        while "out-test-1.file" not in citizen.received:
            assert asyncio.get_running_loop().time() < deadline
            await citizen.pump(500)
        image = citizen.received["out-test-1.file"].content
        assert image["msgtype"] == "m.image" and image["body"] == "Le graphique"
        assert ("file" in image) == encrypted and ("url" in image) != encrypted
        # One event per key in the room, despite the second send.
        keys = await timeline_keys(citizen)
        assert keys.count("out-test-1") == 1 and keys.count("out-test-1.file") == 1


async def test_password_login_keeps_one_device_across_restarts(
    app: App,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    registered: MatrixAccount = await matrix_account.create("parlons")
    settings = bot_settings(
        app,
        registered,
        tmp_path / "store",
        matrix_access_token=None,
        matrix_device_id=None,
        matrix_password=registered.password,
    )
    async with RunningBot(app, settings) as bot:
        device = bot.service.client.device_id
        assert device and device != registered.device_id  # a device of its own
        saved = json.loads((tmp_path / "store" / "credentials.json").read_text())
        assert saved["device_id"] == device
        assert (tmp_path / "store" / "credentials.json").stat().st_mode & 0o077 == 0
        citizen = await open_dm(app, bot.user_id, matrix_account, matrix_clients, encrypted=True)
        assert TITLE in (await citizen.say("/start")).text
    async with RunningBot(app, settings) as bot:
        assert bot.service.client.device_id == device  # same device, same keys: one store
        assert (await citizen.say("/stats")).text
    # The access token was refused (logged out elsewhere): log in again on the same device.
    saved["access_token"] = "syt_revoked"
    (tmp_path / "store" / "credentials.json").write_text(json.dumps(saved))
    async with RunningBot(app, settings) as bot:
        assert bot.service.client.device_id == device
        assert (await citizen.say("/help")).text


async def test_the_bot_leaves_a_dm_the_citizen_left(
    app: App,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    bot_account = await matrix_account.create("parlons")
    async with RunningBot(app, bot_settings(app, bot_account, tmp_path / "store")) as bot:
        citizen = await open_dm(app, bot.user_id, matrix_account, matrix_clients)
        await citizen.say("/start")
        left = await citizen.client.room_leave(citizen.room_id)
        assert isinstance(left, nio.RoomLeaveResponse)
        deadline = asyncio.get_running_loop().time() + 15
        while citizen.room_id in bot.service.client.rooms:
            assert asyncio.get_running_loop().time() < deadline, "the bot stayed in the room"
            await asyncio.sleep(0.1)
        await sync_once(citizen.client)
