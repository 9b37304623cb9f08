"""An official answer reaches its author on Matrix (a real Synapse, matrix-nio): the author
contributes in a DM; a moderator answers from another channel (the console); the bot's
notice arrives in the author's DM, in French."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App
from bot.i18n import gettext, use_locale
from tests.support.harness import Chat, FakeClock
from tests.support.matrix_bot import Citizen, RunningBot, bot_settings, wait_joined
from tests.support.matrix_fixtures import AccountFactory, ClientFactory, create_dm
from tests.support.moderation import ADMIN, build


@pytest.fixture
def mod_app(sqlite_url: str, clock: FakeClock, tmp_path: Path):  # type: ignore[no-untyped-def]
    app = build(sqlite_url, clock, tmp_path)
    yield app
    app.close()


@pytest.fixture
async def bot(
    mod_app: App, matrix_account: AccountFactory, tmp_path: Path
) -> AsyncIterator[RunningBot]:
    account = await matrix_account.create("parlons")
    async with RunningBot(mod_app, bot_settings(mod_app, account, tmp_path / "store")) as running:
        yield running


async def test_an_official_answer_reaches_the_author_on_matrix(
    mod_app: App, bot: RunningBot, matrix_account: AccountFactory, matrix_clients: ClientFactory
) -> None:
    account = await matrix_account.create("alice")
    client = await matrix_clients(account)
    room_id = await create_dm(client, bot.user_id)
    await wait_joined(client, room_id, bot.user_id, timeout=20)
    alice = Citizen(mod_app, account, client, room_id, bot.user_id)
    replies = await alice.say("/start")
    if "/accept" in replies.text:  # the privacy notice, when the core shows one
        await alice.say(replies.option("/accept"))
    await alice.say("/participate")
    await alice.say("Un marché de producteurs le samedi")
    await alice.say("/confirm")

    moderator = Chat(mod_app.engine, user=ADMIN, language="en")
    moderator.send("/answer 1 accepted Ouverture prévue au printemps.")
    with use_locale("fr"):
        expected = gettext("The moderators answered your idea #{id}: {status}.").format(
            id=1, status="✅ " + gettext("accepted")
        )
    deadline = time.monotonic() + 30
    bodies: list[str] = []
    while time.monotonic() < deadline:
        await alice.pump(500)
        bodies = [r.body for r in alice.received.values()]
        if any(expected in b for b in bodies):
            break
    notice = next((b for b in bodies if expected in b), None)
    assert notice is not None, bodies
    assert "Ouverture prévue au printemps." in notice
